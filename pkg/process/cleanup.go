package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mount"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// Cleanup is the `delete` face: for a bundle whose shim died, kill whatever
// is left of the container, unmount its rootfs and remove its cgroup.
//
// In native mode the kernel already killed the init when the shim's pidfd
// closed, and with it the whole pid namespace; in fallback mode
// PR_SET_PDEATHSIG did. The cgroup sweep catches containers without a pid
// namespace.
func Cleanup(ctx context.Context, id, bundle string) (Exit, error) {
	var errs []error
	if s, err := spec.Load(bundle); err != nil {
		log.G(ctx).WithError(err).Warn("cleanup: no readable spec, cgroup left alone")
	} else if s.Linux != nil && s.Linux.CgroupsPath != "" {
		cg, err := cgroups.Load(s.Linux.CgroupsPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			errs = append(errs, cg.Delete(ctx))
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
