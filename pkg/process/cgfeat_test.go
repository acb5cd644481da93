package process

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeCgroup's side of internal/cgroups.Controls. Its state lives here
// (fakeCgroup's fields are container_race_test.go's), under its own lock:
// the OOM counter is the kernel's, written by the "kernel" of the test.
type fakeControl struct {
	frozen bool
	thaws  int
	oom    uint64
	notify *os.File // the write end of OOMNotify's pipe
}

var fakeControls = struct {
	sync.Mutex
	m map[*fakeCgroup]*fakeControl
}{m: map[*fakeCgroup]*fakeControl{}}

func controlOf(g *fakeCgroup) *fakeControl {
	fakeControls.Lock()
	defer fakeControls.Unlock()
	return controlOf0(g)
}

func (g *fakeCgroup) Freeze() error {
	if err := g.check(); err != nil {
		return err
	}
	fakeControls.Lock()
	defer fakeControls.Unlock()
	controlOf0(g).frozen = true
	return nil
}

func (g *fakeCgroup) Thaw() error {
	if err := g.check(); err != nil {
		return err
	}
	fakeControls.Lock()
	defer fakeControls.Unlock()
	fc := controlOf0(g)
	fc.frozen = false
	fc.thaws++
	return nil
}

// controlOf0 is controlOf with fakeControls locked.
func controlOf0(g *fakeCgroup) *fakeControl {
	fc := fakeControls.m[g]
	if fc == nil {
		fc = &fakeControl{}
		fakeControls.m[g] = fc
	}
	return fc
}

func (g *fakeCgroup) Frozen() (bool, error) {
	fakeControls.Lock()
	defer fakeControls.Unlock()
	return controlOf0(g).frozen, g.check()
}

func (g *fakeCgroup) Update(*specs.LinuxResources) error { return g.check() }
func (g *fakeCgroup) Stats() (proto.Message, error)      { return &emptypb.Empty{}, g.check() }

func (g *fakeCgroup) OOMKills() (uint64, error) {
	fakeControls.Lock()
	defer fakeControls.Unlock()
	return controlOf0(g).oom, g.check()
}

func (g *fakeCgroup) OOMNotify() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fakeControls.Lock()
	controlOf0(g).notify = w
	fakeControls.Unlock()
	return r, nil
}

// oomKill plays the kernel's OOM killer: the count goes up, then the
// victim gets its SIGKILL; notify wakes the watcher in between when set.
func (fc *fakeControl) oomKill(p *fakeProc, notify bool) {
	fakeControls.Lock()
	fc.oom++
	w := fc.notify
	fakeControls.Unlock()
	if notify {
		_, _ = w.Write([]byte{1})
	}
	if p != nil {
		p.die(128 + int(syscall.SIGKILL))
	}
}

func newFakeContainer(t *testing.T, sys *fakeSystem, rec *recorder, id string) (*Container, *fakeCgroup) {
	t.Helper()
	c, err := createWith(context.Background(), CreateConfig{Namespace: "t", ID: id, Bundle: fakeBundle(t, false)}, rec, sys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	g := c.cg.(*fakeCgroup)
	c.mu.Unlock()
	return c, g
}

func waitTopics(t *testing.T, rec *recorder, id string, want []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		got := fmt.Sprint(rec.topics[id])
		rec.mu.Unlock()
		if got == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events of %s: %s, want %v", id, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPauseKillDelete(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSystem()
	rec := newRecorder()
	c, g := newFakeContainer(t, sys, rec, "p")
	if err := c.Resume(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("resume running: %v", err)
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.State().Status; st != StatusPaused {
		t.Fatalf("status %s", st)
	}
	if err := c.Pause(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("pause paused: %v", err)
	}
	if _, err := c.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete paused: %v", err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	thaws := controlOf(g).thaws
	// SIGKILL to a paused init thaws the cgroup (v1 frozen tasks cannot
	// die otherwise), and the exit moves it to stopped.
	if err := c.Kill(ctx, uint32(syscall.SIGKILL), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := controlOf(g).thaws; n <= thaws {
		t.Fatalf("SIGKILL of the paused container did not thaw it")
	}
	if st := c.State().Status; st != StatusStopped {
		t.Fatalf("status after kill %s", st)
	}
	if err := c.Pause(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("pause stopped: %v", err)
	}
	if _, err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stats(ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("stats deleted: %v", err)
	}
	waitTopics(t, rec, "p", []string{"/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed", "/tasks/paused", "/tasks/exit", "/tasks/delete"})
}

// TestOOMBeforeExit: an OOM kill of the init is reported before its exit
// however the watcher's notification and the exit race; an OOM kill of
// another process is reported while the container runs.
func TestOOMBeforeExit(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSystem()
	rec := newRecorder()
	c, g := newFakeContainer(t, sys, rec, "o")
	fc := controlOf(g)
	fc.oomKill(nil, true)
	waitTopics(t, rec, "o", []string{"/tasks/create", "/tasks/start", "/tasks/oom"})
	for i := range 50 {
		id := fmt.Sprintf("o%d", i)
		c, g := newFakeContainer(t, sys, rec, id)
		controlOf(g).oomKill(g.proc, i%2 == 0)
		if _, err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		waitTopics(t, rec, id, []string{"/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"})
	}
	if err := c.Kill(ctx, uint32(syscall.SIGKILL), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	waitTopics(t, rec, "o", []string{"/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"})
}
