package spec

import (
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hooks are the spec's hooks by phase. The daemon runs Prestart,
// CreateRuntime, Poststart and Poststop; the setup face runs
// CreateContainer and StartContainer with State.
type Hooks struct {
	Prestart, CreateRuntime, CreateContainer []Hook `json:",omitempty"`
	StartContainer, Poststart, Poststop      []Hook `json:",omitempty"`
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
		Prestart:        hooksFromSpec(s.Prestart), //nolint:staticcheck // deprecated, still run
		CreateRuntime:   hooksFromSpec(s.CreateRuntime),
		CreateContainer: hooksFromSpec(s.CreateContainer),
		StartContainer:  hooksFromSpec(s.StartContainer),
		Poststart:       hooksFromSpec(s.Poststart),
		Poststop:        hooksFromSpec(s.Poststop),
	}, nil
}

// Hook is one hook, plain data (it crosses initsync in the Plan); internal/hooks
// runs it.
type Hook struct {
	Path string
	Args []string `json:",omitempty"`
	Env  []string `json:",omitempty"`
	// Timeout in seconds; 0 means none.
	Timeout int `json:",omitempty"`
}

// hooksFromSpec converts the spec's hooks (already validated).
func hooksFromSpec(hs []specs.Hook) []Hook {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Hook, len(hs))
	for i, h := range hs {
		out[i] = Hook{Path: h.Path, Args: h.Args, Env: h.Env}
		if h.Timeout != nil {
			out[i].Timeout = *h.Timeout
		}
	}
	return out
}
