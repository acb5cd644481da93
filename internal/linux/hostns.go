package linux

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// nsProcName is the /proc/PID/ns entry of each namespace type sysctls act on.
var nsProcName = map[uint64]string{unix.CLONE_NEWNET: "net", unix.CLONE_NEWIPC: "ipc"}

// CheckSysctlJoin refuses (InvalidArgument) a plan that writes sysctls into
// a namespace joined by path (f, opened by the daemon) when that namespace
// is the caller's own: a spec joining the host's /proc/1/ns/net would
// otherwise change the host's kernel parameters, as runc 1.2 refuses too.
func CheckSysctlJoin(p *spec.Plan, j spec.Join, f *os.File) error {
	keys := p.SysctlsFor(j.Type)
	name, ok := nsProcName[j.Flag]
	if len(keys) == 0 || !ok {
		return nil
	}
	var joined, own unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &joined); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	self := "/proc/thread-self/ns/" + name
	if err := unix.Stat(self, &own); err != nil {
		return &os.PathError{Op: "stat", Path: self, Err: err}
	}
	if joined.Dev == own.Dev && joined.Ino == own.Ino {
		return fmt.Errorf("linux.sysctl %q: the %s namespace %s is the runtime's own (the host's): %w",
			keys, j.Type, j.Path, errdefs.ErrInvalidArgument)
	}
	return nil
}
