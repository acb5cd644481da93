package process

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mount"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// Cleanup is the `delete` face: for a bundle whose shim died, kill whatever
// is left of the container, unmount its rootfs and remove its cgroup.
// namespace is containerd's namespace of the task (the -namespace flag): with
// the id it gives the cgroup path when the spec names none, as in Create.
//
// In native mode the kernel already killed the init when the shim's pidfd
// closed, and with it the whole pid namespace; in fallback mode
// PR_SET_PDEATHSIG did. The cgroup sweep catches containers without a pid
// namespace.
//
// The bundle's cgroupsPath goes through the same validation as in Create,
// and only the cgroup the daemon recorded in the bundle for that path is
// swept and removed (rmdir): a hostile spec cannot aim it elsewhere.
func Cleanup(ctx context.Context, namespace, id, bundle string) (Exit, error) {
	var errs []error
	if s, err := spec.Load(bundle); err != nil {
		log.G(ctx).WithError(err).Warn("cleanup: no readable spec, cgroup left alone")
	} else {
		var specPath string
		if s.Linux != nil {
			specPath = s.Linux.CgroupsPath
		}
		// No runtime options here: the driver is the record's (without
		// a record nothing is touched, whatever the path).
		systemd := cgroups.RecordedSystemd(bundle)
		if path, err := cgroups.PathFor(specPath, namespace, id, systemd); err != nil {
			errs = append(errs, fmt.Errorf("cgroup left alone: %w", err))
		} else if err := cgroups.Cleanup(ctx, bundle, path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := mount.UnmountAll(filepath.Join(bundle, "rootfs")); err != nil {
		errs = append(errs, err)
	}
	// The shim was killed, so was its container: report a SIGKILL death
	// as containerd's runc shim does.
	exit := Exit{Status: 128 + 9, At: time.Now()}
	if err := errors.Join(errs...); err != nil {
		return exit, fmt.Errorf("cleanup %s: %w", id, err)
	}
	return exit, nil
}
