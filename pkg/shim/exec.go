package shim

import (
	"context"
	"fmt"
	"strconv"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// execTask is what the service needs of a container for its execs.
type execTask interface {
	Exec(ctx context.Context, cfg process.ExecConfig) error
	StartExec(ctx context.Context, id string) (uint32, error)
	StateExec(id string) (process.StateInfo, error)
	KillExec(ctx context.Context, id string, signal uint32) error
	WaitExec(ctx context.Context, id string) (process.Exit, error)
	DeleteExec(ctx context.Context, id string) (process.Exit, error)
	ResizePty(execID string, width, height uint32) error
	CloseIO(execID string) error
}

func init() {
	// The type containerd's client sends an exec's process spec as (its
	// oci package registers the same name). JSON, as typeurl does for any
	// type that is not a protobuf message.
	typeurl.Register(&specs.Process{}, "types.containerd.io/opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "Process")
}

// Exec registers an exec process; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("exec %s in %s: no process spec: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("exec %s in %s: process spec of type %q: %v: %w", r.ExecID, r.ID, r.Spec.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	p, ok := v.(*specs.Process)
	if !ok {
		return nil, fmt.Errorf("exec %s in %s: process spec of type %q, want an OCI process: %w", r.ExecID, r.ID, r.Spec.GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
	err = t.Exec(ctx, process.ExecConfig{
		ID:       r.ExecID,
		Terminal: r.Terminal,
		Stdin:    r.Stdin,
		Stdout:   r.Stdout,
		Stderr:   r.Stderr,
		Spec:     p,
	})
	if err != nil {
		return nil, err
	}
	return empty, nil
}

// ResizePty sets a terminal's size; a no-op for a process without one
// (as containerd's runc shim answers).
func (s *service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.ResizePty(r.ExecID, r.Width, r.Height); err != nil {
		return nil, err
	}
	return empty, nil
}

// CloseIO ends a process's input (process.Container.CloseIO): the shim
// holds a writer of the stdin fifo, so that a client detaching is no end
// of input, until this closes it.
func (s *service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	if !r.Stdin {
		if err := s.known(r.ID, r.ExecID); err != nil {
			return nil, err
		}
		return empty, nil
	}
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.CloseIO(r.ExecID); err != nil {
		return nil, err
	}
	return empty, nil
}

// known: NotFound unless the task (and the exec, if named) exists.
func (s *service) known(id, execID string) error {
	t, err := s.get(id)
	if err != nil || execID == "" {
		return err
	}
	_, err = t.StateExec(execID)
	return err
}
