package setup

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/hooks"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// containerHooks runs hooks from inside the container's namespaces: the
// setup face is the one process that is there before the entrypoint.
// The state's pid is the init's as the container sees it (runtime spec,
// "state": hooks in the container namespace get the container's view).
func containerHooks(phase string, hs []spec.Hook, base *specs.State, status specs.ContainerState) error {
	if len(hs) == 0 {
		return nil
	}
	// fd 3 (initsync) and anything else inherited must not reach a hook:
	// only 0-2 are passed, and what is not CLOEXEC would be too.
	if err := closeExtraFds(); err != nil {
		return err
	}
	st := *base
	st.Status = status
	st.Pid = unix.Getpid()
	return hooks.RunAll(context.Background(), phase, hs, &st)
}

// createContainerHooks: after the mounts and the cgroup namespace, before
// pivot_root, so that their paths resolve in the runtime's mount tree
// while they run in the container's mount namespace (as runc does).
func createContainerHooks(p *spec.Plan) error {
	return containerHooks("createContainer", p.Hooks.CreateContainer, p.Hooks.State, specs.StateCreating)
}
