package integration

// The kernel semantics the shim is built on, end to end through containerd.
// Tests that need CLONE_AUTOREAP/CLONE_PIDFD_AUTOKILL skip on older kernels
// and fail on a kernel that has them if the shim does not use them.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With the shim frozen nobody can reap: only CLONE_AUTOREAP keeps a killed
// container init from becoming a zombie.
func TestNativeNoZombieWhileShimStopped(t *testing.T) {
	requireNative(t)
	id := newContainerID(t)
	ti := runDetached(t, id, 1, nil, "sleep 1000")
	shim := shimPid(t, id)
	if err := syscall.Kill(shim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(shim, syscall.SIGCONT)
	if err := syscall.Kill(ti.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, timeout(crashBound), "the killed init to vanish (no zombie) with its shim stopped", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", ti.Pid))
		return os.IsNotExist(err)
	}, func() string { return psTable([]int{ti.Pid}) })
	syscall.Kill(shim, syscall.SIGCONT)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	if st := deleteTask(t, id); st != 137 {
		t.Fatalf("exit status %d, want 137 (SIGKILL)", st)
	}
}

// Exit statuses reach containerd: PIDFD_GET_INFO in native mode, waitid on
// the pidfd in fallback mode.
func TestExitStatusReachesContainerd(t *testing.T) {
	requireAutokillRuntime(t)
	expectNative(t)
	t.Run("exit 3", func(t *testing.T) {
		id := newContainerID(t)
		r := ctrResult(t, runArgs([]string{"--rm"}, id, "sh", "-c", "exit 3")...)
		if r.Code != 3 {
			t.Fatalf("ctr run exit %d, want 3\n%s", r.Code, r)
		}
	})
	t.Run("SIGTERM is 143", func(t *testing.T) {
		// pid 1 of a pid namespace is immune to SIGTERM without a handler:
		// run in the host's pid namespace so the signal kills.
		id := newContainerID(t)
		ti := runDetached(t, id, 1, []string{"--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", os.Getpid())}, "exec sleep 1000")
		if r := ctrResult(t, "tasks", "kill", id); r.Code != 0 {
			t.Fatalf("%s", r)
		}
		waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
		if st := deleteTask(t, id); st != 143 {
			t.Fatalf("exit status %d, want 143 (SIGTERM)", st)
		}
		_ = ti
	})
}

// A helper the shim starts (here a binary:// logger that never exits) must
// not keep the container alive once the shim is killed: it never holds a
// copy of the autokill pidfd.
func TestHelperDoesNotKeepContainerAlive(t *testing.T) {
	requireAutokillRuntime(t)
	dir := t.TempDir()
	logger := filepath.Join(dir, "logger")
	marker := filepath.Join(dir, "ready")
	// Ready (fd 5 closed) at once, then hold stdout/stderr and sleep.
	script := fmt.Sprintf("#!/bin/sh\nexec 5>&-\necho $$ > %s\nexec sleep 100000\n", marker)
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	id := newContainerID(t)
	runDetached(t, id, 2, []string{"--log-uri", "binary://" + logger}, "sleep 1000 & sleep 1000")
	pids := containerProcs(t, id)
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("logging binary did not run: %v", err)
	}
	var loggerPid int
	fmt.Sscan(strings.TrimSpace(string(b)), &loggerPid)
	t.Cleanup(func() { syscall.Kill(loggerPid, syscall.SIGKILL) })
	if !alive(loggerPid) {
		t.Fatalf("logger %d not running", loggerPid)
	}
	// No fd of the logger may be a pidfd.
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", loggerPid))
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", loggerPid, e.Name()))
		if strings.Contains(l, "pidfd") {
			t.Fatalf("logger holds a pidfd: fd %s → %s", e.Name(), l)
		}
	}
	stopContainerd(t)
	if err := syscall.Kill(shimPid(t, id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids, timeout(crashBound))
	startContainerd(t)
}
