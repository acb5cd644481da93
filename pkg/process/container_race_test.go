package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// The fake machine: an init that runs until it is SIGKILLed or Start's exec
// "fails", a cgroup that holds it, a setup socket that answers. The fakes
// have no locks of their own, on purpose: the Container's locking is all
// that orders their use, as it is for the real pidfd, socket and cgroup, so
// a use that the lifecycle does not order (a Kill signalling a pidfd that a
// Delete closes) is a data race the detector reports. A use after release
// also answers an error of no errdefs class, which the test rejects.

var (
	errUseAfterClose = errors.New("fake: used after close")
	errFakeExec      = errors.New("fake: exec format error")
)

type fakeProc struct {
	pid    int
	closed bool
	done   chan struct{} // closed at exit; exit is written before
	exit   pidfd.Exit
	// dmu orders deaths from two sides, as the kernel does: an exec dies
	// of its own kill and of its pid namespace's end at once.
	dmu sync.Mutex
}

func newFakeProc(pid int) *fakeProc { return &fakeProc{pid: pid, done: make(chan struct{})} }

func (p *fakeProc) Pid() int { return p.pid }

func (p *fakeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fakeProc) die(status int) {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if !p.exited() {
		p.exit = pidfd.Exit{Status: status, At: time.Now()}
		close(p.done)
	}
}

func (p *fakeProc) Signal(sig syscall.Signal) error {
	if p.closed {
		return errUseAfterClose
	}
	if p.exited() {
		return pidfd.ErrExited
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.die(128 + int(sig))
	}
	return nil
}

func (p *fakeProc) Wait(ctx context.Context) (pidfd.Exit, error) {
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return pidfd.Exit{}, ctx.Err()
	}
}

func (p *fakeProc) Open() (*os.File, error) {
	if p.closed {
		return nil, errUseAfterClose
	}
	if p.exited() {
		return nil, pidfd.ErrExited
	}
	return nil, nil
}

func (p *fakeProc) Close() error {
	if p.closed {
		return errUseAfterClose
	}
	p.closed = true
	return nil
}

type fakeConn struct {
	proc     *fakeProc
	execFail bool
	closed   bool
}

func (c *fakeConn) use() error {
	if c.closed {
		return errUseAfterClose
	}
	return nil
}

func (c *fakeConn) SendPlan(any) error { return c.use() }
func (c *fakeConn) SendJoined() error  { return c.use() }
func (c *fakeConn) RecvReady() error   { return c.use() }
func (c *fakeConn) SendStart() error   { return c.use() }
func (c *fakeConn) RecvExec() error {
	if err := c.use(); err != nil {
		return err
	}
	if c.execFail {
		// The setup face reports and exits, as after a failed execve.
		c.proc.die(1)
		return errFakeExec
	}
	return nil
}

func (c *fakeConn) RecvConsole() (*os.File, error) { return nil, errors.New("fake: no terminal") }

func (c *fakeConn) Close() error {
	c.closed = true
	return nil
}

type fakeCgroup struct {
	proc    *fakeProc
	deleted bool
	// execs joined the cgroup from outside the container's lock, as the
	// kernel lets them: emu is the kernel's, not the Container's.
	emu   sync.Mutex
	execs []*fakeProc
}

func (g *fakeCgroup) check() error {
	if g.deleted {
		return errUseAfterClose
	}
	return nil
}

func (g *fakeCgroup) IntoFd() *os.File   { return nil }
func (g *fakeCgroup) Add(int) error      { return g.check() }
func (g *fakeCgroup) Dirs() cgroups.Dirs { return cgroups.Dirs{} }
func (g *fakeCgroup) Pids() ([]int, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	if g.proc.exited() {
		return nil, nil
	}
	return []int{g.proc.pid}, nil
}

func (g *fakeCgroup) SignalAll(sig syscall.Signal) error {
	if err := g.check(); err != nil {
		return err
	}
	if err := g.proc.Signal(sig); err != nil && !errors.Is(err, pidfd.ErrExited) {
		return err
	}
	g.emu.Lock()
	defer g.emu.Unlock()
	for _, p := range g.execs {
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			p.die(128 + int(sig))
		}
	}
	return nil
}

func (g *fakeCgroup) Delete(context.Context) error {
	if g.deleted {
		return errUseAfterClose
	}
	g.deleted = true
	return nil
}

type fakeSystem struct {
	nativeMode bool
	execFail   bool
	hostPID    bool
	nextPid    atomic.Int64
	mu         sync.Mutex
	procs      map[*fakeCgroup]*fakeProc
	armed      map[string]bool
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{procs: map[*fakeCgroup]*fakeProc{}, armed: map[string]bool{}}
}

func (s *fakeSystem) native() bool                             { return s.nativeMode }
func (s *fakeSystem) mountRootfs([]*types.Mount, string) error { return nil }
func (s *fakeSystem) unmountRootfs(string) error               { return nil }

func (s *fakeSystem) newCgroup(string, string, bool, *specs.LinuxResources) (cgroups.Manager, error) {
	p := newFakeProc(int(s.nextPid.Add(1)) + 1000)
	g := &fakeCgroup{proc: p}
	s.mu.Lock()
	s.procs[g] = p
	s.mu.Unlock()
	return g, nil
}

func (s *fakeSystem) spawn(_ context.Context, _ *spec.Plan, cg cgroups.Manager, _ [3]*os.File) (initProc, setupConn, error) {
	s.mu.Lock()
	p := s.procs[cg.(*fakeCgroup)]
	s.mu.Unlock()
	return p, &fakeConn{proc: p, execFail: s.execFail}, nil
}

func (s *fakeSystem) spawnExec(_ context.Context, init initProc, _ *spec.ExecPlan, cg cgroups.Manager, _ [3]*os.File) (initProc, setupConn, error) {
	if _, err := init.Open(); err != nil {
		return nil, nil, err
	}
	p := newFakeProc(int(s.nextPid.Add(1)) + 1000)
	g := cg.(*fakeCgroup)
	g.emu.Lock()
	g.execs = append(g.execs, p)
	g.emu.Unlock()
	if !s.hostPID {
		// The end of its pid namespace's init kills it.
		go func() {
			<-g.proc.done
			p.die(137)
		}()
	}
	return p, &fakeConn{proc: p, execFail: s.execFail}, nil
}

func (s *fakeSystem) arm(_ context.Context, id string, _ cgroups.Manager) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed[id] = true
	return nil
}

func (s *fakeSystem) disarm(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.armed[id] {
		return fmt.Errorf("fake: %s disarmed twice", id)
	}
	delete(s.armed, id)
	return nil
}

// recorder is a Publisher that keeps each container's topics in order:
// topics[id] the init's, topics[id/exec] each exec's, all[id] both
// interleaved as published (an exec's as "topic exec").
type recorder struct {
	mu     sync.Mutex
	topics map[string][]string
	all    map[string][]string
}

func newRecorder() *recorder {
	return &recorder{topics: map[string][]string{}, all: map[string][]string{}}
}

func (r *recorder) Publish(_ context.Context, topic string, ev typeurl.Any) {
	v, err := typeurl.UnmarshalAny(ev)
	if err != nil {
		panic(err)
	}
	id := fmt.Sprint(v.(interface{ GetContainerID() string }).GetContainerID())
	exec := ""
	if e, ok := v.(interface{ GetExecID() string }); ok {
		exec = e.GetExecID()
	}
	if e, ok := v.(interface{ GetID() string }); ok && e.GetID() != id {
		exec = e.GetID()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if exec == "" {
		r.topics[id] = append(r.topics[id], topic)
		r.all[id] = append(r.all[id], topic)
		return
	}
	r.topics[id+"/"+exec] = append(r.topics[id+"/"+exec], topic)
	r.all[id] = append(r.all[id], topic+" "+exec)
}

// fakeBundle writes a minimal valid bundle; nothing of it is mounted.
func fakeBundle(t *testing.T, hostPID bool) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}}
	if !hostPID {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	s := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Linux:   &specs.Linux{Namespaces: ns, CgroupsPath: "/race/" + filepath.Base(dir)},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// allowed are the answers a racing client may get: success, or the state
// errors containerd knows. Anything else (Unknown) is a lifecycle bug.
func allowed(err error) bool {
	return err == nil || errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) ||
		errors.Is(err, errFakeExec)
}

// TestLifecycleRaces runs Start, Kill (one process and --all), Delete,
// Wait, State and Pids against each other on one container, many times,
// in both modes and with and without a pid namespace of its own. Run
// with -race: the detector must find nothing, no call may answer with an
// unexpected error, and the events must come in lifecycle order.
func TestLifecycleRaces(t *testing.T) {
	for _, tc := range []struct {
		name            string
		native, hostPID bool
		execFail        bool
	}{
		{"fallback", false, false, false},
		{"native", true, false, false},
		{"fallback host pid", false, true, false},
		{"native host pid", true, true, false},
		{"exec fails", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newFakeSystem()
			sys.nativeMode, sys.execFail, sys.hostPID = tc.native, tc.execFail, tc.hostPID
			rec := newRecorder()
			for i := 0; i < 40; i++ {
				raceOnce(t, sys, rec, fmt.Sprintf("c%d", i), tc.hostPID)
			}
			sys.mu.Lock()
			defer sys.mu.Unlock()
			if len(sys.armed) > 0 {
				t.Errorf("still armed after delete: %v", sys.armed)
			}
		})
	}
}

func raceOnce(t *testing.T, sys *fakeSystem, rec *recorder, id string, hostPID bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := CreateConfig{Namespace: "race", ID: id, Bundle: fakeBundle(t, hostPID)}
	c, err := createWith(ctx, cfg, rec, sys)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	do := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.Intn(200)) * time.Microsecond)
			if err := f(); !allowed(err) {
				errs <- fmt.Errorf("%s %s: %w", name, id, err)
			}
		}()
	}
	do("start", func() error { _, err := c.Start(ctx); return err })
	do("start", func() error { _, err := c.Start(ctx); return err })
	do("kill", func() error { return c.Kill(ctx, uint32(syscall.SIGUSR1), false) })
	do("kill --all", func() error { return c.Kill(ctx, uint32(syscall.SIGKILL), true) })
	do("kill", func() error { return c.Kill(ctx, uint32(syscall.SIGKILL), false) })
	do("state", func() error { _ = c.State(); return nil })
	do("pids", func() error { _, err := c.Pids(ctx); return err })
	do("wait", func() error { _, err := c.Wait(ctx); return err })
	for i := 0; i < 2; i++ {
		do("delete", func() error {
			// Delete of a running container is refused; retry until
			// the kills above have ended it.
			for {
				_, err := c.Delete(ctx)
				if errdefs.IsFailedPrecondition(err) && ctx.Err() == nil {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				return err
			}
		})
	}
	execIDs := []string{"e1", "e2", "e3"}
	for _, eid := range execIDs {
		do("exec "+eid, func() error { return raceExec(ctx, c, eid) })
	}
	do("exec dup", func() error {
		if err := c.Exec(ctx, ExecConfig{ID: "e1", Spec: &specs.Process{Args: []string{"true"}, Cwd: "/"}}); err != nil && !errdefs.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
	do("kill after", func() error { return c.Kill(ctx, uint32(syscall.SIGKILL), true) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.State().Status; st != StatusDeleted {
		t.Errorf("%s: status %s after the race, want deleted", id, st)
	}
	rec.mu.Lock()
	got := rec.topics[id]
	rec.mu.Unlock()
	if !validOrder(got) {
		t.Errorf("%s: events %v, want create [start] exit delete", id, got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, eid := range execIDs {
		got := rec.topics[id+"/"+eid]
		if !validExecOrder(got) {
			t.Errorf("%s exec %s: events %v, want exec-added [exec-started exit]", id, eid, got)
		}
	}
	// Every exec's exit is published before the init's.
	initExit := false
	for _, topic := range rec.all[id] {
		switch {
		case topic == "/tasks/exit":
			initExit = true
		case initExit && len(topic) > len("/tasks/exit ") && topic[:len("/tasks/exit ")] == "/tasks/exit ":
			t.Errorf("%s: %s after the init's exit: %v", id, topic, rec.all[id])
		}
	}
}

// raceExec adds, starts, signals, waits for and deletes one exec, each
// step racing the init's lifecycle; the state errors are all allowed.
func raceExec(ctx context.Context, c *Container, id string) error {
	if err := c.Exec(ctx, ExecConfig{ID: id, Spec: &specs.Process{Args: []string{"sleep", "1"}, Cwd: "/"}}); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil // the duplicate call took the id first
		}
		return err
	}
	if _, err := c.StartExec(ctx, id); err != nil && !allowed(err) {
		return err
	}
	if _, err := c.StateExec(id); err != nil {
		return err
	}
	if rand.Intn(2) == 0 {
		if err := c.KillExec(ctx, id, uint32(syscall.SIGKILL)); err != nil && !allowed(err) {
			return err
		}
	}
	if _, err := c.WaitExec(ctx, id); err != nil {
		return err
	}
	_, err := c.DeleteExec(ctx, id)
	return err
}

// validExecOrder: each use of the id (it may be reused once deleted) is
// exec-added, then exec-started and exit if it ran.
func validExecOrder(topics []string) bool {
	for len(topics) > 0 {
		switch {
		case len(topics) >= 3 && topics[0] == "/tasks/exec-added" && topics[1] == "/tasks/exec-started" && topics[2] == "/tasks/exit":
			topics = topics[3:]
		case topics[0] == "/tasks/exec-added":
			topics = topics[1:]
		default:
			return false
		}
	}
	return true
}

func validOrder(topics []string) bool {
	want := [][]string{
		{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"},
		{"/tasks/create", "/tasks/exit", "/tasks/delete"},
	}
	for _, w := range want {
		if fmt.Sprint(w) == fmt.Sprint(topics) {
			return true
		}
	}
	return false
}
