package setup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// hostCgroupRoot is where the host mounts its cgroup hierarchies.
const hostCgroupRoot = "/sys/fs/cgroup"

// cgroupLayout is the host's cgroup layout as seen by the setup face before
// pivot_root (its mount namespace is a copy of the daemon's), with the
// container's own cgroup in each hierarchy.
type cgroupLayout struct {
	unified     bool        // pure cgroup v2 at /sys/fs/cgroup
	cgroupNS    bool        // we are in a new cgroup namespace
	hierarchies []hierarchy // v1 (and hybrid's cgroup2) mounts under /sys/fs/cgroup
	symlinks    [][2]string // name -> target, e.g. cpu -> cpu,cpuacct
	v2          *hierarchy  // the cgroup2 mount when unified
	self        map[string]string
}

type hierarchy struct {
	name        string // base name under /sys/fs/cgroup ("cpu,cpuacct", "unified")
	mountpoint  string // host path
	root        string // root of the mount inside the hierarchy (mountinfo field 4)
	fstype      string // cgroup or cgroup2
	controllers string // mount data for a fresh v1 mount: "cpu,cpuacct", "none,name=systemd"
	key         string // key in /proc/self/cgroup ("cpu,cpuacct", "name=systemd", "")
}

// parseProcCgroup parses /proc/<pid>/cgroup: controllers field → path
// ("" is the cgroup v2 line "0::/path").
func parseProcCgroup(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("bad /proc/self/cgroup line %q", s.Text())
		}
		out[parts[1]] = parts[2]
	}
	return out, s.Err()
}

// v1Options are the cgroup v1 super options that are not controllers.
var v1Options = map[string]bool{
	"rw": true, "ro": true, "xattr": true, "noprefix": true, "clone_children": true,
	"cpuset_v2_mode": true, "favordynmods": true,
}

// v1Controllers extracts the controllers (and name=) from cgroup v1 super
// options: "rw,cpu,cpuacct" → ["cpu" "cpuacct"].
func v1Controllers(superOpts string) []string {
	var out []string
	for _, o := range strings.Split(superOpts, ",") {
		if o != "" && !v1Options[o] && !strings.HasPrefix(o, "release_agent=") {
			out = append(out, o)
		}
	}
	return out
}

// hierarchyKey finds the /proc/self/cgroup key of a v1 hierarchy.
func hierarchyKey(self map[string]string, ctrls []string) (string, bool) {
	for k := range self {
		if k == "" {
			continue
		}
		ks := strings.Split(k, ",")
		if len(ks) == len(ctrls) && !slices.ContainsFunc(ks, func(c string) bool { return !slices.Contains(ctrls, c) }) {
			return k, true
		}
	}
	return "", false
}

// probeCgroups reads the host's layout; call it before pivot_root.
func probeCgroups(cgroupNS bool) (*cgroupLayout, error) {
	l := &cgroupLayout{cgroupNS: cgroupNS}
	var st unix.Statfs_t
	if err := unix.Statfs(hostCgroupRoot, &st); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: hostCgroupRoot, Err: err}
	}
	l.unified = st.Type == unix.CGROUP2_SUPER_MAGIC
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if l.self, err = parseProcCgroup(f); err != nil {
		return nil, err
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	for _, m := range mounts {
		if l.unified {
			if m.Mountpoint == hostCgroupRoot && m.FSType == "cgroup2" {
				l.v2 = &hierarchy{name: "", mountpoint: m.Mountpoint, root: m.Root, fstype: "cgroup2"}
			}
			continue
		}
		if path.Dir(m.Mountpoint) != hostCgroupRoot {
			continue
		}
		h := hierarchy{name: path.Base(m.Mountpoint), mountpoint: m.Mountpoint, root: m.Root, fstype: m.FSType}
		if m.FSType == "cgroup" {
			ctrls := v1Controllers(m.VFSOptions)
			key, ok := hierarchyKey(l.self, ctrls)
			if !ok {
				continue // a hierarchy this process is not in (e.g. a stale named one)
			}
			h.key = key
			h.controllers = strings.Join(ctrls, ",")
			if strings.HasPrefix(h.controllers, "name=") {
				h.controllers = "none," + h.controllers
			}
		}
		l.hierarchies = append(l.hierarchies, h)
	}
	if l.unified && l.v2 == nil {
		return nil, fmt.Errorf("no cgroup2 mount at %s in mountinfo", hostCgroupRoot)
	}
	if !l.unified {
		entries, err := os.ReadDir(hostCgroupRoot)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type()&os.ModeSymlink != 0 {
				if t, err := os.Readlink(path.Join(hostCgroupRoot, e.Name())); err == nil && !strings.Contains(t, "/") {
					l.symlinks = append(l.symlinks, [2]string{e.Name(), t})
				}
			}
		}
	}
	return l, nil
}

// ownDir is the host directory of the container's cgroup in hierarchy h.
func (l *cgroupLayout) ownDir(h *hierarchy) (string, error) {
	p, ok := l.self[h.key]
	if !ok {
		return "", fmt.Errorf("cgroup hierarchy %s: not in /proc/self/cgroup", h.mountpoint)
	}
	rel, ok := strings.CutPrefix(p, h.root)
	if !ok && h.root != "/" {
		return "", fmt.Errorf("cgroup %s is outside the root %s of the mount at %s", p, h.root, h.mountpoint)
	}
	if h.root == "/" {
		rel = p
	}
	return path.Join(h.mountpoint, rel), nil
}

// mountCgroup mounts the container's cgroups at m.Destination.
//   - With a new cgroup namespace (unshared in step 1, after the daemon placed
//     us), fresh cgroup/cgroup2 mounts show the namespace root, which is the
//     container's cgroup.
//   - Without one, the container's own directory of each hierarchy is
//     bind-mounted, so it sees neither the host's nor its siblings' cgroups.
//
// v1 and hybrid hosts get a tmpfs with one directory per hierarchy and the
// host's symlinks (cpu -> cpu,cpuacct), like runc and Docker.
//
// target is the handle r.mount resolved and checked; every mount goes on a
// handle by descriptor (move_mount), so no path is looked up again between
// the check and the mount.
func (r *rootfs) mountCgroup(m spec.Mount, target *os.File, l *cgroupLayout) error {
	flags := m.Flags &^ (unix.MS_BIND | unix.MS_REC)
	if l.unified {
		mnt, err := r.mountHierarchy(target, m.Destination, l, l.v2, flags)
		if err != nil {
			return err
		}
		defer mnt.Close()
		return propagateFd(mnt, m.Destination, m.Propagation)
	}
	tflags := uint64(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	dir, err := linux.NewMount("tmpfs", "tmpfs", linux.ParseFsData("mode=755"), newMountAttrs(tflags))
	if err != nil {
		return fmt.Errorf("mount cgroup tmpfs on %s: %w", m.Destination, err)
	}
	defer dir.Close()
	if err := linux.MoveMount(dir, target); err != nil {
		return fmt.Errorf("mount cgroup tmpfs on %s: %w", m.Destination, err)
	}
	// dir is now the attached tmpfs, which nothing but us has seen.
	for i := range l.hierarchies {
		h := &l.hierarchies[i]
		dest := path.Join(m.Destination, h.name)
		if err := unix.Mkdirat(int(dir.Fd()), h.name, 0o755); err != nil {
			return fmt.Errorf("mount cgroup on %s: %w", dest, os.NewSyscallError("mkdirat", err))
		}
		sub, err := linux.Openat(int(dir.Fd()), h.name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("mount cgroup on %s: %w", dest, err)
		}
		mnt, err := r.mountHierarchy(sub, dest, l, h, flags)
		sub.Close()
		if err != nil {
			return err
		}
		mnt.Close()
	}
	for _, s := range l.symlinks {
		if err := linux.Symlinkat(s[1], int(dir.Fd()), s[0]); err != nil {
			return fmt.Errorf("cgroup symlink %s: %w", s[0], err)
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		if err := setAttrs(dir, m.Destination, unix.MS_RDONLY); err != nil {
			return err
		}
	}
	return propagateFd(dir, m.Destination, m.Propagation)
}

// mountHierarchy mounts one hierarchy on target and returns a handle on the
// new mount: a fresh cgroup/cgroup2 mount in a new cgroup namespace, else a
// bind of the container's own directory with the spec's flags, applied
// before anyone can see it.
func (r *rootfs) mountHierarchy(target *os.File, dest string, l *cgroupLayout, h *hierarchy, flags uint64) (*os.File, error) {
	var mnt *os.File
	var err error
	if l.cgroupNS {
		var opts []linux.FsOption
		if h.fstype != "cgroup2" {
			opts = linux.ParseFsData(h.controllers)
		}
		mnt, err = linux.NewMount(h.fstype, h.fstype, opts, newMountAttrs(flags))
	} else {
		var src string
		if src, err = l.ownDir(h); err != nil {
			return nil, err
		}
		// The host's own cgroupfs, before pivot_root: nothing of the
		// container's is on this path.
		if mnt, err = linux.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE); err == nil {
			if err = setAttrs(mnt, dest, flags); err != nil {
				mnt.Close()
				return nil, err
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	if err := linux.MoveMount(mnt, target); err != nil {
		mnt.Close()
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	return mnt, nil
}
