package pidfd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
)

// kernelHasAutokill decides from the kernel version alone, independently of
// Probe, so that a broken probe fails the tests instead of skipping them.
func kernelHasAutokill(t *testing.T) bool {
	ok, err := linux.KernelAtLeast(7, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func requireNative(t *testing.T) {
	t.Helper()
	if !Probe().Native {
		if kernelHasAutokill(t) {
			t.Fatalf("kernel has CLONE_PIDFD_AUTOKILL but Probe says: %s", Probe().Reason)
		}
		t.Skipf("needs Linux 7.1+ (CLONE_AUTOREAP, CLONE_PIDFD_AUTOKILL): %s", Probe().Reason)
	}
}

// TestMain fails the package's tests if any of them leaves an owned pidfd
// open: each one is a process kept alive until its daemon dies.
func TestMain(m *testing.M) {
	startFDTrace()
	code := m.Run()
	if leaks := leakedFDs(); len(leaks) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "%d owned pidfds left open:\n%s\n", len(leaks), strings.Join(leaks, "\n"))
		code = 1
	}
	os.Exit(code)
}

func TestProbeMatchesKernel(t *testing.T) {
	m := Probe()
	t.Logf("mode %s: %s", m.Name(), m.Reason)
	if m.Native != kernelHasAutokill(t) {
		t.Fatalf("Probe native=%v on a kernel where the flags exist=%v", m.Native, kernelHasAutokill(t))
	}
	if m.Reason == "" {
		t.Fatal("empty reason")
	}
}

type child struct {
	p    *Process
	sync *os.File
	out  *os.File
}

func spawn(t *testing.T, args ...string) *child {
	t.Helper()
	exe, err := os.OpenFile(args[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true) // pollable, for read deadlines
	parent, childEnd := os.NewFile(uintptr(fds[0]), "p"), os.NewFile(uintptr(fds[1]), "c")
	defer childEnd.Close()
	p, err := Spawn(&SpawnAttr{
		Exe: exe, Args: args, Env: []string{"PATH=/usr/bin:/bin"},
		Stdio: [3]*os.File{null, w, w}, Sync: childEnd,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &child{p: p, sync: parent, out: r}
	t.Cleanup(func() {
		_ = p.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = p.Wait(ctx)
		p.Close()
		parent.Close()
		r.Close()
	})
	return c
}

func wait(t *testing.T, p *Process) Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// childFailure is what the trampoline reported on the sync socket, if
// anything: it explains an exit status of 127.
func (c *child) failure() string {
	c.sync.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 512)
	n, _ := c.sync.Read(buf)
	return string(buf[:max(n, 0)])
}

func assertGone(t *testing.T, pid int) {
	t.Helper()
	// Neither running nor a zombie: the pid has no /proc entry at all.
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still exists: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExitCode(t *testing.T) {
	c := spawn(t, "/bin/sh", "-c", "exit 3")
	e := wait(t, c.p)
	if e.Status != 3 || e.Signal != 0 {
		t.Fatalf("exit = %+v, want status 3 (%s)", e, c.failure())
	}
	assertGone(t, c.p.Pid())
}

func TestSignalDeath(t *testing.T) {
	c := spawn(t, "/bin/sleep", "100")
	if err := c.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c.p)
	if e.Status != 143 || e.Signal != syscall.SIGTERM {
		t.Fatalf("exit = %+v, want 143 (SIGTERM) (%s)", e, c.failure())
	}
	assertGone(t, c.p.Pid())
	if err := c.p.Signal(syscall.SIGTERM); !errors.Is(err, ErrExited) {
		t.Fatalf("signal after exit: %v, want ErrExited", err)
	}
}

// TestCoreDumpStatus: a death with a core dump reads as the signal, with the
// core flag waitid reports as CLD_DUMPED (fallback mode: through siginfo).
func TestCoreDumpStatus(t *testing.T) {
	c := spawn(t, "/bin/sh", "-c", "cd "+t.TempDir()+" && ulimit -c unlimited && kill -QUIT $$")
	e := wait(t, c.p)
	if e.Status != 128+int(syscall.SIGQUIT) || e.Signal != syscall.SIGQUIT {
		t.Fatalf("exit = %+v, want 131 (SIGQUIT) (%s)", e, c.failure())
	}
}

// TestChildSignalState: the child starts with every disposition at its
// default and nothing blocked, whatever the daemon ignores or blocks (the
// kernel's sigaction layout and signal count, not glibc's).
func TestChildSignalState(t *testing.T) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Reset(syscall.SIGHUP, syscall.SIGUSR2)
	c := spawn(t, "/bin/sh", "-c", "grep -E '^Sig(Blk|Ign):' /proc/self/status")
	if e := wait(t, c.p); e.Status != 0 {
		t.Fatalf("exit %+v (%s)", e, c.failure())
	}
	buf := make([]byte, 4096)
	n, _ := c.out.Read(buf)
	if got, want := strings.Fields(string(buf[:n])), []string{"SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"}; !slices.Equal(got, want) {
		t.Fatalf("child signal state %q, want %q", got, want)
	}
}

// The child must see exactly fds 0-3: no copy of any pidfd (autokill) and
// nothing else of the daemon's may cross the execve.
func TestChildFds(t *testing.T) {
	// Keep an extra non-CLOEXEC fd open in this process to prove it does
	// not leak either.
	leak, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leak)
	other := spawn(t, "/bin/sleep", "100") // a live pidfd in this process
	_ = other
	c := spawn(t, "/bin/sh", "-c", "ls /proc/$$/fd")
	e := wait(t, c.p)
	if e.Status != 0 {
		t.Fatalf("exit %+v", e)
	}
	buf := make([]byte, 4096)
	n, _ := c.out.Read(buf)
	got := strings.Fields(string(buf[:n]))
	want := []string{"0", "1", "2", "3"}
	// ls itself may hold one more fd for reading the directory.
	if len(got) < 4 || strings.Join(got[:4], " ") != strings.Join(want, " ") || len(got) > 5 {
		t.Fatalf("child fds = %v, want %v (plus ls's own)", got, want)
	}
}

func TestAutokillOnClose(t *testing.T) {
	requireNative(t)
	c := spawn(t, "/bin/sleep", "100")
	pid := c.p.Pid()
	// A pidfd_open() pidfd is a different file: it must neither keep the
	// child alive nor kill it.
	other, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v (%s)", err, c.failure())
	}
	defer unix.Close(other)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("child died early: %v", err)
	}
	c.p.Close()
	assertGone(t, pid)
}

func TestFallbackReapsWithWaitid(t *testing.T) {
	if Probe().Native {
		t.Skip("native mode: the kernel autoreaps; covered by TestExitCode")
	}
	c := spawn(t, "/bin/sh", "-c", "exit 7")
	// Until waitid runs the child is a zombie of ours: the watcher must
	// collect it.
	e := wait(t, c.p)
	if e.Status != 7 {
		t.Fatalf("exit %+v", e)
	}
	assertGone(t, c.p.Pid())
}

// Regression: the binary to exec sitting on fd 0..3 was clobbered by the
// dup3s that place stdio and the sync socket (execveat then failed with
// EACCES on the socket). Force the exe onto fd 3.
func TestExeOnLowFd(t *testing.T) {
	exe, err := os.OpenFile("/bin/sh", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	// Park whatever is on fd 3 and put the exe there (it may already be).
	exe3 := exe
	if exe.Fd() != 3 {
		saved, err := unix.FcntlInt(3, unix.F_DUPFD_CLOEXEC, 100)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Dup3(int(exe.Fd()), 3, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		exe3 = os.NewFile(3, "exe-on-3")
		defer func() {
			exe3.Close() // fd 3, before the original goes back there
			unix.Dup3(saved, 3, unix.O_CLOEXEC)
			unix.Close(saved)
		}()
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent, childEnd := os.NewFile(uintptr(fds[0]), "p"), os.NewFile(uintptr(fds[1]), "c")
	defer parent.Close()
	defer childEnd.Close()
	p, err := Spawn(&SpawnAttr{
		Exe: exe3, Args: []string{"sh", "-c", "exit 5"},
		Stdio: [3]*os.File{null, null, null}, Sync: childEnd,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if e := wait(t, p); e.Status != 5 {
		t.Fatalf("exit %+v, want 5", e)
	}
}
