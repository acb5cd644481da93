package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecPlan is everything the exec face needs to run one process in a
// running container: the process, checked as the init's is, and what the
// daemon adds. It reaches the exec face in a sealed memfd, not over the
// setup socket, so that argument lists up to the kernel's limit fit.
type ExecPlan struct {
	Process Process
	// OOMScoreAdj of the exec'd process (process.oomScoreAdj): it is per
	// process, so nil leaves what the exec face inherits, the daemon's.
	OOMScoreAdj *int
	// LastCap is the host's cap_last_cap, read by the daemon: the exec face
	// runs in the container's mount namespace, where /proc is the
	// container's.
	LastCap uint
	// Fallback: as Plan.Fallback.
	Fallback bool
	// Seccomp is the container's filter (Plan.Seccomp), set by the
	// daemon: an exec'd process gets it too, as with runc, whatever its
	// own process object says.
	Seccomp *specs.LinuxSeccomp `json:",omitempty"`
}

// NewExecPlan checks the process of an exec request (containerd's
// ExecProcessRequest.Spec) as NewPlan checks the init's.
func NewExecPlan(sp *specs.Process) (*ExecPlan, error) {
	if sp == nil {
		return nil, invalid("process", "missing")
	}
	p, err := convertProcess(sp)
	if err != nil {
		return nil, err
	}
	if err := checkOOMScoreAdj(sp.OOMScoreAdj); err != nil {
		return nil, err
	}
	return &ExecPlan{Process: p, OOMScoreAdj: sp.OOMScoreAdj}, nil
}
