package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	cg "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/errdefs"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// PathFor is the cgroupsPath a container lives in: specPath, checked by
// spec.ValidateCgroupsPath (cgroupfs) or spec.ParseSystemdCgroupsPath
// (systemd: the runtime option SystemdCgroup), or when it is empty
// "/<namespace>/<id>" (cgroupfs) or "system.slice:autokill:<namespace>-<id>"
// (systemd). The daemon (Create) and the delete face both call it, so they
// agree on the path by construction. A cgroupfs path with the systemd driver
// is InvalidArgument; the systemd form with cgroupfs is a relative path.
//
// The derived cgroupfs path is the one containerd's default spec writes
// (pkg/oci: path.Join("/", ns, id)). runc derives a relative "<id>" instead
// (systemd: "system.slice:runc:<id>"); the namespace keeps equal ids of two
// namespaces apart, and an absolute path does not depend on which cgroup
// the shim was started in.
func PathFor(specPath, namespace, id string, systemd bool) (string, error) {
	if specPath != "" {
		if !systemd {
			return spec.ValidateCgroupsPath(specPath)
		}
		if !spec.IsSystemdCgroupsPath(specPath) {
			return "", fmt.Errorf("linux.cgroupsPath %q: the systemd cgroup driver (runtime option SystemdCgroup) wants slice:prefix:name: %w", specPath, errdefs.ErrInvalidArgument)
		}
		if _, err := spec.ParseSystemdCgroupsPath(specPath); err != nil {
			return "", err
		}
		return specPath, nil
	}
	for _, c := range []struct{ what, v string }{{"namespace", namespace}, {"container id", id}} {
		if c.v == "" || c.v == "." || c.v == ".." || strings.Contains(c.v, "/") {
			return "", fmt.Errorf("derive a cgroup path: %s %q is not a single path component: %w", c.what, c.v, errdefs.ErrInvalidArgument)
		}
	}
	if systemd {
		p := "system.slice:autokill:" + namespace + "-" + id
		if _, err := spec.ParseSystemdCgroupsPath(p); err != nil {
			return "", fmt.Errorf("derive a systemd cgroup path: %w", err)
		}
		return p, nil
	}
	return spec.ValidateCgroupsPath("/" + namespace + "/" + id)
}

// RecordedSystemd reports whether the record in bundle is the systemd
// driver's: the delete face has no runtime options, and derives the path
// (PathFor) with the driver the daemon used.
func RecordedSystemd(bundle string) bool {
	r, err := readRecord(bundle)
	return err == nil && r.Unit != ""
}

// layout is where a cgroupsPath lands on this host: one directory per
// mounted hierarchy.
type layout struct {
	unified bool
	// dirs are the container's cgroup directories, one per hierarchy.
	dirs []string
	// roots[i] is the mount point of the hierarchy of dirs[i].
	roots []string
	// freezer (v1 only) and procs are among dirs: the freezer hierarchy's
	// directory, and the one whose cgroup.procs lists the processes.
	freezer, procs string
	// memory is the directory of the memory controller (v2: dirs[0]; v1:
	// "" when no memory hierarchy is mounted).
	memory string
	// named maps a v1 controller name to its directory (nil on v2).
	named map[string]string
	// inner is the path below the hierarchy root, per v1 controller name,
	// or for v2 under the key "".
	inner map[string]string
}

type pather interface{ Path(string) string }

// resolve maps a validated cgroupsPath onto the mounted hierarchies.
// Relative paths are taken as runc's cgroupfs driver takes them: below the
// daemon's own cgroup in each v1 hierarchy, and on v2 below the parent of
// its own cgroup (the daemon's cgroup holds processes, and the
// no-internal-processes rule would keep it from giving controllers to a
// child).
func resolve(p string) (*layout, error) {
	if p == "" {
		return nil, fmt.Errorf("cgroup: empty path: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := spec.ValidateCgroupsPath(p); err != nil {
		return nil, err
	}
	var own map[string]string
	var ownUnified string
	if !path.IsAbs(p) {
		var err error
		if own, ownUnified, err = cg.ParseCgroupFileUnified("/proc/self/cgroup"); err != nil {
			return nil, fmt.Errorf("cgroup %s: relative to our own cgroup: %w", p, err)
		}
	}
	l := &layout{inner: map[string]string{}}
	if Unified() {
		inner := p
		if !path.IsAbs(p) {
			inner = path.Join(path.Dir(ownUnified), p)
		}
		d := filepath.Join(unifiedRoot, inner)
		l.unified = true
		l.dirs, l.roots, l.procs, l.memory = []string{d}, []string{unifiedRoot}, d, d
		l.inner[""] = inner
		return l, nil
	}
	subs, err := cgroup1.Default()
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: list v1 hierarchies: %w", p, err)
	}
	byRoot := map[string]string{}
	for _, s := range subs {
		ps, ok := s.(pather)
		if !ok {
			continue
		}
		name := string(s.Name())
		inner := p
		if !path.IsAbs(p) {
			base, ok := own[name]
			if !ok {
				base, ok = own["name="+name]
			}
			if !ok {
				return nil, fmt.Errorf("cgroup %s: our own cgroup in the %s hierarchy is unknown", p, name)
			}
			inner = path.Join(base, p)
		}
		l.inner[name] = inner
		// cpu and cpuacct may be one hierarchy seen through symlinks.
		root, err := filepath.EvalSymlinks(ps.Path("/"))
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", p, err)
		}
		d, seen := byRoot[root]
		if !seen {
			d = filepath.Join(root, inner)
			byRoot[root] = d
			l.dirs = append(l.dirs, d)
			l.roots = append(l.roots, root)
		}
		if l.named == nil {
			l.named = map[string]string{}
		}
		l.named[name] = d
		switch s.Name() {
		case cgroup1.Freezer:
			l.freezer = d
		case cgroup1.Memory:
			l.memory = d
		case cgroup1.Devices:
			if l.procs == "" {
				l.procs = d
			}
		}
	}
	if len(l.dirs) == 0 {
		return nil, fmt.Errorf("cgroup %s: no cgroup v1 hierarchy mounted: %w", p, os.ErrNotExist)
	}
	// Every hierarchy gets every process (Add); the freezer's listing is
	// the one the freeze-and-signal loop relies on.
	switch {
	case l.freezer != "":
		l.procs = l.freezer
	case l.procs == "":
		l.procs = l.dirs[0]
	}
	return l, nil
}

// v1Path serves cgroup1's per-controller path lookups from the layout.
func (l *layout) v1Path(name cgroup1.Name) (string, error) {
	if p, ok := l.inner[string(name)]; ok {
		return p, nil
	}
	return "", cgroup1.ErrControllerNotActive
}

// missing lists, shallowest first, the directories from each hierarchy's
// root down to the container's directory that do not exist yet.
func (l *layout) missing() ([]string, error) {
	var out []string
	for i, d := range l.dirs {
		rel, err := filepath.Rel(l.roots[i], d)
		if err != nil {
			return nil, err
		}
		if rel == "." {
			continue
		}
		cur := l.roots[i]
		for _, c := range strings.Split(rel, "/") {
			cur = filepath.Join(cur, c)
			_, err := os.Lstat(cur)
			if errors.Is(err, os.ErrNotExist) {
				out = append(out, cur)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("cgroup: %w", err)
			}
		}
	}
	return out, nil
}
