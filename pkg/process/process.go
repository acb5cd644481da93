// Package process owns the lifecycle of containers run by the shim: creating the
// container's init through pkg/pidfd, its IO, its cgroup, its state machine and
// the task events that describe it. It makes no raw process syscalls itself.
package process

import (
	"context"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
)

// Status is the lifecycle state of a container's init, as containerd sees it.
type Status string

const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusStopped Status = "stopped"
	StatusDeleted Status = "deleted"
)

// Publisher queues a task event for containerd. It must not block and must
// keep the order of calls: the order of events is the order of Publish calls.
type Publisher interface {
	Publish(ctx context.Context, topic string, event typeurl.Any)
}

// CreateConfig is what the Create request of the task API carries.
type CreateConfig struct {
	// Namespace is containerd's namespace of the task.
	Namespace string
	ID        string
	Bundle    string
	Rootfs    []*types.Mount
	Terminal  bool
	Stdin     string
	Stdout    string
	Stderr    string
	// IOUID and IOGID are the runtime options IoUid/IoGid (decoded by
	// pkg/shim with internal/rtopts): the owner given to the stdio fifos of
	// the init and of every exec (io_owner.go). 0 and 0 change nothing.
	IOUID, IOGID uint32
	// Systemd is the runtime option SystemdCgroup: the container's cgroup
	// is a transient systemd scope (internal/cgroups.NewSystemd) and
	// linux.cgroupsPath has the form "slice:prefix:name".
	Systemd bool
}

// Exit describes how the init of a container ended.
type Exit struct {
	Pid    uint32
	Status uint32 // exit code, or 128+signal for a signal death
	At     time.Time
}

// StateInfo is a snapshot of a container for the State call.
type StateInfo struct {
	ID       string
	Bundle   string
	Pid      uint32
	Status   Status
	Stdin    string
	Stdout   string
	Stderr   string
	Terminal bool
	Exit     Exit // valid when Status is StatusStopped or StatusDeleted
}

// ProcessInfo is one process of a container, for the Pids call.
type ProcessInfo struct {
	Pid uint32
	// ExecID names the exec this process is the main process of.
	ExecID string
}
