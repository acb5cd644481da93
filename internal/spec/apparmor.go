package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// appArmorExecPrefix is what the setup face writes before the profile name
// into its thread's attr/apparmor/exec (aa_change_onexec's command).
const appArmorExecPrefix = "exec "

// maxAppArmorProfile bounds the name so that the whole command fits one
// page, the most procfs takes in one attr write: a longer write is cut
// short, and the kernel would look up a truncated name.
const maxAppArmorProfile = 4096 - len(appArmorExecPrefix)

// convertAppArmorProfile checks process.apparmorProfile. The kernel trims
// the command it is given, so surrounding blanks are dropped here too; a
// name that is empty then, or carries a control character (a NUL would
// end the name early, a newline would be read as the end of the command),
// is refused. Whether the profile is loaded is only known at the write.
func convertAppArmorProfile(name string) (string, error) {
	const field = "process.apparmorProfile"
	if name == "" {
		return "", nil
	}
	trimmed := strings.TrimSpace(name)
	switch {
	case trimmed == "":
		return "", invalid(field, "%q is blank: no profile name", name)
	case len(trimmed) > maxAppArmorProfile:
		return "", invalid(field, "a name of %d bytes is longer than the %d the kernel takes", len(trimmed), maxAppArmorProfile)
	}
	for _, r := range trimmed {
		if r < 0x20 || r == 0x7f {
			return "", invalid(field, "%q contains a control character (NUL, newline...)", name)
		}
	}
	return trimmed, nil
}

// CheckAppArmor refuses a process that asks for an AppArmor profile on a
// host where AppArmor is not enabled (the daemon's finding, passed in:
// this package makes no system calls). FailedPrecondition, not
// InvalidArgument: the spec is valid and runs where AppArmor is on; it is
// the host that lacks what it needs. Never ignored: a profile is a
// confinement the user asked for.
func CheckAppArmor(p *Process, enabled bool) error {
	if p.ApparmorProfile == "" || enabled {
		return nil
	}
	return fmt.Errorf("process.apparmorProfile %q: AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled is not Y): %w",
		p.ApparmorProfile, errdefs.ErrFailedPrecondition)
}

// AppArmorExecCommand is what the setup face writes to its thread's
// AppArmor exec attribute for profile: the next execve of that thread
// enters the profile.
func AppArmorExecCommand(profile string) string { return appArmorExecPrefix + profile }
