package cgroups

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// RecordName is the file, in the bundle directory, that says which cgroup
// directories the daemon made for the container. The bundle directory is
// containerd's; the container never sees it. The delete face, a new process
// after the daemon died, removes only what this file lists: no record, no
// removal.
const RecordName = "autokill-cgroup.json"

// record is the durable form of a container's cgroup.
type record struct {
	// Path is the cgroupsPath (validated or derived) the record is for.
	Path    string `json:"path"`
	Unified bool   `json:"unified"`
	// Dirs are the container's cgroup, one directory per hierarchy.
	Dirs []string `json:"dirs"`
	// Freezer and Procs are among Dirs (see layout).
	Freezer string `json:"freezer,omitempty"`
	Procs   string `json:"procs"`
	// Created are the directories this shim made: the only ones it may
	// rmdir. Written before the first mkdir, so it may name a directory that
	// was never made (rmdir says ENOENT) but never misses one that was.
	Created []string `json:"created"`
	// Unit and Slice: the systemd driver's transient scope, whose cgroup
	// is Dirs[0] (systemd makes and removes it: Created is empty).
	Unit  string `json:"unit,omitempty"`
	Slice string `json:"slice,omitempty"`
}

func recordPath(bundle string) string { return filepath.Join(bundle, RecordName) }

// writeRecord replaces the record atomically and durably: a crash leaves
// the old record or the new one, never a torn file.
func writeRecord(bundle string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(bundle, "."+RecordName+".*")
	if err != nil {
		return fmt.Errorf("cgroup record: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, recordPath(bundle))
	}
	if err == nil {
		err = syncDir(bundle)
	}
	if err != nil {
		return fmt.Errorf("cgroup record in %s: %w", bundle, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readRecord loads the record; an error wrapping os.ErrNotExist means the
// daemon never got as far as making a cgroup directory.
func readRecord(bundle string) (*record, error) {
	b, err := os.ReadFile(recordPath(bundle))
	if err != nil {
		return nil, fmt.Errorf("cgroup record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("cgroup record %s: %v: %w", recordPath(bundle), err, errdefs.ErrInvalidArgument)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("cgroup record %s: %w", recordPath(bundle), err)
	}
	return &r, nil
}

// check refuses a record that names anything but directories below a
// hierarchy root. Only the daemon writes it, into a directory only root
// can write; this keeps a damaged file from aiming rmdir or kill elsewhere.
func (r *record) check() error {
	minDepth := 2 // v1: <hierarchy>/<cgroup>
	if r.Unified {
		minDepth = 1
	}
	inside := func(p string) bool {
		return filepath.Clean(p) == p && strings.HasPrefix(p, unifiedRoot+"/") &&
			len(strings.Split(strings.TrimPrefix(p, unifiedRoot+"/"), "/")) >= minDepth
	}
	if len(r.Dirs) == 0 || r.Procs == "" {
		return fmt.Errorf("no cgroup directory: %w", errdefs.ErrInvalidArgument)
	}
	all := append(append([]string{r.Procs}, r.Dirs...), r.Created...)
	if r.Freezer != "" {
		all = append(all, r.Freezer)
	}
	for _, p := range all {
		if !inside(p) {
			return fmt.Errorf("%q is not a directory below a cgroup hierarchy root: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	if r.Unit != "" || r.Slice != "" {
		// Only a unit whose path this is: a damaged record cannot aim
		// StopUnit at another unit.
		sp, err := spec.ParseSystemdCgroupsPath(r.Path)
		if err != nil {
			return err
		}
		if sp.Unit != r.Unit || sp.Slice != r.Slice || !r.Unified || len(r.Dirs) != 1 ||
			r.Dirs[0] != filepath.Join(unifiedRoot, sp.Dir()) || len(r.Created) != 0 {
			return fmt.Errorf("systemd unit %q in %q does not match the path %q: %w", r.Unit, r.Slice, r.Path, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func removeRecord(bundle string) error {
	if err := os.Remove(recordPath(bundle)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup record: %w", err)
	}
	return nil
}
