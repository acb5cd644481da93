package process

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// Container is one container and its init process.
type Container struct {
	id string
}

// Create sets up the container described by cfg and leaves its init waiting
// for Start. It publishes TaskCreate. Errors wrap errdefs: InvalidArgument for
// a bad bundle or spec, AlreadyExists, NotFound, or the cause.
func Create(ctx context.Context, cfg CreateConfig, pub Publisher) (*Container, error) {
	return nil, fmt.Errorf("create %s: %w", cfg.ID, errdefs.ErrNotImplemented)
}

// ID returns the container's id.
func (c *Container) ID() string { return c.id }

// Start execs the user's entrypoint and publishes TaskStart.
// FailedPrecondition unless the container is created.
func (c *Container) Start(ctx context.Context) (pid uint32, err error) {
	return 0, errdefs.ErrNotImplemented
}

// Kill sends signal to the init, or with all to every process of the
// container. NotFound once the container has no process left.
func (c *Container) Kill(ctx context.Context, signal uint32, all bool) error {
	return errdefs.ErrNotImplemented
}

// State reports the container's current state.
func (c *Container) State() StateInfo { return StateInfo{ID: c.id} }

// Wait blocks until the init has exited (or ctx ends) and returns its exit.
func (c *Container) Wait(ctx context.Context) (Exit, error) {
	return Exit{}, errdefs.ErrNotImplemented
}

// Delete releases everything the container holds (init if never started,
// rootfs mount, cgroup) and publishes TaskDelete. FailedPrecondition while the
// container is running.
func (c *Container) Delete(ctx context.Context) (Exit, error) {
	return Exit{}, errdefs.ErrNotImplemented
}

// Pids lists the processes of the container.
func (c *Container) Pids(ctx context.Context) ([]ProcessInfo, error) {
	return nil, errdefs.ErrNotImplemented
}

// Cleanup is the `delete` face: for a bundle whose shim died, kill whatever
// is left of the container, unmount its rootfs and remove its cgroup.
func Cleanup(ctx context.Context, id, bundle string) (Exit, error) {
	return Exit{}, errdefs.ErrNotImplemented
}
