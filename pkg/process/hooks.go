package process

import (
	"context"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/hooks"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// The daemon's share of the OCI hooks: prestart, createRuntime, poststart
// and poststop run here, in the runtime namespace (the daemon's), with the
// init's pid as the host sees it. createContainer and startContainer run in
// the setup face, inside the container (internal/setup).

// prepareHooks keeps the daemon's hooks and completes the state the setup
// face hands to its own: called once the init is cloned, before the plan
// is sent.
func (c *Container) prepareHooks(plan *spec.Plan) {
	if !plan.Hooks.Any() {
		return
	}
	h := plan.Hooks
	st := *h.State
	st.ID = c.id
	h.State = &st
	plan.Hooks.State = &st
	c.hooks = &h
}

// hookState is the state JSON for a daemon hook.
func (c *Container) hookState(status specs.ContainerState) *specs.State {
	st := *c.hooks.State
	st.Status = status
	st.Pid = c.proc.Pid()
	return &st
}

// runtimeHooks runs prestart then createRuntime, after the namespaces exist
// and the init is in its cgroup, before the setup face may pivot_root (it
// waits for Joined first). A failure fails Create, whose release kills the
// init and undoes the rest.
func (c *Container) runtimeHooks(ctx context.Context) error {
	if c.hooks == nil {
		return nil
	}
	st := c.hookState(specs.StateCreating)
	if err := hooks.RunAll(ctx, "prestart", c.hooks.Prestart, st); err != nil {
		return err
	}
	return hooks.RunAll(ctx, "createRuntime", c.hooks.CreateRuntime, st)
}

// poststartHooks runs after Start; as the runtime spec says, a failure is
// logged and the container keeps running.
func (c *Container) poststartHooks(ctx context.Context) {
	if c.hooks == nil || len(c.hooks.Poststart) == 0 {
		return
	}
	if err := hooks.RunAll(ctx, "poststart", c.hooks.Poststart, c.hookState(specs.StateRunning)); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("poststart hook failed")
	}
}

// poststopHooks runs once the container is deleted; a failure is logged,
// never fatal (runtime spec, and what runc does).
func (c *Container) poststopHooks(ctx context.Context) {
	if c.hooks == nil || len(c.hooks.Poststop) == 0 {
		return
	}
	if err := hooks.RunAll(ctx, "poststop", c.hooks.Poststop, c.hookState(specs.StateStopped)); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("poststop hook failed")
	}
}
