package shim

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// task is what the service needs of a container: the methods of
// *process.Container it calls, so that tests can use a fake.
type task interface {
	Start(ctx context.Context) (uint32, error)
	Kill(ctx context.Context, signal uint32, all bool) error
	State() process.StateInfo
	Wait(ctx context.Context) (process.Exit, error)
	Delete(ctx context.Context) (process.Exit, error)
	Pids(ctx context.Context) ([]process.ProcessInfo, error)
	// cgroup features (process/cgfeat.go)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Update(ctx context.Context, res *specs.LinuxResources) error
	Stats(ctx context.Context) (*anypb.Any, error)
	execTask
}

// createFunc creates a task; processCreate in the daemon, a fake in tests.
type createFunc func(ctx context.Context, cfg process.CreateConfig, pub process.Publisher) (task, error)

func processCreate(ctx context.Context, cfg process.CreateConfig, pub process.Publisher) (task, error) {
	c, err := process.Create(ctx, cfg, pub)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// service maps containerd's task API (v2) onto tasks. Errors are errdefs
// errors; newDaemonServer turns them into gRPC codes at the ttrpc boundary.
type service struct {
	create   createFunc
	pub      process.Publisher
	shutdown func() // called once, when Shutdown finds no task left
	// namespace is the daemon's (-namespace): a request without the
	// header (containerd 1.6 sends none) is in it.
	namespace string

	mu      sync.Mutex
	tasks   map[string]task // a nil task is being created
	closing bool
}

var _ taskapi.TTRPCTaskService = (*service)(nil)

func newService(create createFunc, pub process.Publisher, shutdown func()) *service {
	return &service{create: create, pub: pub, shutdown: shutdown, tasks: map[string]task{}}
}

var empty = &emptypb.Empty{}

// createReserved runs the create for an id reserved in tasks. A panic in it
// (recovered into Internal by the server) must not leave the reservation
// behind: the id would be taken forever and Shutdown would wait for it.
func (s *service) createReserved(ctx context.Context, id string, cfg process.CreateConfig) (task, error) {
	defer func() {
		if p := recover(); p != nil {
			s.mu.Lock()
			if s.tasks[id] == nil {
				delete(s.tasks, id)
			}
			s.mu.Unlock()
			panic(p)
		}
	}()
	return s.create(ctx, cfg, s.pub)
}

func (s *service) get(id string) (task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[id]
	if t == nil {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

// Create creates the container. The id is reserved while process.Create
// runs without the lock, and released if it fails.
func (s *service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	if r.ID == "" {
		return nil, fmt.Errorf("create: empty id: %w", errdefs.ErrInvalidArgument)
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("create %s from checkpoint: %w", r.ID, errdefs.ErrNotImplemented)
	}
	// Decoded before anything exists: a bad option fails Create with
	// nothing to undo. ShimCgroup was the start face's (start.go).
	opts, err := createOptions(ctx, r.Options)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, fmt.Errorf("create %s: shim is shutting down: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	if _, ok := s.tasks[r.ID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("task %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	s.tasks[r.ID] = nil
	s.mu.Unlock()

	cfg := process.CreateConfig{
		Namespace: s.requestNamespace(ctx),
		ID:        r.ID,
		Bundle:    r.Bundle,
		Rootfs:    r.Rootfs,
		Terminal:  r.Terminal,
		Stdin:     r.Stdin,
		Stdout:    r.Stdout,
		Stderr:    r.Stderr,
		IOUID:     opts.IOUID,
		IOGID:     opts.IOGID,
		Systemd:   opts.SystemdCgroup,
	}
	start := time.Now()
	t, err := s.createReserved(ctx, r.ID, cfg)
	log.G(ctx).WithFields(log.Fields{"id": r.ID, "duration": time.Since(start), "error": err}).Debug("create")

	s.mu.Lock()
	if err != nil || t == nil {
		delete(s.tasks, r.ID)
		s.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("create %s: no task: %w", r.ID, errdefs.ErrUnknown)
		}
		return nil, err
	}
	s.tasks[r.ID] = t
	s.mu.Unlock()
	return &taskapi.CreateTaskResponse{Pid: t.State().Pid}, nil
}

func (s *service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	var pid uint32
	if r.ExecID != "" {
		pid, err = t.StartExec(ctx, r.ExecID)
	} else {
		pid, err = t.Start(ctx)
	}
	if err != nil {
		return nil, err
	}
	return &taskapi.StartResponse{Pid: pid}, nil
}

func taskStatus(st process.Status) tasktypes.Status {
	switch st {
	case process.StatusCreated:
		return tasktypes.Status_CREATED
	case process.StatusRunning:
		return tasktypes.Status_RUNNING
	case process.StatusPaused:
		return tasktypes.Status_PAUSED
	case process.StatusStopped, process.StatusDeleted:
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}

func (s *service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	var st process.StateInfo
	if r.ExecID != "" {
		if st, err = t.StateExec(r.ExecID); err != nil {
			return nil, err
		}
	} else {
		st = t.State()
	}
	return &taskapi.StateResponse{
		ID:         r.ID,
		ExecID:     r.ExecID,
		Bundle:     st.Bundle,
		Pid:        st.Pid,
		Status:     taskStatus(st.Status),
		Stdin:      st.Stdin,
		Stdout:     st.Stdout,
		Stderr:     st.Stderr,
		Terminal:   st.Terminal,
		ExitStatus: st.Exit.Status,
		ExitedAt:   timestamppb.New(st.Exit.At),
	}, nil
}

func (s *service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		// All means the container's processes; for one exec, as with
		// containerd's runc shim, it is that process alone.
		err = t.KillExec(ctx, r.ExecID, r.Signal)
	} else {
		err = t.Kill(ctx, r.Signal, r.All)
	}
	if err != nil {
		return nil, err
	}
	return empty, nil
}

func (s *service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	var exit process.Exit
	if r.ExecID != "" {
		exit, err = t.WaitExec(ctx, r.ExecID)
	} else {
		exit, err = t.Wait(ctx)
	}
	if err != nil {
		return nil, err
	}
	return &taskapi.WaitResponse{ExitStatus: exit.Status, ExitedAt: timestamppb.New(exit.At)}, nil
}

// Delete deletes an exec, or the container and forgets it once that
// succeeded.
func (s *service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		exit, err := t.DeleteExec(ctx, r.ExecID)
		if err != nil {
			return nil, err
		}
		return deleteResponse(exit), nil
	}
	exit, err := t.Delete(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.tasks[r.ID] == t {
		delete(s.tasks, r.ID)
	}
	s.mu.Unlock()
	return deleteResponse(exit), nil
}

func (s *service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	ps, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	resp := &taskapi.PidsResponse{Processes: make([]*tasktypes.ProcessInfo, 0, len(ps))}
	for _, p := range ps {
		info := &tasktypes.ProcessInfo{Pid: p.Pid}
		if p.ExecID != "" {
			// What containerd's runc shim attaches, so that clients
			// (ctr task ps, CRI) name the exec of a pid.
			if info.Info, err = typeurl.MarshalAnyToProto(&runcopts.ProcessDetails{ExecID: p.ExecID}); err != nil {
				return nil, fmt.Errorf("pids of %s: %w", r.ID, err)
			}
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// Connect answers with the shim's pid and, when the task is known, its pid.
// Like containerd's runc shim it does not fail for an unknown id: containerd
// calls it to find the shim.
func (s *service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if t, err := s.get(r.ID); err == nil {
		resp.TaskPid = t.State().Pid
	}
	return resp, nil
}

// Shutdown does nothing while the daemon serves a task (other containers of
// its group); otherwise it arranges the daemon's exit, which happens after
// this response has been sent.
func (s *service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tasks) > 0 {
		return empty, nil
	}
	if !s.closing {
		s.closing = true
		s.shutdown()
	}
	return empty, nil
}

func notImplemented(what, id string) error {
	return fmt.Errorf("%s %s: %w", what, id, errdefs.ErrNotImplemented)
}

// Pause freezes the task's cgroup; the task publishes TaskPaused.
func (s *service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.Pause(ctx); err != nil {
		return nil, err
	}
	return empty, nil
}

// Resume thaws it; the task publishes TaskResumed.
func (s *service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.Resume(ctx); err != nil {
		return nil, err
	}
	return empty, nil
}

func (s *service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("checkpoint", r.ID)
}

// Update applies the request's specs.LinuxResources (JSON in an Any, as
// containerd's client encodes it) to the live cgroup. Annotations are not
// used (runc's shim ignores them too).
func (s *service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	res, err := process.DecodeResources(r.Resources)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.ID, err)
	}
	if err := t.Update(ctx, res); err != nil {
		return nil, err
	}
	return empty, nil
}

// Stats returns the cgroup metrics in the types containerd's runc shim uses.
func (s *service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	a, err := t.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &taskapi.StatsResponse{Stats: a}, nil
}

// requestNamespace is containerd's namespace of a request, from the header
// its ttrpc client sets, else the daemon's.
func (s *service) requestNamespace(ctx context.Context) string {
	if v, ok := ttrpc.GetMetadataValue(ctx, "containerd-namespace-ttrpc"); ok && v != "" {
		return v
	}
	if s.namespace != "" {
		return s.namespace
	}
	return os.Getenv("NAMESPACE")
}
