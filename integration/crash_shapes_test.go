package integration

// The crash guarantee for every shape of container, not only the one whose
// init is pid 1 of its own pid namespace: without a pid namespace of its own
// (host pid, or one joined by path as Kubernetes does for shared-pid pods),
// the init's death leaves the rest running; in fallback mode an init that
// changed its credentials has lost PR_SET_PDEATHSIG. The shim's crash guard
// kills the container's cgroup in both cases. And when such an init exits
// normally, what it left running is killed before TaskExit, as containerd's
// runc shim does.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shapeRootfs unpacks the image into a fresh tmpfs: the harness's /tmp may
// be nosuid (the VM's is), and ak-sudo must really be setuid-root. The
// harness's untar keeps no setuid bit, so it is set here again.
func shapeRootfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs for the rootfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	extractImageRootfs(t, dir)
	for _, h := range []string{"ak-suexec", "ak-sudo"} {
		if _, err := os.Stat(filepath.Join(dir, "bin", h)); err != nil {
			t.Fatalf("the image has no /bin/%s: rebuild it with hack/build-image.sh (make image): %v", h, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin", "ak-sudo"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shapeSpec is ctr's default spec for args on rootfs, in the cgroup
// /autokill-test/<id>, changed by edit.
func shapeSpec(t *testing.T, id, rootfs string, args []string, edit func(spec, proc, linux map[string]any)) map[string]any {
	t.Helper()
	spec, proc, linux := ctrSpec(t, id, rootfs, args)
	// ctr's default spec denies every device; the shell needs /dev/null
	// for its background jobs. These are what ctr run adds for an image.
	devices := []any{map[string]any{"allow": false, "access": "rwm"}}
	for _, minor := range []int{3, 5, 7, 8, 9} {
		devices = append(devices, map[string]any{"allow": true, "type": "c", "major": 1, "minor": minor, "access": "rwm"})
	}
	linux["resources"] = map[string]any{"devices": devices}
	if edit != nil {
		edit(spec, proc, linux)
	}
	return spec
}

// setNamespace replaces (or, with path "-", removes) the spec's namespace of type typ.
func setNamespace(linux map[string]any, typ, path string) {
	var out []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != typ {
			out = append(out, n)
		}
	}
	switch path {
	case "-":
	case "":
		out = append(out, map[string]any{"type": typ})
	default:
		out = append(out, map[string]any{"type": typ, "path": path})
	}
	linux["namespaces"] = out
}

// runSpecDetached starts the container with ctr run -d --config and waits
// until its cgroup holds at least minProcs processes; it returns them.
func runSpecDetached(t *testing.T, id string, spec map[string]any, minProcs int) []int {
	t.Helper()
	if r := ctrResult(t, "run", "-d", "--runtime", runtimeName, "--config", writeSpec(t, spec), id); r.Code != 0 {
		t.Fatalf("ctr run -d --config: %s", r)
	}
	waitTaskStatus(t, id, "RUNNING", timeout(30*time.Second))
	cgPath := containerCgroupsPath(t, id)
	var pids []int
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("%d processes in the cgroup of %s", minProcs, id), func() bool {
		pids = cgroupProcs(t, cgPath)
		return len(pids) >= minProcs
	}, func() string { return psTable(pids) })
	return pids
}

// realUID is the real uid of a process (the first field of Uid: in status).
func realUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
			uid, _ := strconv.Atoi(strings.Fields(rest)[0])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// assertNoneRuns checks that none of pids still runs within bound: the
// guarantee is that nothing of the container executes. Zombies count as
// gone: the processes that are not the init are not autoreaped in native
// mode either, and whoever they were reparented to reaps them. So do
// processes in the kernel's exit path: the init of a pid namespace that
// other containers joined (a pod's sandbox) waits there until their
// processes are reaped, by the host's init once the daemon is gone.
func assertNoneRuns(t *testing.T, pids []int, bound time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) && !exiting(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d processes still run %v after %s:\n%s", len(left), len(pids), bound, what, psTable(left))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// crashShape kills the shim of the running container id (whose processes
// are pids) and checks that all of them are gone within the bound, then
// that containerd cleans up after the dead shim.
//
// With containerd up, containerd is SIGSTOPped across the crash: left to
// run, it notices the dead shim within milliseconds and its `shim delete`
// sweeps the cgroup, which would hide whether the shim's own guarantee
// holds. Stopped, it is still there in every other respect (subreaper of
// the orphans, the shim's ttrpc peer), and it is thawed right after.
func crashShape(t *testing.T, id string, pids []int, containerdUp bool) {
	t.Helper()
	cgPath := containerCgroupsPath(t, id)
	shim := shimPid(t, id)
	if containerdUp {
		cdPid := containerdPid(t)
		if err := syscall.Kill(cdPid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		thaw := func() { _ = syscall.Kill(cdPid, syscall.SIGCONT) }
		t.Cleanup(thaw)
		defer thaw()
	} else {
		stopContainerd(t)
	}
	start := time.Now()
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assertNoneRuns(t, pids, timeout(crashBound), "the shim's SIGKILL")
	t.Logf("all %d processes gone %v after the shim's SIGKILL", len(pids), time.Since(start).Round(time.Millisecond))
	if containerdUp {
		_ = syscall.Kill(containerdPid(t), syscall.SIGCONT)
	} else {
		startContainerd(t)
	}
	waitFor(t, timeout(30*time.Second), "task to leave the RUNNING state", func() bool {
		st, ok := taskStatus(t, id)
		return !ok || st.Status != "RUNNING"
	}, func() string { return mustCtr(t, "tasks", "ls") })
	waitFor(t, timeout(30*time.Second), "cgroup removed", func() bool {
		return len(cgroupDirs(cgPath)) == 0
	}, func() string { return fmt.Sprintf("cgroups: %v", cgroupDirs(cgPath)) })
}

// tree is the process tree every shape runs: the init, two children and a
// grandchild.
var tree = []string{"sh", "-c", "sleep 1000 & sh -c 'sleep 1000 & wait' & wait"}

// crashHostPid: no pid namespace at all; the init's death ends nothing else.
func crashHostPid(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	rootfs := shapeRootfs(t)
	id := newContainerID(t)
	spec := shapeSpec(t, id, rootfs, tree, func(_, _, linux map[string]any) { setNamespace(linux, "pid", "-") })
	pids := runSpecDetached(t, id, spec, 4)
	if ns, _ := pidNamespace(pids[0]); ns != mustPidNS(t, os.Getpid()) {
		t.Fatalf("container process %d is in pid namespace %s, not the host's", pids[0], ns)
	}
	crashShape(t, id, pids, containerdUp)
}

func TestCrashShapeHostPidContainerdRunning(t *testing.T) { crashHostPid(t, true) }
func TestCrashShapeHostPidContainerdStopped(t *testing.T) { crashHostPid(t, false) }

// crashJoinedPidNS: the pid namespace of another container ("the pod's
// sandbox"), joined by path as Kubernetes does for shared-pid pods. Only
// this container's processes go; the sandbox, served by another shim, stays.
func crashJoinedPidNS(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	sandbox := newContainerID(t)
	sb := runDetached(t, sandbox, 1, nil, "exec sleep 1000")
	rootfs := shapeRootfs(t)
	id := newContainerID(t)
	nsPath := fmt.Sprintf("/proc/%d/ns/pid", sb.Pid)
	spec := shapeSpec(t, id, rootfs, tree, func(_, _, linux map[string]any) { setNamespace(linux, "pid", nsPath) })
	pids := runSpecDetached(t, id, spec, 4)
	want := mustPidNS(t, sb.Pid)
	for _, p := range pids {
		if ns, _ := pidNamespace(p); ns != want {
			t.Fatalf("container process %d is in pid namespace %s, not the sandbox's %s", p, ns, want)
		}
	}
	crashShape(t, id, pids, containerdUp)
	if !alive(sb.Pid) {
		t.Errorf("the sandbox's init %d died with the other container's shim", sb.Pid)
	}
}

func TestCrashShapeJoinedPidNSContainerdRunning(t *testing.T) { crashJoinedPidNS(t, true) }
func TestCrashShapeJoinedPidNSContainerdStopped(t *testing.T) { crashJoinedPidNS(t, false) }

// crashJoinedUserNS: a user namespace joined by path (the pod's) with a pid
// namespace of the container's own: the init is cloned by a launcher inside
// the user namespace, so the daemon holds its pidfd only by fd passing (in
// native mode the same autokill file; in fallback mode the init is the
// daemon's child through CLONE_PARENT, with PDEATHSIG).
func crashJoinedUserNS(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	rootfs := usernsRootfs(t)
	sb := usernsSandbox(t)
	id := newContainerID(t)
	pids := runSpecDetached(t, id, joinSpec(t, id, rootfs, sb.Pid, usernsMapping, true, tree...), 4)
	shim := shimPid(t, id)
	if z := zombiesOf(shim); len(z) != 0 {
		t.Errorf("the launcher left zombies: %v", z)
	}
	// The init is the task's pid: pid 1 of its own pid namespace. In
	// fallback mode CLONE_PARENT made it the daemon's child (waitid and
	// PDEATHSIG need that); in native mode its launcher's exit left it to a
	// subreaper or the host's init, and the autokill pidfd holds it.
	st, ok := taskStatus(t, id)
	if !ok {
		t.Fatalf("task %s not listed", id)
	}
	init, err := procStat(st.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if native := expectNative(t); (init.PPid == shim) == native {
		t.Errorf("init %v, shim %d: in %s mode the init's parent must %sbe the shim", init, shim, map[bool]string{true: "native", false: "fallback"}[native], map[bool]string{true: "not ", false: ""}[native])
	}
	crashShape(t, id, pids, containerdUp)
	if !alive(sb.Pid) {
		t.Errorf("the sandbox's init %d died with the other container's shim", sb.Pid)
	}
}

func TestCrashShapeJoinedUserNSContainerdRunning(t *testing.T) { crashJoinedUserNS(t, true) }
func TestCrashShapeJoinedUserNSContainerdStopped(t *testing.T) { crashJoinedUserNS(t, false) }

// crashSuExec: the init drops root with setuid(2) before exec'ing the
// workload, as su-exec and gosu do; in fallback mode that cleared
// PDEATHSIG. It has its own pid namespace.
func crashSuExec(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	rootfs := shapeRootfs(t)
	id := newContainerID(t)
	args := append([]string{"/bin/ak-suexec", "65534:65534"}, tree...)
	pids := runSpecDetached(t, id, shapeSpec(t, id, rootfs, args, nil), 4)
	for _, p := range pids {
		if uid := realUID(t, p); uid != 65534 {
			t.Fatalf("process %d has uid %d: ak-suexec did not drop root\n%s", p, uid, psTable(pids))
		}
	}
	crashShape(t, id, pids, containerdUp)
}

func TestCrashShapeSuExecContainerdRunning(t *testing.T) { crashSuExec(t, true) }
func TestCrashShapeSuExecContainerdStopped(t *testing.T) { crashSuExec(t, false) }

// crashSetuidBinary: the init starts as uid 65534 (spec) and execs a
// setuid-root binary, whose credential change cleared PDEATHSIG in
// fallback mode. no_new_privs is off, or the setuid bit would be ignored.
func crashSetuidBinary(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	rootfs := shapeRootfs(t)
	id := newContainerID(t)
	args := append([]string{"/bin/ak-sudo"}, tree...)
	spec := shapeSpec(t, id, rootfs, args, func(_, proc, _ map[string]any) {
		proc["user"] = map[string]any{"uid": 65534, "gid": 65534}
		proc["noNewPrivileges"] = false
	})
	pids := runSpecDetached(t, id, spec, 4)
	for _, p := range pids {
		if uid := realUID(t, p); uid != 0 {
			t.Fatalf("process %d has uid %d: the setuid-root ak-sudo did not run as root\n%s", p, uid, psTable(pids))
		}
	}
	crashShape(t, id, pids, containerdUp)
}

func TestCrashShapeSetuidBinaryContainerdRunning(t *testing.T) { crashSetuidBinary(t, true) }
func TestCrashShapeSetuidBinaryContainerdStopped(t *testing.T) { crashSetuidBinary(t, false) }

// TestHostPidInitExitKillsLeftovers: an init without its own pid namespace
// exits normally; what it left running is killed before TaskExit, so by the
// time the task is STOPPED nothing of it runs, and the exit status is kept.
// (containerd's runc shim does this too: it passes with the reference.)
func TestHostPidInitExitKillsLeftovers(t *testing.T) {
	rootfs := shapeRootfs(t)
	id := newContainerID(t)
	script := "sleep 1000 & sh -c 'sleep 1000 & wait' & while [ ! -e /tmp/exit ]; do sleep 0.1; done; exit 3"
	spec := shapeSpec(t, id, rootfs, []string{"sh", "-c", script}, func(_, _, linux map[string]any) { setNamespace(linux, "pid", "-") })
	pids := runSpecDetached(t, id, spec, 4)
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "exit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	// Signalled before TaskExit; dying takes the kernel a moment more.
	assertNoneRuns(t, pids, timeout(time.Second), "the init's normal exit (task STOPPED)")
	if st := deleteTask(t, id); st != 3 {
		t.Errorf("exit status %d, want the init's 3", st)
	}
}

func containerdPid(t *testing.T) int {
	t.Helper()
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if cd.cmd == nil || cd.cmd.Process == nil {
		t.Fatal("containerd is not running")
	}
	return cd.cmd.Process.Pid
}

func mustPidNS(t *testing.T, pid int) string {
	t.Helper()
	ns, err := pidNamespace(pid)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
