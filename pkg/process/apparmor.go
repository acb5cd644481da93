package process

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// appArmorEnabled is the host's AppArmor, read once per daemon.
var appArmorEnabled = linux.AppArmorEnabled

// AppArmorEnabled is what Create and Exec decide a process.apparmorProfile
// from, for -info's features document to say the same.
func AppArmorEnabled() bool { return appArmorEnabled() }

// newPlan is spec.NewPlan plus what only the daemon knows of the host.
func newPlan(bundle string, s *specs.Spec) (*spec.Plan, error) {
	p, err := spec.NewPlan(bundle, s)
	if err != nil {
		return nil, err
	}
	if err := spec.CheckAppArmor(&p.Process, appArmorEnabled()); err != nil {
		return nil, err
	}
	return p, nil
}

// newExecPlan is spec.NewExecPlan plus the host check. A process that
// names no AppArmor profile runs unconfined, whatever the init's, as with
// runc: the exec's process object is the whole of it (ctr and CRI copy the
// container's profile into it).
func newExecPlan(sp *specs.Process) (*spec.ExecPlan, error) {
	p, err := spec.NewExecPlan(sp)
	if err != nil {
		return nil, err
	}
	if err := spec.CheckAppArmor(&p.Process, appArmorEnabled()); err != nil {
		return nil, err
	}
	return p, nil
}
