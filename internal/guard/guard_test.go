package guard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// fakeDaemonEnv makes the test binary a daemon that drives a guard from
// commands on stdin, so that a test can SIGKILL "the daemon" for real. The
// guard it starts is the test binary too: the C constructor is linked in.
const fakeDaemonEnv = "AK_GUARD_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(fakeDaemonEnv) == "1" {
		fakeDaemon()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeDaemon reads "arm ID DIR...", "disarm ID" and "pid" lines and answers
// each with one line; EOF on stdin is a normal exit.
func fakeDaemon() {
	exe, err := os.OpenFile("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println("err:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "arm":
			err = Arm(ctx, exe, f[1], f[2:])
		case "disarm":
			err = Disarm(ctx, f[1])
		case "pid":
			fmt.Println(std.Pid())
			continue
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			fmt.Println("err:", err)
		} else {
			fmt.Println("ok")
		}
	}
}

type daemon struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startFakeDaemon(t *testing.T) *daemon {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeDaemonEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return d
}

func (d *daemon) do(t *testing.T, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(d.in, line); err != nil {
		t.Fatalf("fake daemon: %s: %v", line, err)
	}
	ans, err := d.out.ReadString('\n')
	if err != nil {
		t.Fatalf("fake daemon: %s: %v", line, err)
	}
	return strings.TrimSpace(ans)
}

func (d *daemon) must(t *testing.T, line string) {
	t.Helper()
	if ans := d.do(t, line); ans != "ok" {
		t.Fatalf("fake daemon: %s: %s", line, ans)
	}
}

func (d *daemon) guardPid(t *testing.T) int {
	t.Helper()
	pid, err := strconv.Atoi(d.do(t, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// kill SIGKILLs the fake daemon, as a crash would.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creates cgroups: needs root")
	}
}

// testCgroup is a cgroup made for a test in the hierarchies the guard acts
// on (v2; v1 freezer and pids), holding a shell and its three sleeps.
type testCgroup struct {
	path  string
	dirs  []string
	procs []int
}

func newTestCgroup(t *testing.T, name string) *testCgroup {
	t.Helper()
	path := fmt.Sprintf("/autokill-guard-test/%s-%d", name, os.Getpid())
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	cg := &testCgroup{path: path}
	for _, m := range mounts {
		opts := "," + m.VFSOptions + ","
		if m.FSType == "cgroup" && !strings.Contains(opts, ",freezer,") && !strings.Contains(opts, ",pids,") {
			continue
		}
		if m.FSType == "cgroup2" && len(mounts) > 1 && m.Mountpoint != "/sys/fs/cgroup" {
			continue // the hybrid layout's empty unified hierarchy: nothing is placed there
		}
		d := filepath.Join(m.Mountpoint, path)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cg.dirs = append(cg.dirs, d)
	}
	if len(cg.dirs) == 0 {
		t.Fatal("no cgroup hierarchy to test in")
	}
	t.Cleanup(func() { cg.remove(t) })

	sh := exec.Command("/bin/sh", "-c", "read x; sleep 1000 & sleep 1000 & sleep 1000 & wait")
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = sh.Wait() }()
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(sh.Process.Pid)), 0); err != nil {
			_ = sh.Process.Kill()
			t.Fatal(err)
		}
	}
	fmt.Fprintln(in, "go")
	deadline := time.Now().Add(10 * time.Second)
	for {
		cg.procs = cg.list(t)
		if len(cg.procs) == 4 {
			return cg
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup %s: processes %v, want 4", path, cg.procs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (cg *testCgroup) list(t *testing.T) []int {
	b, err := os.ReadFile(filepath.Join(cg.dirs[0], "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
	}
	return pids
}

func (cg *testCgroup) remove(t *testing.T) {
	for _, p := range cg.procs {
		if fd, err := unix.PidfdOpen(p, 0); err == nil {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			unix.Close(fd)
		}
	}
	for _, d := range cg.dirs {
		for i := 0; i < 200; i++ {
			if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = os.Remove(filepath.Dir(d))
	}
}

func (cg *testCgroup) arm(id string) string {
	return "arm " + id + " " + strings.Join(cg.dirs, " ")
}

// alive is true for a process that exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z' && s[i+2] != 'X'
}

func waitDead(t *testing.T, pids []int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v still alive %v after the daemon's death", what, left, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func assertAlive(t *testing.T, pids []int, what string) {
	t.Helper()
	for _, p := range pids {
		if !alive(p) {
			t.Errorf("%s: process %d was killed", what, p)
		}
	}
}

// TestGuardKillsArmedOnDaemonDeath: SIGKILL of the daemon kills the armed
// cgroup's whole tree within 1 s; a disarmed and a never-armed cgroup are
// left alone, and the guard exits.
func TestGuardKillsArmedOnDaemonDeath(t *testing.T) {
	requireRoot(t)
	armed := newTestCgroup(t, "armed")
	disarmed := newTestCgroup(t, "disarmed")
	other := newTestCgroup(t, "other")

	d := startFakeDaemon(t)
	d.must(t, armed.arm("a"))
	d.must(t, disarmed.arm("b"))
	d.must(t, "disarm b")
	guard := d.guardPid(t)
	checkGuardProcess(t, guard, d.cmd.Process.Pid, armed)

	start := time.Now()
	d.kill(t)
	waitDead(t, armed.procs, time.Second, "armed cgroup")
	t.Logf("armed cgroup empty %v after the daemon's SIGKILL", time.Since(start).Round(time.Millisecond))
	waitDead(t, []int{guard}, time.Second, "the guard")
	assertAlive(t, disarmed.procs, "disarmed cgroup")
	assertAlive(t, other.procs, "cgroup never armed")
}

// TestGuardDaemonNormalExit: a daemon that disarmed everything and exits
// leaves its containers' cgroups alone, and the guard goes too.
func TestGuardDaemonNormalExit(t *testing.T) {
	requireRoot(t)
	cg := newTestCgroup(t, "normal")
	d := startFakeDaemon(t)
	d.must(t, cg.arm("a"))
	guard := d.guardPid(t)
	d.must(t, "disarm a")
	d.in.Close()
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("fake daemon: %v", err)
	}
	waitDead(t, []int{guard}, time.Second, "the guard")
	assertAlive(t, cg.procs, "disarmed cgroup")
}

// TestGuardRestartedAndRearmed: a guard killed while the daemon lives is
// replaced, and the replacement holds what was armed.
func TestGuardRestartedAndRearmed(t *testing.T) {
	requireRoot(t)
	cg := newTestCgroup(t, "restart")
	d := startFakeDaemon(t)
	d.must(t, cg.arm("a"))
	first := d.guardPid(t)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second int
	deadline := time.Now().Add(10 * time.Second)
	for {
		second = d.guardPid(t)
		if second != 0 && second != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guard %d killed: no new guard within 10 s (pid now %d)", first, second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertAlive(t, cg.procs, "armed cgroup while the daemon lives")
	d.kill(t)
	waitDead(t, cg.procs, time.Second, "cgroup armed before the guard's restart")
}

// checkGuardProcess pins what the guard must not be: in a container's
// cgroup, holding anything but its stdio, its socket and the daemon's pidfd
// (above all no autokill pidfd of a container), in the daemon's session, a
// Go program (its memory).
func checkGuardProcess(t *testing.T, guard, daemon int, cg *testCgroup) {
	t.Helper()
	for _, p := range cg.list(t) {
		if p == guard {
			t.Errorf("guard %d is in the armed cgroup", guard)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", guard))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", guard, e.Name()))
		fds = append(fds, e.Name()+"→"+l)
		n, _ := strconv.Atoi(e.Name())
		if n > 4 {
			t.Errorf("guard %d holds fd %s → %s: only 0-2, the socket (3) and the daemon's pidfd (4) may be open", guard, e.Name(), l)
		}
	}
	if len(fds) != 5 {
		t.Errorf("guard %d fds: %v, want 0-2, socket, daemon pidfd", guard, fds)
	}
	if fdinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/4", guard)); err != nil || !strings.Contains(string(fdinfo), fmt.Sprintf("Pid:\t%d\n", daemon)) {
		t.Errorf("guard fd 4 is not a pidfd of the daemon %d: %s %v", daemon, fdinfo, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", guard))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	if sid, _ := strconv.Atoi(f[3]); sid != guard {
		t.Errorf("guard %d: session %d, want its own", guard, sid)
	}
	if ppid, _ := strconv.Atoi(f[1]); ppid != daemon {
		t.Errorf("guard %d: parent %d, want the daemon %d", guard, ppid, daemon)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", guard))
	rollup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", guard))
	rss, pss := field(string(status), "VmRSS:"), field(string(rollup), "Pss:")
	t.Logf("guard %d: VmRSS %d KiB, Pss %d KiB, threads %d", guard, rss, pss, field(string(status), "Threads:"))
	if th := field(string(status), "Threads:"); th != 1 {
		t.Errorf("guard has %d threads: a Go runtime started", th)
	}
}

func field(s, name string) int {
	for _, l := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	return -1
}

func TestArmRefusesHierarchyRoot(t *testing.T) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil || len(mounts) == 0 {
		t.Fatalf("no cgroup mounts: %v", err)
	}
	cases := [][]string{nil}
	for _, m := range mounts {
		cases = append(cases, []string{m.Mountpoint + "/"}, []string{filepath.Join(m.Mountpoint, "x"), m.Mountpoint})
	}
	var g Guard
	for _, dirs := range cases {
		if err := g.Arm(context.Background(), nil, "c", dirs); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Arm(%q): %v, want InvalidArgument", dirs, err)
		}
	}
	if g.Pid() != 0 {
		t.Errorf("a refused Arm started a guard (%d)", g.Pid())
	}
}

func TestEncode(t *testing.T) {
	b, err := encode('A', "c1", []string{"/sys/fs/cgroup/x", "/sys/fs/cgroup/freezer/x"})
	if err != nil || string(b) != "A\x00c1\x00/sys/fs/cgroup/x\x00/sys/fs/cgroup/freezer/x\x00" {
		t.Errorf("encode: %q %v", b, err)
	}
	for _, tc := range []struct {
		id   string
		dirs []string
	}{{"", nil}, {"a\x00b", nil}, {"a", []string{"rel"}}, {"a", []string{strings.Repeat("/x", maxMsg)}}} {
		if _, err := encode('A', tc.id, tc.dirs); !errdefs.IsInvalidArgument(err) {
			t.Errorf("encode(%q, %.20q): %v, want InvalidArgument", tc.id, tc.dirs, err)
		}
	}
}
