package integration

// Regression tests for hostile bundles and hostile neighbours (issue 7):
// each one drives the shim over ttrpc with a bundle built to attack it and
// shows the attack failing.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A namespace joined by path must be of the type the spec says. The shim
// used to setns with nstype 0, which joins whatever the file is: a
// "network" path naming a mount namespace moved the init into that mount
// namespace, where it then pivoted its root.
func TestDirectJoinNamespaceWrongType(t *testing.T) {
	// A throwaway mount namespace, so that the attack, where it works,
	// harms nothing but it.
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "1000")
	if err := holder.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	mntNS := fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)
	waitFor(t, timeout(5*time.Second), "the holder's own mount namespace", func() bool {
		a, _ := os.Readlink(mntNS)
		b, _ := os.Readlink("/proc/self/ns/mnt")
		return a != "" && a != b
	}, nil)
	before, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}

	b := newBundle(t, "direct-nstype", "sleep", "1000")
	for i, ns := range b.spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			b.spec.Linux.Namespaces[i].Path = mntNS
		}
	}
	b.write(t)
	s := startDirectShim(t, "direct-nstype", b.dir)
	ctx := nsCtx(t)
	_, err = s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-nstype", Bundle: b.dir})
	if err == nil {
		_, _ = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-nstype"})
		t.Fatal("create joined a mount namespace given as the network namespace; want InvalidArgument")
	}
	err = grpcErr(err)
	if got := codeOf(err); got != "InvalidArgument" {
		t.Fatalf("error class %s, want InvalidArgument: %v", got, err)
	}
	if !strings.Contains(err.Error(), "mount namespace") {
		t.Errorf("error does not say what the path is: %v", err)
	}
	after, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", holder.Process.Pid))
	if string(after) != string(before) {
		t.Errorf("the other mount namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if l := leftovers(t, b, "direct-nstype"); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
	runGood(t, s, "direct-nstype-good", 0)
}

// When the user's execve fails at Start, a second Start must be refused
// (FailedPrecondition), not crash the daemon: it used to dereference the
// spent setup connection, and the panic took down every container of the
// daemon.
func TestDirectSecondStartAfterExecFailure(t *testing.T) {
	b := newBundle(t, "direct-restart", "/bin/not-a-program")
	// Executable, so Create's lookup accepts it; not a format execve knows.
	if err := os.WriteFile(filepath.Join(b.dir, "rootfs/bin/not-a-program"), []byte("\x7fELF\x02\x01\x01garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.write(t)
	s := startDirectShim(t, "direct-restart", b.dir)
	// A bystander container of the same daemon, which must survive.
	by := newBundle(t, "direct-restart-bystander", "sleep", "1000")
	by.write(t)
	ctx := nsCtx(t)
	if _, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-restart-bystander", Bundle: by.dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-restart-bystander"}); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("direct-restart-%d", round)
		if _, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir}); err != nil {
			t.Fatalf("create: %v", err)
		}
		_, err := s.task.Start(ctx, &taskapi.StartRequest{ID: id})
		if err == nil {
			t.Fatal("start of a non-executable format succeeded")
		}
		t.Logf("first start: %v", err)
		_, err = s.task.Start(ctx, &taskapi.StartRequest{ID: id})
		if got := codeOf(grpcErr(err)); got != "FailedPrecondition" {
			t.Fatalf("second start: %s (%v), want FailedPrecondition", got, err)
		}
		if _, err := s.task.State(ctx, &taskapi.StateRequest{ID: "direct-restart-bystander"}); err != nil {
			t.Fatalf("the daemon stopped serving after a second start: %v", err)
		}
		if _, err := s.task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil {
			t.Fatalf("wait: %v", err)
		}
		if _, err := s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	st, err := s.task.State(ctx, &taskapi.StateRequest{ID: "direct-restart-bystander"})
	if err != nil || st.GetStatus().String() != "RUNNING" {
		t.Fatalf("bystander: %v %v, want RUNNING", st.GetStatus(), err)
	}
	if _, err := s.task.Kill(ctx, &taskapi.KillRequest{ID: "direct-restart-bystander", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.task.Wait(ctx, &taskapi.WaitRequest{ID: "direct-restart-bystander"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-restart-bystander"}); err != nil {
		t.Fatal(err)
	}
}

// ptraceAttackEnv makes the test binary an attacker: a process of a
// sibling container, root with CAP_KILL only, trying to trace a setup face.
const ptraceAttackEnv = "AUTOKILL_TEST_PTRACE_ATTACK"

func init() {
	if target := os.Getenv(ptraceAttackEnv); target != "" {
		os.Exit(ptraceAttack(target))
	}
}

// ptraceAttack tries PTRACE_ATTACH on every thread of pid, and to open
// /proc/pid/mem, from a thread that holds only CAP_KILL (what the sibling
// has). It prints one line per attempt and exits 0 only if all failed.
func ptraceAttack(target string) int {
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: 1 << unix.CAP_KILL, Permitted: 1 << unix.CAP_KILL, Inheritable: 0}}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		fmt.Printf("capset: %v\n", err)
		return 2
	}
	pid, _ := strconv.Atoi(target)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		fmt.Printf("tasks: %v\n", err)
		return 2
	}
	rc := 0
	for _, tk := range tasks {
		tid, _ := strconv.Atoi(tk.Name())
		err := unix.PtraceAttach(tid)
		if err == nil {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(tid, &ws, unix.WALL, nil)
			_ = unix.PtraceDetach(tid)
			fmt.Printf("attached to thread %d\n", tid)
			rc = 1
			continue
		}
		fmt.Printf("thread %d: %v\n", tid, err)
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid)); err == nil {
		f.Close()
		fmt.Printf("opened /proc/%d/mem\n", pid)
		rc = 1
	}
	return rc
}

// taskCaps reads the capability sets of every thread of pid.
func taskCaps(t *testing.T, pid int) map[string]map[string]uint64 {
	t.Helper()
	out := map[string]map[string]uint64{}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		f, err := os.Open(fmt.Sprintf("/proc/%d/task/%s/status", pid, tk.Name()))
		if err != nil {
			continue
		}
		sets := map[string]uint64{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":\t")
			if ok && strings.HasPrefix(k, "Cap") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				sets[k] = n
			}
		}
		f.Close()
		out[tk.Name()] = sets
	}
	return out
}

// The setup face waits for Start inside the container's pid namespace,
// where a sibling container's processes can see it (shared-pid pods). It
// must be non-dumpable, and no thread of it may keep more than the spec's
// capabilities: it used to be dumpable with only its main thread reduced,
// so a sibling holding the same capabilities could attach to the main
// thread and rewrite code that the fully privileged threads run.
func TestDirectSetupFaceNotTraceable(t *testing.T) {
	b := newBundle(t, "direct-ptrace", "sleep", "1000")
	b.write(t)
	s := startDirectShim(t, "direct-ptrace", b.dir)
	ctx := nsCtx(t)
	resp, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-ptrace", Bundle: b.dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-ptrace"}) })
	pid := int(resp.Pid)

	const want = uint64(1) << unix.CAP_KILL // the bundle's bounding/effective/permitted
	threads := taskCaps(t, pid)
	if len(threads) < 2 {
		t.Logf("setup face has %d thread(s): the per-thread check is weaker", len(threads))
	}
	for tid, sets := range threads {
		for _, k := range []string{"CapPrm", "CapEff", "CapBnd"} {
			if sets[k]&^want != 0 {
				t.Errorf("setup face thread %s: %s %#x, want at most %#x", tid, k, sets[k], want)
			}
		}
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), ptraceAttackEnv+"="+strconv.Itoa(pid))
	out, err := cmd.CombinedOutput()
	t.Logf("attacker:\n%s", out)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		t.Errorf("a process with CAP_KILL only could trace the setup face or read its memory")
	default:
		t.Fatalf("attacker: %v", err)
	}
	if !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("no attach attempt was refused with EPERM")
	}

	// And it still works: Start execs the entrypoint.
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-ptrace"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.task.Kill(ctx, &taskapi.KillRequest{ID: "direct-ptrace", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.task.Wait(ctx, &taskapi.WaitRequest{ID: "direct-ptrace"}); err != nil {
		t.Fatal(err)
	}
}

// A spec too large for the setup socket's one packet is refused at Create
// with InvalidArgument, before any child exists: it used to fail late, with
// a confusing "message too long", once the init had been cloned.
func TestDirectSpecTooLarge(t *testing.T) {
	b := newBundle(t, "direct-huge", "sh", "-c", "exit 0")
	pad := strings.Repeat("x", 1024)
	for i := 0; i < 2048; i++ { // ≈2 MiB of environment
		b.spec.Process.Env = append(b.spec.Process.Env, fmt.Sprintf("V%d=%s", i, pad))
	}
	b.write(t)
	s := startDirectShim(t, "direct-huge", b.dir)
	ctx := nsCtx(t)
	_, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-huge", Bundle: b.dir})
	err = grpcErr(err)
	if got := codeOf(err); got != "InvalidArgument" {
		t.Fatalf("create of a 2 MiB spec: %s (%v), want InvalidArgument", got, err)
	}
	if !strings.Contains(err.Error(), "too large") {
		t.Errorf("error does not say the spec is too large: %v", err)
	}
	if kids := childrenOf(s.pid); len(kids) > 0 {
		t.Errorf("a child was cloned for a spec that cannot be sent: %v", kids)
	}
	if l := leftovers(t, b, "direct-huge"); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
	runGood(t, s, "direct-huge-good", 0)
}
