package integration

// The systemd cgroup driver (runtime option SystemdCgroup, cgroupsPath
// "slice:prefix:name"): a transient scope made through systemd's D-Bus API.
// These tests need systemd as the init: the VM tier boots it for them
// (AUTOKILL_VM_INIT=systemd, hack/vm/run-tests.sh); elsewhere they skip, and
// TestSystemdCgroupRefused checks the refusal instead. The TestAPI* ones
// pass with io.containerd.runc.v2 (runc --systemd-cgroup) as well.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const systemdBooted = "/run/systemd/system"

func systemdIsInit() bool {
	fi, err := os.Lstat(systemdBooted)
	return err == nil && fi.IsDir()
}

func requireSystemd(t *testing.T) {
	t.Helper()
	if !systemdIsInit() {
		t.Skipf("systemd is not the init here (no %s): the VM tier boots it for these tests", systemdBooted)
	}
	if !cgroupV2Only() {
		t.Skip("the systemd driver is implemented on cgroup v2 only")
	}
}

// unitProp is one property of a unit as systemctl shows it.
func unitProp(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "--value", "-p", prop, unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl show -p %s %s: %v\n%s", prop, unit, err, out)
	}
	return strings.TrimSpace(string(out))
}

// systemdContainer creates container id with the runtime option
// SystemdCgroup (a runc Options Any, which both runtimes read) and
// cgroupsPath; edit changes the spec (shapeSpec's).
func systemdContainer(t *testing.T, id, cgroupsPath string, script string, edit func(spec, proc, linux map[string]any)) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	m := shapeSpec(t, id, rootfs, []string{"sh", "-c", script}, func(spec, proc, linux map[string]any) {
		linux["cgroupsPath"] = cgroupsPath
		if edit != nil {
			edit(spec, proc, linux)
		}
	})
	apiContainer(t, id, m, optionsAny(t, &runcopts.Options{SystemdCgroup: true}))
}

// startTask creates and starts the task of id (no stdio) and returns its pid.
func startTask(t *testing.T, id string) int {
	t.Helper()
	ctx, tasks := tasksClient(t)
	r, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id})
	if err != nil {
		t.Fatalf("create task %s: %v", id, err)
	}
	if _, err := tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id}); err != nil {
		t.Fatalf("start task %s: %v", id, err)
	}
	return int(r.Pid)
}

func limits(mem int64, pids int64) func(spec, proc, linux map[string]any) {
	return func(_, _, linux map[string]any) {
		res := linux["resources"].(map[string]any)
		res["memory"] = map[string]any{"limit": mem}
		res["pids"] = map[string]any{"limit": pids}
	}
}

// scopeGone: systemd no longer knows the unit and its cgroup is removed.
func scopeGone(t *testing.T, unit, dir string) bool {
	t.Helper()
	_, err := os.Lstat(dir)
	return os.IsNotExist(err) && unitProp(t, unit, "LoadState") == "not-found"
}

// TestAPISystemdCgroup: the container runs in the scope its cgroupsPath
// names, with its limits in the cgroup files and in the unit's properties;
// Update changes both, Stats report them, an exec joins it, Pause freezes
// it, Delete removes the scope.
func TestAPISystemdCgroup(t *testing.T) {
	requireSystemd(t)
	id := newContainerID(t)
	unit := "autokill-" + id + ".scope"
	dir := "/sys/fs/cgroup/system.slice/" + unit
	systemdContainer(t, id, "system.slice:autokill:"+id, "sleep 1000", limits(64<<20, 32))
	pid := startTask(t, id)

	if got := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", pid)); got != "0::/system.slice/"+unit {
		t.Errorf("the init's cgroup is %q, want the scope /system.slice/%s", got, unit)
	}
	for prop, want := range map[string]string{
		"ActiveState": "active", "Delegate": "yes", "Slice": "system.slice",
		"MemoryMax": strconv.Itoa(64 << 20), "TasksMax": "32",
	} {
		if got := unitProp(t, unit, prop); got != want {
			t.Errorf("%s: %s=%s, want %s", unit, prop, got, want)
		}
	}
	for f, want := range map[string]string{"memory.max": strconv.Itoa(64 << 20), "pids.max": "32"} {
		if got := readTrim(t, filepath.Join(dir, f)); got != want {
			t.Errorf("%s = %s, want %s", f, got, want)
		}
	}

	if err := updateTask(t, id, map[string]any{"memory": map[string]any{"limit": 96 << 20}, "pids": map[string]any{"limit": 48}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	for f, want := range map[string]string{"memory.max": strconv.Itoa(96 << 20), "pids.max": "48"} {
		if got := readTrim(t, filepath.Join(dir, f)); got != want {
			t.Errorf("after the update %s = %s, want %s", f, got, want)
		}
	}
	for prop, want := range map[string]string{"MemoryMax": strconv.Itoa(96 << 20), "TasksMax": "48"} {
		if got := unitProp(t, unit, prop); got != want {
			t.Errorf("after the update %s: %s=%s, want %s", unit, prop, got, want)
		}
	}

	r, err := tasksapi.NewTasksClient(apiConn(t)).Metrics(apiCtx(t), &tasksapi.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil || len(r.Metrics) != 1 {
		t.Fatalf("metrics: %v %v", r, err)
	}
	v, err := typeurl.UnmarshalAny(r.Metrics[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*v2stats.Metrics)
	if !ok {
		t.Fatalf("metrics of type %q, want io.containerd.cgroups.v2.Metrics", r.Metrics[0].Data.GetTypeUrl())
	}
	if m.GetMemory().GetUsageLimit() != 96<<20 || m.GetPids().GetLimit() != 48 || m.GetPids().GetCurrent() < 1 || m.GetMemory().GetUsage() == 0 {
		t.Errorf("metrics: memory %d of %d, pids %d of %d; want the limits 96 MiB and 48, some usage",
			m.GetMemory().GetUsage(), m.GetMemory().GetUsageLimit(), m.GetPids().GetCurrent(), m.GetPids().GetLimit())
	}

	// An exec joins the scope (cloned into it once it exists); pause
	// freezes the scope.
	if r := execIn(t, id, "x1", []string{"--detach"}, "sleep", "1000"); r.Code != 0 {
		t.Fatalf("exec --detach: %s", r)
	}
	waitFor(t, timeout(10*time.Second), "the exec in the scope", func() bool { return len(cgroupProcsIn(t, dir)) == 2 },
		func() string { return fmt.Sprintf("scope %v, ctr task ps %v", cgroupProcsIn(t, dir), taskPids(t, id)) })
	mustCtr(t, "tasks", "pause", id)
	if got := readTrim(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("paused: cgroup.freeze = %s", got)
	}
	mustCtr(t, "tasks", "resume", id)

	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	deleteTask(t, id)
	waitFor(t, timeout(10*time.Second), "the scope to be gone after Delete", func() bool { return scopeGone(t, unit, dir) },
		func() string { return "LoadState=" + unitProp(t, unit, "LoadState") })
}

// TestAPISystemdCgroupOOM: an OOM kill in the scope is a TaskOOM; the
// container runs on.
func TestAPISystemdCgroupOOM(t *testing.T) {
	requireSystemd(t)
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	systemdContainer(t, id, "system.slice:autokill:"+id, fmt.Sprintf(`sh -c '%s'; echo $? > /tmp/child; sleep 1000`, oomScript), limits(32<<20, 64))
	pid := startTask(t, id)
	ev.wait(t, id, "/tasks/start", "/tasks/oom")
	waitFor(t, timeout(30*time.Second), "the child's exit status", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/child", pid))
		return err == nil && strings.TrimSpace(string(b)) == "137"
	}, nil)
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" {
		t.Fatalf("the task is %+v after its child's OOM kill, want RUNNING", st)
	}
}

// TestAPISystemdCgroupOOMInit: an OOM kill of the init is a TaskOOM before
// its TaskExit, though the kill empties the scope and systemd removes it,
// count and all, at once.
func TestAPISystemdCgroupOOMInit(t *testing.T) {
	requireSystemd(t)
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	systemdContainer(t, id, "system.slice:autokill:"+id, oomScript, limits(32<<20, 64))
	startTask(t, id)
	waitTaskStatus(t, id, "STOPPED", timeout(60*time.Second))
	ev.wait(t, id, "/tasks/start", "/tasks/oom", "/tasks/exit")
	if code := deleteTask(t, id); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit status %d, want 137 (OOM kill)", code)
	}
}

// TestSystemdCgroupCrash: the crash guarantee in a scope. SIGKILL of the
// shim leaves no process of the container, with its own pid namespace
// (autokill or PDEATHSIG) or the host's (the guard, armed on the scope's
// directory before systemd has made it), containerd up or down; then
// containerd's `shim delete` leaves no scope. The cgroupsPath is empty: the
// driver derives system.slice:autokill:<namespace>-<id>.
func TestSystemdCgroupCrash(t *testing.T) {
	requireSystemd(t)
	requireAutokillRuntime(t)
	for _, tc := range []struct {
		name       string
		containerd bool
		hostPid    bool
	}{
		{"own-pidns-containerd-up", true, false},
		{"own-pidns-containerd-down", false, false},
		{"host-pid-containerd-up", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newContainerID(t)
			unit := "autokill-" + testNamespace + "-" + id + ".scope"
			dir := "/sys/fs/cgroup/system.slice/" + unit
			systemdContainer(t, id, "", "sleep 1000 & sh -c 'sleep 1000 & wait' & wait", func(_, _, linux map[string]any) {
				if tc.hostPid {
					setNamespace(linux, "pid", "-")
				}
			})
			startTask(t, id)
			var pids []int
			waitFor(t, timeout(30*time.Second), "4 processes in the scope", func() bool {
				pids = cgroupProcsIn(t, dir)
				return len(pids) >= 4
			}, func() string { return fmt.Sprintf("%s: %v", dir, pids) })
			shim := shimPid(t, id)
			if !tc.containerd {
				stopContainerd(t)
			}
			if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			assertAllGone(t, pids, timeout(crashBound))
			if !tc.containerd {
				startContainerd(t)
			}
			waitFor(t, timeout(30*time.Second), "task to leave the RUNNING state", func() bool {
				st, ok := taskStatus(t, id)
				return !ok || st.Status != "RUNNING"
			}, func() string { return mustCtr(t, "tasks", "ls") })
			waitFor(t, timeout(30*time.Second), "the scope to be gone", func() bool { return scopeGone(t, unit, dir) },
				func() string { return "LoadState=" + unitProp(t, unit, "LoadState") })
		})
	}
}

// cgroupProcsIn lists cgroup.procs of dir ("" when it does not exist yet).
func cgroupProcsIn(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// TestSystemdCgroupRefused: where systemd is not the init, the driver is
// FailedPrecondition (at once: no D-Bus is tried); anywhere, a cgroupfs path
// with the systemd driver is InvalidArgument; nothing is left behind.
func TestSystemdCgroupRefused(t *testing.T) {
	requireAutokillRuntime(t)
	ctx, tasks := tasksClient(t)
	type refusal struct {
		path    string
		systemd bool
		want    codes.Code
		msg     string
	}
	cases := []refusal{
		{"/" + testNamespace + "/x", true, codes.InvalidArgument, "slice:prefix:name"},
	}
	if !systemdIsInit() {
		cases = append(cases, refusal{"system.slice:autokill:x", true, codes.FailedPrecondition, systemdBooted})
	}
	for _, tc := range cases {
		id := newContainerID(t)
		if tc.systemd {
			systemdContainer(t, id, tc.path, "true", nil)
		} else {
			rootfs := filepath.Join(t.TempDir(), "rootfs")
			if err := os.Mkdir(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			extractImageRootfs(t, rootfs)
			m := shapeSpec(t, id, rootfs, []string{"true"}, func(_, _, linux map[string]any) { linux["cgroupsPath"] = tc.path })
			mustCtr(t, "containers", "create", "--runtime", runtimeName, "--config", writeSpec(t, m), id)
		}
		start := time.Now()
		_, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id})
		if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q (SystemdCgroup %v): %v; want %s naming %q", tc.path, tc.systemd, err, tc.want, tc.msg)
		}
		if d := time.Since(start); d > timeout(10*time.Second) {
			t.Errorf("%q: the refusal took %v", tc.path, d)
		}
		if _, ok := taskStatus(t, id); ok {
			t.Errorf("a task of %s is listed after the refused create", id)
		}
	}
}

// TestCtrCgroupsPathSliceFormOnCgroupfs: containerd 1.6's CRI writes "slice:cri-containerd:id"
// for any pod whose cgroup parent ends in .slice, whichever driver is configured. With the cgroupfs
// driver runc takes it as one relative path component, under the shim's own cgroup; so do we.
func TestCtrCgroupsPathSliceFormOnCgroupfs(t *testing.T) {
	id := newContainerID(t)
	p := "test.slice:cri-containerd:" + id
	spec := shapeSpec(t, id, shapeRootfs(t), []string{"sleep", "100000"}, func(_, _, linux map[string]any) { linux["cgroupsPath"] = p })
	pids := runSpecDetached(t, id, spec, 1)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pids[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "/"+p+"\n") {
		t.Fatalf("the init's cgroups do not end in %q:\n%s", p, cg)
	}
}
