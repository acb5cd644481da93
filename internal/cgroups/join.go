package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/containerd/errdefs"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// JoinExisting moves process pid into the existing cgroup p (the runtime
// option ShimCgroup), in every mounted hierarchy where p exists, and
// creates nothing: what containerd's runc shim does with cgroup1.Load /
// cgroupsv2.Load and AddProc. p must be absolute and pass
// spec.ValidateCgroupsPath, so it cannot leave a hierarchy's root; every
// directory written to is checked to be on a cgroup filesystem.
func JoinExisting(p string, pid int) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("cgroup %q: not an absolute path: %w", p, errdefs.ErrInvalidArgument)
	}
	if _, err := spec.ValidateCgroupsPath(p); err != nil {
		return err
	}
	l, err := resolve(p)
	if err != nil {
		return err
	}
	joined := 0
	for _, d := range l.dirs {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("cgroup %s: %w", p, err)
		}
		if err := checkCgroupfs(d); err != nil {
			return err
		}
		if err := writeProcs(d, pid); err != nil {
			return fmt.Errorf("move pid %d into cgroup %s: %w", pid, d, err)
		}
		joined++
	}
	if joined == 0 {
		return fmt.Errorf("cgroup %s does not exist in any hierarchy (%v): %w", p, l.dirs, errdefs.ErrNotFound)
	}
	return nil
}
