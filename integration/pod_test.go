package integration

// A Kubernetes pod through this runtime: CRI marks every container of a pod with the sandbox's id
// (annotation io.kubernetes.cri.sandbox-id), and the shim's start face hands all of them to the
// daemon of the sandbox, as containerd's runc shim does. So a pod is one process, and the crash
// guarantee has to hold for every container that daemon runs.

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// pod is a sandbox and its app containers, started as CRI shapes them.
type pod struct {
	sandbox string
	apps    []string
	pids    []int // every process of every container, once all run
}

const (
	criContainerType = "io.kubernetes.cri.container-type"
	criSandboxID     = "io.kubernetes.cri.sandbox-id"
)

// startPod starts a sandbox (a pause-like init in its own namespaces) and two app containers
// joining its network, IPC and UTS namespaces by path; the second one also joins its pid namespace
// (shareProcessNamespace), the first has a pid namespace of its own. Each app runs a small tree.
func startPod(t *testing.T) *pod {
	t.Helper()
	p := &pod{sandbox: newContainerID(t)}
	sb := shapeSpec(t, p.sandbox, shapeRootfs(t), []string{"sleep", "100000"}, func(spec, _, _ map[string]any) {
		spec["annotations"] = map[string]any{criContainerType: "sandbox", criSandboxID: p.sandbox}
	})
	p.pids = append(p.pids, runSpecDetached(t, p.sandbox, sb, 1)...)
	sbPid := waitTaskStatus(t, p.sandbox, "RUNNING", timeout(30*time.Second)).Pid
	for i, joined := range [][]string{{"network", "ipc", "uts"}, {"network", "ipc", "uts", "pid"}} {
		id := newContainerID(t)
		p.apps = append(p.apps, id)
		app := shapeSpec(t, id, shapeRootfs(t), []string{"sh", "-c", "sleep 100000 & sh -c 'sleep 100000 & wait' & wait"}, func(spec, _, linux map[string]any) {
			spec["annotations"] = map[string]any{criContainerType: "container", criSandboxID: p.sandbox}
			for _, ns := range joined {
				file := map[string]string{"network": "net"}[ns]
				if file == "" {
					file = ns
				}
				setNamespace(linux, ns, fmt.Sprintf("/proc/%d/ns/%s", sbPid, file))
			}
		})
		pids := runSpecDetached(t, id, app, 4)
		t.Logf("app %d (%v joined): %d processes", i, joined, len(pids))
		p.pids = append(p.pids, pids...)
	}
	return p
}

// daemons lists the live shim daemons started for any container of the pod, by the id each was
// started for.
func (p *pod) daemons() map[int]string {
	ids := append([]string{p.sandbox}, p.apps...)
	out := map[int]string{}
	for _, pid := range allProcs() {
		if id, ok := shimDaemon(pid); ok && slices.Contains(ids, id) {
			out[pid] = id
		}
	}
	return out
}

// TestCtrPodSharesOneShim: the three containers of a pod are served by one daemon, the sandbox's,
// and that daemon exits once the last of them is deleted (Shutdown with no task left), not before.
// runc's shim groups the same way.
func TestCtrPodSharesOneShim(t *testing.T) {
	p := startPod(t)
	d := p.daemons()
	if len(d) != 1 {
		t.Fatalf("shim daemons of the pod: %v, want exactly one", d)
	}
	var shim int
	for pid, id := range d {
		if id != p.sandbox {
			t.Fatalf("the pod's daemon %d was started for %s, want the sandbox %s", pid, id, p.sandbox)
		}
		shim = pid
	}
	for _, id := range p.apps {
		removeContainer(t, id)
		if !alive(shim) {
			t.Fatalf("the pod's daemon exited after %s was deleted, while the sandbox still runs", id)
		}
	}
	if st, ok := taskStatus(t, p.sandbox); !ok || st.Status != "RUNNING" {
		t.Fatalf("sandbox task after its apps were deleted: %+v %v, want RUNNING", st, ok)
	}
	removeContainer(t, p.sandbox)
	waitGone(t, []int{shim}, "the pod's daemon after its last container was deleted")
}

// podCrash kills the pod's one daemon: no process of any of its containers may run on, whichever
// namespaces they joined, with containerd up or down; containerd then cleans up all three.
func podCrash(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	p := startPod(t)
	shim := shimPid(t, p.sandbox)
	if !containerdUp {
		stopContainerd(t)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	assertNoneRuns(t, p.pids, timeout(crashBound), "the pod's shim was killed")
	t.Logf("%d processes of 3 containers gone %v after the daemon's SIGKILL", len(p.pids), time.Since(start).Round(time.Millisecond))
	if !containerdUp {
		startContainerd(t)
	}
	for _, id := range append([]string{p.sandbox}, p.apps...) {
		cgPath := containerCgroupsPath(t, id)
		waitFor(t, timeout(30*time.Second), id+": task out of RUNNING, rootfs unmounted, cgroup removed", func() bool {
			st, ok := taskStatus(t, id)
			return (!ok || st.Status != "RUNNING") && len(bundleMounted(t, id)) == 0 && len(cgroupDirs(cgPath)) == 0
		}, func() string {
			return fmt.Sprintf("tasks:\n%s\nmounts: %v\ncgroups: %v", mustCtr(t, "tasks", "ls"), bundleMounted(t, id), cgroupDirs(cgPath))
		})
	}
}

func TestCrashPodContainerdRunning(t *testing.T) { podCrash(t, true) }
func TestCrashPodContainerdStopped(t *testing.T) { podCrash(t, false) }
