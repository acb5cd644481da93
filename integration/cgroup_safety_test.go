package integration

// Hostile cgroupsPath values (issue 7): the delete face must not follow
// one out of cgroupfs, Create must not take over a busy cgroup (and its
// Delete must not kill what lives there), and an empty path must still
// give the container a cgroup with its limits.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runDeleteFace runs `shim delete` on a bundle the way containerd does
// when it finds a shim dead.
func runDeleteFace(t *testing.T, id, bundleDir string) (stderr string, err error) {
	t.Helper()
	if shimPath == "" {
		t.Skip("AUTOKILL_SHIM not set: these tests drive our shim directly")
	}
	cmd := exec.Command(shimPath, "-namespace", directNamespace, "-address", "/run/autokill-none/containerd.sock",
		"-publish-binary", "/bin/true", "-id", id, "-bundle", bundleDir, "delete")
	cmd.Dir = bundleDir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var eb bytes.Buffer
	cmd.Stderr = &eb
	cmd.Stdout = &bytes.Buffer{}
	err = cmd.Run()
	return eb.String(), err
}

// cgroupOfPid is the cgroup of pid in the hierarchy that carries
// controller (v1), or its v2 cgroup.
func cgroupOfPid(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if cgroupV2Only() && parts[0] == "0" {
			return parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return parts[2]
			}
		}
	}
	t.Fatalf("pid %d has no %s cgroup: %s", pid, controller, b)
	return ""
}

// controllerFile is the path of a controller's file for cgroupsPath.
func controllerFile(controller, cgroupsPath, file string) string {
	if cgroupV2Only() {
		return filepath.Join("/sys/fs/cgroup", cgroupsPath, file)
	}
	return filepath.Join("/sys/fs/cgroup", controller, cgroupsPath, file)
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func memoryLimitFile() string {
	if cgroupV2Only() {
		return "memory.max"
	}
	return "memory.limit_in_bytes"
}

// The delete face used to remove <hierarchy>/<cgroupsPath> recursively with
// no check: "/../../../../tmp/x" named a host directory.
func TestCgroupSafetyDeleteFaceTraversal(t *testing.T) {
	victim, err := os.MkdirTemp("/tmp", "ak-cg-victim-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(victim)
	keep := filepath.Join(victim, "keep")
	if err := os.WriteFile(keep, []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	const id = "cgsafe-traversal"
	b := newBundle(t, id)
	// Four ".." climb out of /sys/fs/cgroup/<controller> (v1); on v2 the
	// extra one stops at "/". Either way: /tmp/ak-cg-victim-*.
	b.spec.Linux.CgroupsPath = "/../../../../" + strings.TrimPrefix(victim, "/")
	b.write(t)
	stderr, err := runDeleteFace(t, id, b.dir)
	t.Logf("delete face: %v: %s", err, stderr)
	if _, serr := os.Stat(keep); serr != nil {
		t.Fatalf("the delete face removed host data %s (cgroupsPath %q): %v", keep, b.spec.Linux.CgroupsPath, serr)
	}
	if err == nil || !strings.Contains(stderr, "linux.cgroupsPath") {
		t.Errorf("delete face: %v, %q; want a failure naming linux.cgroupsPath", err, stderr)
	}
}

// A cgroupsPath naming a busy cgroup (another live container's, the root,
// a parent of other cgroups) is refused at Create with FailedPrecondition;
// the other cgroup's limits and processes survive Create and Delete (task
// Delete and the delete face) of the refused container.
func TestCgroupSafetyBusyCgroup(t *testing.T) {
	const idA = "cgsafe-busy-a"
	a := newBundle(t, idA, "sleep", "1000")
	memA, pidsA := int64(96<<20), int64(50)
	a.spec.Linux.Resources = &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &memA},
		Pids:   &specs.LinuxPids{Limit: &pidsA},
	}
	a.write(t)
	s := startDirectShim(t, idA, a.dir)
	ctx := nsCtx(t)
	ra, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: idA, Bundle: a.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.task.Kill(ctx, &taskapi.KillRequest{ID: idA, Signal: 9})
		s.task.Wait(ctx, &taskapi.WaitRequest{ID: idA})
		s.task.Delete(ctx, &taskapi.DeleteRequest{ID: idA})
		if l := leftovers(t, a, idA); len(l) > 0 {
			t.Errorf("A left behind: %v", l)
		}
	}()
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: idA}); err != nil {
		t.Fatal(err)
	}
	pathA := a.spec.Linux.CgroupsPath
	if got := cgroupOfPid(t, int(ra.Pid), "pids"); got != pathA {
		t.Fatalf("A's init is in %s, want %s", got, pathA)
	}
	intact := func(t *testing.T) {
		t.Helper()
		if !alive(int(ra.Pid)) {
			t.Fatalf("A's init %d was killed", ra.Pid)
		}
		if got := cgroupOfPid(t, int(ra.Pid), "pids"); got != pathA {
			t.Errorf("A's init moved to %s", got)
		}
		if got := readTrim(t, controllerFile("pids", pathA, "pids.max")); got != "50" {
			t.Errorf("A's pids.max = %s, want 50", got)
		}
		if got := readTrim(t, controllerFile("memory", pathA, memoryLimitFile())); got != strconv.FormatInt(memA, 10) {
			t.Errorf("A's memory limit = %s, want %d", got, memA)
		}
		st, err := s.task.State(ctx, &taskapi.StateRequest{ID: idA})
		if err != nil || st.GetStatus().String() != "RUNNING" {
			t.Errorf("A's state: %v %v, want RUNNING", st.GetStatus(), err)
		}
	}

	for i, tc := range []struct{ name, path string }{
		{"another container's cgroup", pathA},
		{"a parent of other cgroups", "/" + directNamespace},
		{"the root", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("cgsafe-busy-b%d", i)
			b := newBundle(t, id, "sleep", "1000")
			b.spec.Linux.CgroupsPath = tc.path
			memB, pidsB := int64(32<<20), int64(3)
			b.spec.Linux.Resources = &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &memB},
				Pids:   &specs.LinuxPids{Limit: &pidsB},
			}
			b.write(t)
			_, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir})
			err = grpcErr(err)
			t.Logf("create with cgroupsPath %q: %v", tc.path, err)
			if got := codeOf(err); got != "FailedPrecondition" {
				t.Errorf("create with cgroupsPath %q: %s (%v), want FailedPrecondition", tc.path, got, err)
			}
			if err == nil {
				// What the old code did next: its Delete killed the cgroup.
				s.task.Start(ctx, &taskapi.StartRequest{ID: id})
				s.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9})
				s.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
			}
			_, _ = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
			if stderr, err := runDeleteFace(t, id, b.dir); err != nil {
				t.Errorf("delete face on the refused bundle: %v: %s", err, stderr)
			}
			time.Sleep(100 * time.Millisecond) // a kill would have landed by now
			intact(t)
		})
	}
	runGood(t, s, "cgsafe-busy-good", 0)
	intact(t)
}

// With no cgroupsPath the container still gets a cgroup, /<namespace>/<id>,
// and its pids and memory limits hold.
func TestCgroupSafetyEmptyPathLimits(t *testing.T) {
	const id = "cgsafe-empty"
	// The inner shell forks 20 sleeps and dies at the first refused fork;
	// the init outlives it.
	b := newBundle(t, id, "sh", "-c", `sh -c 'i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; wait'; sleep 1000`)
	b.spec.Linux.CgroupsPath = ""
	mem, pids := int64(48<<20), int64(6)
	b.spec.Linux.Resources = &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	b.write(t)
	s := startDirectShim(t, id, b.dir)
	ctx := nsCtx(t)
	resp, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9, All: true})
		s.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		if _, err := s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Errorf("delete: %v", err)
		}
		if l := leftovers(t, b, id); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}()
	want := "/" + directNamespace + "/" + id
	for _, c := range []string{"pids", "memory"} {
		if got := cgroupOfPid(t, int(resp.Pid), c); got != want {
			t.Fatalf("init's %s cgroup is %s, want the derived %s", c, got, want)
		}
	}
	if got := readTrim(t, controllerFile("pids", want, "pids.max")); got != "6" {
		t.Errorf("pids.max = %s, want 6", got)
	}
	if got := readTrim(t, controllerFile("memory", want, memoryLimitFile())); got != strconv.FormatInt(mem, 10) {
		t.Errorf("memory limit = %s, want %d", got, mem)
	}
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	// The kernel refuses the forks past the limit.
	events := controllerFile("pids", want, "pids.events")
	waitFor(t, timeout(10*time.Second), "a fork refused by pids.max", func() bool {
		return !strings.Contains(readTrim(t, events), "max 0")
	}, func() string { return readTrim(t, events) })
	procs, err := s.task.Pids(ctx, &taskapi.PidsRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	n := len(procs.GetProcesses())
	t.Logf("%d processes in the container; pids.events: %s", n, readTrim(t, events))
	if n == 0 || n > 6 {
		t.Errorf("%d processes in the container, want 1..6 (pids.max)", n)
	}
	if !alive(int(resp.Pid)) {
		t.Errorf("init %d died", resp.Pid)
	}
}
