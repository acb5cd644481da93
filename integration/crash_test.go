package integration

// The crash guarantee: a container never outlives its shim, and nothing of it
// stays behind once containerd has cleaned up after the dead shim.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashBound is how long the kernel may take to kill a container after its
// shim died. It is a liveness bound from the issue ("gone within 1 s"), not a
// performance measurement; AUTOKILL_TIMEOUT_SCALE widens it under emulation.
const crashBound = time.Second

// assertAllGone checks that no process of the container still runs within
// the bound. In native mode none may even be left as a zombie (AUTOREAP); in
// fallback mode the init is reparented to the host's init when the shim dies
// and a zombie lasts until that process reaps it, which the shim cannot
// control: it must still go away.
func assertAllGone(t *testing.T, pids []int, bound time.Duration) {
	t.Helper()
	native := expectNative(t)
	deadline := time.Now().Add(bound)
	for {
		var left []int
		for _, p := range pids {
			if native {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
					left = append(left, p)
				}
			} else if alive(p) && !exiting(p) {
				// Exiting counts as gone, like a zombie: the init of a
				// pid namespace waits in its exit for the namespace's
				// other processes to be reaped, and those the daemon
				// forked (execs) now belong to the host's init, whose
				// reaping the shim cannot hurry.
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the container's processes still exist %v after the shim was killed (native=%v):\n%s", len(left), bound, native, psTable(left))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if native {
		return
	}
	start := time.Now()
	waitFor(t, timeout(15*time.Second), "the host's init to reap the container's zombies", func() bool {
		for _, p := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
				return false
			}
		}
		return true
	}, func() string { return psTable(pids) })
	t.Logf("fallback mode: zombies reaped by the host's init %v after the processes died", time.Since(start).Round(time.Millisecond))
}

func requireAutokillRuntime(t *testing.T) {
	t.Helper()
	if runtimeName != autokillRT {
		t.Skipf("the crash guarantee is ours: runtime under test is %s", runtimeName)
	}
}

// bundleMounted tells whether anything is mounted under the container's bundle.
func bundleMounted(t *testing.T, id string) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, cd.bundleDir(id)) {
			out = append(out, l)
		}
	}
	return out
}

func cgroupDirs(cgroupsPath string) []string {
	var out []string
	m, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupsPath)
	for _, d := range m {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	if st, err := os.Stat("/sys/fs/cgroup" + cgroupsPath); err == nil && st.IsDir() {
		out = append(out, "/sys/fs/cgroup"+cgroupsPath)
	}
	return out
}

func crashScenario(t *testing.T, containerdUp bool) {
	requireAutokillRuntime(t)
	id := newContainerID(t)
	// A process tree: init plus children plus a grandchild.
	runDetached(t, id, 4, nil, "sleep 1000 & sh -c 'sleep 1000 & wait' & wait")
	cgPath := containerCgroupsPath(t, id)
	pids := containerProcs(t, id)
	if len(pids) < 4 {
		t.Fatalf("container processes %v, want at least 4", pids)
	}
	shim := shimPid(t, id)
	if !containerdUp {
		stopContainerd(t)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids, timeout(crashBound))
	if !containerdUp {
		startContainerd(t)
	}
	// containerd notices the dead shim and runs `shim delete`.
	waitFor(t, timeout(30*time.Second), "task to leave the RUNNING state", func() bool {
		st, ok := taskStatus(t, id)
		return !ok || st.Status != "RUNNING"
	}, func() string { return mustCtr(t, "tasks", "ls") })
	waitFor(t, timeout(30*time.Second), "rootfs unmounted and cgroup removed", func() bool {
		return len(bundleMounted(t, id)) == 0 && len(cgroupDirs(cgPath)) == 0
	}, func() string {
		return fmt.Sprintf("mounts: %v\ncgroups: %v", bundleMounted(t, id), cgroupDirs(cgPath))
	})
}

func TestCrashShimKilledContainerdRunning(t *testing.T) { crashScenario(t, true) }

func TestCrashShimKilledContainerdStopped(t *testing.T) { crashScenario(t, false) }
