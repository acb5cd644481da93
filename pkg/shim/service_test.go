package shim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// fakeTask is a task whose answers the test sets.
type fakeTask struct {
	mu        sync.Mutex
	state     process.StateInfo
	startErr  error
	deleteErr error
	exit      process.Exit
	exited    chan struct{}
	kills     []uint32
	execs     map[string]*process.StateInfo
	execSpecs []*specs.Process
}

func newFakeTask(id string) *fakeTask {
	return &fakeTask{
		state:  process.StateInfo{ID: id, Bundle: "/b/" + id, Pid: 42, Status: process.StatusCreated},
		exited: make(chan struct{}),
	}
}

func (f *fakeTask) Start(ctx context.Context) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return 0, f.startErr
	}
	if f.state.Status != process.StatusCreated {
		return 0, fmt.Errorf("start %s: %w", f.state.Status, errdefs.ErrFailedPrecondition)
	}
	f.state.Status = process.StatusRunning
	return f.state.Pid, nil
}

func (f *fakeTask) Kill(ctx context.Context, signal uint32, all bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, signal)
	if f.state.Status == process.StatusRunning {
		f.state.Status = process.StatusStopped
		f.state.Exit = process.Exit{Pid: f.state.Pid, Status: 128 + signal, At: time.Unix(1700000000, 0)}
		close(f.exited)
	}
	return nil
}

func (f *fakeTask) State() process.StateInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeTask) Wait(ctx context.Context) (process.Exit, error) {
	select {
	case <-f.exited:
		return f.State().Exit, nil
	case <-ctx.Done():
		return process.Exit{}, ctx.Err()
	}
}

func (f *fakeTask) Delete(ctx context.Context) (process.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleteErr != nil {
		return process.Exit{}, f.deleteErr
	}
	if f.state.Status == process.StatusRunning {
		return process.Exit{}, fmt.Errorf("delete running: %w", errdefs.ErrFailedPrecondition)
	}
	f.state.Status = process.StatusDeleted
	return f.state.Exit, nil
}

func (f *fakeTask) Pids(ctx context.Context) ([]process.ProcessInfo, error) {
	return []process.ProcessInfo{{Pid: f.State().Pid}, {Pid: 43, ExecID: "e43"}}, nil
}

// The fake's execs: one state each, run to exit by any signal.
func (f *fakeTask) Exec(ctx context.Context, cfg process.ExecConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.execs == nil {
		f.execs = map[string]*process.StateInfo{}
	}
	if _, ok := f.execs[cfg.ID]; ok {
		return fmt.Errorf("exec %s: %w", cfg.ID, errdefs.ErrAlreadyExists)
	}
	f.execSpecs = append(f.execSpecs, cfg.Spec)
	f.execs[cfg.ID] = &process.StateInfo{ID: cfg.ID, Status: process.StatusCreated, Stdout: cfg.Stdout}
	return nil
}

func (f *fakeTask) execLocked(id string) (*process.StateInfo, error) {
	e, ok := f.execs[id]
	if !ok {
		return nil, fmt.Errorf("exec %s: %w", id, errdefs.ErrNotFound)
	}
	return e, nil
}

func (f *fakeTask) StartExec(ctx context.Context, id string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.execLocked(id)
	if err != nil {
		return 0, err
	}
	e.Status, e.Pid = process.StatusRunning, 100+uint32(len(f.execs))
	return e.Pid, nil
}

func (f *fakeTask) StateExec(id string) (process.StateInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.execLocked(id)
	if err != nil {
		return process.StateInfo{}, err
	}
	return *e, nil
}

func (f *fakeTask) KillExec(ctx context.Context, id string, signal uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.execLocked(id)
	if err != nil {
		return err
	}
	e.Status, e.Exit = process.StatusStopped, process.Exit{Pid: e.Pid, Status: 128 + signal}
	return nil
}

func (f *fakeTask) CloseIO(execID string) error { return f.ResizePty(execID, 0, 0) }

func (f *fakeTask) ResizePty(execID string, w, h uint32) error {
	if execID == "" {
		return nil
	}
	_, err := f.StateExec(execID)
	return err
}

func (f *fakeTask) WaitExec(ctx context.Context, id string) (process.Exit, error) {
	st, err := f.StateExec(id)
	return st.Exit, err
}

func (f *fakeTask) DeleteExec(ctx context.Context, id string) (process.Exit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.execLocked(id)
	if err != nil {
		return process.Exit{}, err
	}
	delete(f.execs, id)
	return e.Exit, nil
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, typeurl.Any) {}

// fixture runs the service behind a real ttrpc server on a unix socket and
// returns a client, like containerd talks to the shim.
type fixture struct {
	client   taskapi.TTRPCTaskService
	svc      *service
	shutdown chan struct{}

	mu      sync.Mutex
	tasks   map[string]*fakeTask
	failing map[string]error
	panics  map[string]bool // create panics once for these ids
	created []process.CreateConfig
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{shutdown: make(chan struct{}), tasks: map[string]*fakeTask{}, failing: map[string]error{}, panics: map[string]bool{}}
	create := func(ctx context.Context, cfg process.CreateConfig, pub process.Publisher) (task, error) {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		fx.created = append(fx.created, cfg)
		if fx.panics[cfg.ID] {
			delete(fx.panics, cfg.ID)
			panic("create " + cfg.ID + " panics")
		}
		if err := fx.failing[cfg.ID]; err != nil {
			return nil, err
		}
		ft := newFakeTask(cfg.ID)
		fx.tasks[cfg.ID] = ft
		return ft, nil
	}
	var once sync.Once
	fx.svc = newService(create, nopPublisher{}, func() { once.Do(func() { close(fx.shutdown) }) })
	server, err := newDaemonServer(fx.svc)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(context.Background(), l)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		c.Close()
		server.Close()
	})
	fx.client = taskapi.NewTTRPCTaskClient(c)
	return fx
}

func (fx *fixture) task(id string) *fakeTask {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.tasks[id]
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error %v: code %s, want %s", err, got, code)
	}
}

func TestServiceLifecycle(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()

	cr, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: "/b/c1", Stdout: "/o"})
	if err != nil || cr.Pid != 42 {
		t.Fatalf("create: %v %v", cr, err)
	}
	fx.mu.Lock()
	cfg := fx.created[0]
	fx.mu.Unlock()
	if cfg.Bundle != "/b/c1" || cfg.Stdout != "/o" || cfg.IOUID != 0 || cfg.IOGID != 0 {
		t.Fatalf("config %+v", cfg)
	}
	st, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if err != nil || st.Status != tasktypes.Status_CREATED || st.Pid != 42 || st.Bundle != "/b/c1" {
		t.Fatalf("state: %v %v", st, err)
	}
	sr, err := fx.client.Start(ctx, &taskapi.StartRequest{ID: "c1"})
	if err != nil || sr.Pid != 42 {
		t.Fatalf("start: %v %v", sr, err)
	}
	st, _ = fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if st.Status != tasktypes.Status_RUNNING {
		t.Fatalf("state after start: %v", st.Status)
	}
	// The state error of the process package comes through as its code.
	_, err = fx.client.Start(ctx, &taskapi.StartRequest{ID: "c1"})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
	wantCode(t, err, codes.FailedPrecondition)

	pids, err := fx.client.Pids(ctx, &taskapi.PidsRequest{ID: "c1"})
	if err != nil || len(pids.Processes) != 2 || pids.Processes[0].Pid != 42 {
		t.Fatalf("pids: %v %v", pids, err)
	}
	conn, err := fx.client.Connect(ctx, &taskapi.ConnectRequest{ID: "c1"})
	if err != nil || conn.ShimPid != uint32(os.Getpid()) || conn.TaskPid != 42 {
		t.Fatalf("connect: %v %v", conn, err)
	}

	waited := make(chan *taskapi.WaitResponse, 1)
	go func() {
		w, err := fx.client.Wait(ctx, &taskapi.WaitRequest{ID: "c1"})
		if err != nil {
			t.Error(err)
		}
		waited <- w
	}()
	// Shutdown is a no-op while a container is there.
	if _, err := fx.client.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fx.shutdown:
		t.Fatal("shutdown with a container left")
	default:
	}

	if _, err := fx.client.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	w := <-waited
	if w.ExitStatus != 137 || w.ExitedAt.AsTime().Unix() != 1700000000 {
		t.Fatalf("wait: %v", w)
	}
	st, _ = fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if st.Status != tasktypes.Status_STOPPED || st.ExitStatus != 137 {
		t.Fatalf("state after kill: %v", st)
	}
	dr, err := fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
	if err != nil || dr.Pid != 42 || dr.ExitStatus != 137 || dr.ExitedAt.AsTime().Unix() != 1700000000 {
		t.Fatalf("delete: %v %v", dr, err)
	}
	_, err = fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"})
	wantCode(t, err, codes.NotFound)

	if _, err := fx.client.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fx.shutdown:
	case <-time.After(time.Second):
		t.Fatal("no shutdown without containers")
	}
	// Once shutting down, no new container.
	_, err = fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c2"})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestServiceErrors(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}

	t.Run("unknown id is NotFound", func(t *testing.T) {
		_, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "nope"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Start(ctx, &taskapi.StartRequest{ID: "nope"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Kill(ctx, &taskapi.KillRequest{ID: "nope", Signal: 15})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Wait(ctx, &taskapi.WaitRequest{ID: "nope"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "nope"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Pids(ctx, &taskapi.PidsRequest{ID: "nope"})
		wantCode(t, err, codes.NotFound)
	})
	t.Run("existing id is AlreadyExists", func(t *testing.T) {
		_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1"})
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("empty id is InvalidArgument", func(t *testing.T) {
		_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("unknown exec ids are NotFound", func(t *testing.T) {
		_, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Start(ctx, &taskapi.StartRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Kill(ctx, &taskapi.KillRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Wait(ctx, &taskapi.WaitRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		_, err = fx.client.CloseIO(ctx, &taskapi.CloseIORequest{ID: "c1", ExecID: "e"})
		wantCode(t, err, codes.NotFound)
		// The task itself is untouched.
		if fx.task("c1").State().Status != process.StatusCreated {
			t.Fatal("exec call reached the task")
		}
	})
	t.Run("exec process spec", func(t *testing.T) {
		p := &specs.Process{Args: []string{"sh", "-c", "exit 3"}, Cwd: "/w", Env: []string{"A=1"}}
		a, err := typeurl.MarshalAnyToProto(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := "types.containerd.io/opencontainers/runtime-spec/1/Process"; a.GetTypeUrl() != want {
			t.Fatalf("type url %q, want containerd's %q", a.GetTypeUrl(), want)
		}
		if _, err := fx.client.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "x", Spec: a}); err != nil {
			t.Fatal(err)
		}
		_, err = fx.client.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "x", Spec: a})
		wantCode(t, err, codes.AlreadyExists)
		ft := fx.task("c1")
		ft.mu.Lock()
		got := ft.execSpecs[len(ft.execSpecs)-1]
		ft.mu.Unlock()
		if fmt.Sprint(got.Args, got.Cwd, got.Env) != fmt.Sprint(p.Args, p.Cwd, p.Env) {
			t.Fatalf("exec spec reached the task as %+v, want %+v", got, p)
		}
		st, err := fx.client.Start(ctx, &taskapi.StartRequest{ID: "c1", ExecID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		state, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1", ExecID: "x"})
		if err != nil || state.ExecID != "x" || state.Pid != st.Pid || state.Status != tasktypes.Status_RUNNING {
			t.Fatalf("exec state %v %v, want x running pid %d", state, err, st.Pid)
		}
		if _, err := fx.client.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: "c1", ExecID: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.client.Kill(ctx, &taskapi.KillRequest{ID: "c1", ExecID: "x", Signal: 9}); err != nil {
			t.Fatal(err)
		}
		if w, err := fx.client.Wait(ctx, &taskapi.WaitRequest{ID: "c1", ExecID: "x"}); err != nil || w.ExitStatus != 137 {
			t.Fatalf("exec wait %v %v, want 137", w, err)
		}
		if d, err := fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "c1", ExecID: "x"}); err != nil || d.Pid != st.Pid {
			t.Fatalf("exec delete %v %v, want pid %d", d, err, st.Pid)
		}
		if _, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1", ExecID: "x"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Fatalf("state after delete: %v, want NotFound", err)
		}
		for name, bad := range map[string]*anypb.Any{
			"no spec":    nil,
			"wrong type": {TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte("{}")},
			"bad json":   {TypeUrl: a.GetTypeUrl(), Value: []byte("{")},
		} {
			_, err := fx.client.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "bad", Spec: bad})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
	})
	t.Run("pids name execs", func(t *testing.T) {
		r, err := fx.client.Pids(ctx, &taskapi.PidsRequest{ID: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		var execs []string
		for _, p := range r.Processes {
			if p.Info == nil {
				continue
			}
			v, err := typeurl.UnmarshalAny(p.Info)
			if err != nil {
				t.Fatal(err)
			}
			execs = append(execs, fmt.Sprintf("%d %s", p.Pid, v.(*runcopts.ProcessDetails).ExecID))
		}
		if fmt.Sprint(execs) != "[43 e43]" {
			t.Fatalf("exec details %v, want [43 e43]", execs)
		}
	})
	t.Run("unsupported calls are NotImplemented", func(t *testing.T) {
		for name, call := range map[string]func() error{
			"Checkpoint": func() error {
				_, err := fx.client.Checkpoint(ctx, &taskapi.CheckpointTaskRequest{ID: "c1"})
				return err
			},
			"Create from checkpoint": func() error {
				_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c9", Checkpoint: "/cp"})
				return err
			},
		} {
			t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.Unimplemented) })
		}
	})
	t.Run("failed create leaves nothing", func(t *testing.T) {
		fx.mu.Lock()
		fx.failing["bad"] = fmt.Errorf("create bad: %w", errdefs.ErrNotImplemented)
		fx.mu.Unlock()
		_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad"})
		wantCode(t, err, codes.Unimplemented)
		_, err = fx.client.State(ctx, &taskapi.StateRequest{ID: "bad"})
		wantCode(t, err, codes.NotFound)

		fx.mu.Lock()
		fx.failing["bad"] = fmt.Errorf("create bad: %w", errdefs.ErrInvalidArgument)
		fx.mu.Unlock()
		_, err = fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad"})
		wantCode(t, err, codes.InvalidArgument) // reached create again: not AlreadyExists

		fx.mu.Lock()
		delete(fx.failing, "bad")
		fx.mu.Unlock()
		if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("delete error keeps the task", func(t *testing.T) {
		fx.task("c1").mu.Lock()
		fx.task("c1").deleteErr = fmt.Errorf("umount: %w", errdefs.ErrUnavailable)
		fx.task("c1").mu.Unlock()
		_, err := fx.client.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
		wantCode(t, err, codes.Unavailable)
		if _, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("connect to unknown id", func(t *testing.T) {
		c, err := fx.client.Connect(ctx, &taskapi.ConnectRequest{ID: "nope"})
		if err != nil || c.ShimPid != uint32(os.Getpid()) || c.TaskPid != 0 {
			t.Fatalf("connect: %v %v", c, err)
		}
	})
}

// TestServiceCreateReservesID: a second Create of an id whose creation is in
// progress is AlreadyExists, and Shutdown waits for it.
func TestServiceCreateReservesID(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	done := make(chan struct{})
	svc := newService(func(ctx context.Context, cfg process.CreateConfig, pub process.Publisher) (task, error) {
		close(entered)
		<-release
		return newFakeTask(cfg.ID), nil
	}, nopPublisher{}, func() { close(done) })
	ctx := context.Background()
	created := make(chan error, 1)
	go func() {
		_, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1"})
		created <- err
	}()
	<-entered
	if _, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("concurrent create: %v", err)
	}
	if _, err := svc.State(ctx, &taskapi.StateRequest{ID: "c1"}); !errdefs.IsNotFound(err) {
		t.Fatalf("state while creating: %v", err)
	}
	svc.Shutdown(ctx, &taskapi.ShutdownRequest{})
	select {
	case <-done:
		t.Fatal("shutdown while creating")
	default:
	}
	close(release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if _, err := svc.State(ctx, &taskapi.StateRequest{ID: "c1"}); err != nil {
		t.Fatalf("state after create: %v", err)
	}
}

func TestTaskStatus(t *testing.T) {
	for st, want := range map[process.Status]tasktypes.Status{
		process.StatusCreated: tasktypes.Status_CREATED,
		process.StatusRunning: tasktypes.Status_RUNNING,
		process.StatusStopped: tasktypes.Status_STOPPED,
		process.StatusDeleted: tasktypes.Status_STOPPED,
		"":                    tasktypes.Status_UNKNOWN,
	} {
		if got := taskStatus(st); got != want {
			t.Errorf("%q: %v, want %v", st, got, want)
		}
	}
}

// A Create that panics is answered Internal, and its id is free again: the
// reservation it held used to stay, so the id was AlreadyExists forever and
// Shutdown waited for a task that would never come.
func TestCreatePanicReleasesTheID(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	fx.mu.Lock()
	fx.panics["p"] = true
	fx.mu.Unlock()
	_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "p", Bundle: "/b/p"})
	wantCode(t, err, codes.Internal)
	if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "p", Bundle: "/b/p"}); err != nil {
		t.Fatalf("create after a panicking create: %v", err)
	}
}
