package spec

import (
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/hooks"
)

// Hooks are the spec's hooks by phase. The daemon runs Prestart,
// CreateRuntime, Poststart and Poststop; the setup face runs
// CreateContainer and StartContainer with State.
type Hooks struct {
	Prestart, CreateRuntime, CreateContainer []hooks.Hook `json:",omitempty"`
	StartContainer, Poststart, Poststop      []hooks.Hook `json:",omitempty"`
	// State is the container's state as the setup face's hooks see it
	// (status aside): filled in by the daemon once the init is cloned, as
	// its pid is the host's view of it.
	State *specs.State `json:",omitempty"`
}

// Any says whether there is a hook at all.
func (h *Hooks) Any() bool {
	return len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+
		len(h.StartContainer)+len(h.Poststart)+len(h.Poststop) > 0
}

// HookNames are the hooks this runtime runs, as the features document
// names them.
func HookNames() []string {
	return []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
}

func convertHooks(s *specs.Hooks) (Hooks, error) {
	if s == nil {
		return Hooks{}, nil
	}
	for _, phase := range []struct {
		name string
		hs   []specs.Hook
	}{
		{"prestart", s.Prestart}, //nolint:staticcheck // deprecated, still run
		{"createRuntime", s.CreateRuntime},
		{"createContainer", s.CreateContainer},
		{"startContainer", s.StartContainer},
		{"poststart", s.Poststart},
		{"poststop", s.Poststop},
	} {
		for i, h := range phase.hs {
			field := fmt.Sprintf("hooks.%s[%d]", phase.name, i)
			// Absolute (the spec's "similar semantics to IEEE Std
			// 1003.1-2008 execv's path"): a relative path would resolve
			// against whatever cwd the daemon or setup face has.
			if !filepath.IsAbs(h.Path) {
				return Hooks{}, invalid(field+".path", "%q is not absolute", h.Path)
			}
			if h.Timeout != nil && *h.Timeout <= 0 {
				return Hooks{}, invalid(field+".timeout", "%d is not greater than zero", *h.Timeout)
			}
		}
	}
	return Hooks{
		Prestart:        hooks.FromSpec(s.Prestart), //nolint:staticcheck // deprecated, still run
		CreateRuntime:   hooks.FromSpec(s.CreateRuntime),
		CreateContainer: hooks.FromSpec(s.CreateContainer),
		StartContainer:  hooks.FromSpec(s.StartContainer),
		Poststart:       hooks.FromSpec(s.Poststart),
		Poststop:        hooks.FromSpec(s.Poststop),
	}, nil
}
