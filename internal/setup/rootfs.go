package setup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// rootfs is the container's root directory before pivot_root. Every path
// inside it is resolved with pathrs (openat2 RESOLVE_IN_ROOT underneath), so a
// symlink in the image is followed *inside* the rootfs: an image symlink
// /evil -> /etc resolves to <rootfs>/etc, ../../.. stops at <rootfs>. Mounts
// then target the resolved O_PATH fd through /proc/self/fd/N, so the path
// is not looked up a second time (no TOCTOU).
//
// Decision on hostile destinations: symlinks on the way to a destination are
// contained (re-rooted at the rootfs, as runc 1.2+ does, so /var/run/...
// works in images where /var/run -> /run); a destination whose last
// component is itself a symlink pointing outside the rootfs (absolute, or
// climbing out with "..") is refused with InvalidArgument, because a mount
// meant for that path is exactly what a hostile image redirects; a
// destination through a dangling symlink is refused (nothing is created
// through it); procfs and sysfs refuse any symlink on their path. Tests: TestRunCtrSpec, TestRunDanglingSymlinkTarget,
// TestRunHostileKernelFSSymlink.
type rootfs struct {
	path string
	fd   *os.File // O_PATH|O_DIRECTORY
}

func openRoot(p string) (*rootfs, error) {
	f, err := linux.Openat(unix.AT_FDCWD, p, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	return &rootfs{path: p, fd: f}, nil
}

func (r *rootfs) Close() error { return r.fd.Close() }

// open resolves p inside the root, following symlinks inside it.
func (r *rootfs) open(p string) (*os.File, error) {
	return pathrs.OpenatInRoot(r.fd, p)
}

// mkdirAll creates p inside the root (mode 0755) and returns an O_PATH handle.
func (r *rootfs) mkdirAll(p string) (*os.File, error) {
	return pathrs.MkdirAllHandle(r.fd, p, 0o755)
}

// mkfile returns a handle on the file p inside the root, creating an empty
// file (and its parents) when it does not exist: the target of a file bind.
func (r *rootfs) mkfile(p string) (*os.File, error) {
	if f, err := r.open(p); !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	dir, err := r.mkdirAll(path.Dir(p))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	f, err := linux.Openat(int(dir.Fd()), path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY, 0o644)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if f != nil {
		f.Close()
	}
	return r.open(p)
}

// strictDir returns a handle on the directory p inside the root, refusing
// any symlink on the way, creating it when missing. Used for procfs and
// sysfs: a hostile image with /proc -> /somewhere must not get procfs
// mounted somewhere else, where the later masking of /proc/* would miss it
// (CVE-2019-16884, CVE-2019-19921 class).
func (r *rootfs) strictDir(p string) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	f, err := linux.Openat2(int(r.fd.Fd()), p, how)
	if errors.Is(err, unix.ENOENT) {
		var d *os.File
		if d, err = r.mkdirAll(p); err == nil {
			d.Close()
			f, err = linux.Openat2(int(r.fd.Fd()), p, how)
		}
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s: a component is a symlink: refusing to mount a kernel filesystem there (CVE-2019-19921): %w", p, err)
	case errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("%s: not a directory: refusing to mount a kernel filesystem there: %w", p, err)
	case err != nil:
		return nil, err
	}
	return f, nil
}

// setRootPropagation makes the whole mount tree (a copy of the host's)
// slave (or what linux.rootfsPropagation says) before anything else, so no
// mount or unmount we do propagates back to the host.
func setRootPropagation(flags uint64, root string) error {
	if err := linux.Mount("", "/", "", uintptr(flags), ""); err != nil {
		return err
	}
	if flags&unix.MS_SHARED == 0 {
		return nil
	}
	// pivot_root refuses a new root whose parent mount is shared (EINVAL);
	// with a shared "/" make just the rootfs's parent mount private.
	parent, err := parentMount(root)
	if err != nil {
		return err
	}
	return linux.Mount("", parent, "", unix.MS_PRIVATE, "")
}

// parentMount returns the mount point under which p lives.
func parentMount(p string) (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(p))
	if err != nil {
		return "", fmt.Errorf("mountinfo: %w", err)
	}
	best := "/"
	for _, m := range mounts {
		if len(m.Mountpoint) > len(best) {
			best = m.Mountpoint
		}
	}
	return best, nil
}

// checkDestSymlink refuses a destination whose last component is a symlink
// pointing outside the rootfs.
func (r *rootfs) checkDestSymlink(dest string) error {
	dir, err := r.open(path.Dir(dest))
	if err != nil {
		return nil // missing parents are created later, inside the root
	}
	defer dir.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(dir.Fd()), path.Base(dest), buf)
	if err != nil {
		return nil // not a symlink, or missing
	}
	target := string(buf[:n])
	resolved := target
	if !path.IsAbs(target) {
		resolved = path.Join(path.Dir(dest), target)
	}
	if path.IsAbs(target) || strings.HasPrefix(path.Clean("/"+resolved), "/..") || strings.HasPrefix(path.Clean(resolved), "..") {
		return fmt.Errorf("mount destination %s is a symlink to %q, outside the rootfs: refusing it: %w", dest, target, errdefs.ErrInvalidArgument)
	}
	return nil
}

// mount performs one spec mount.
func (r *rootfs) mount(m spec.Mount, hostCgroups *cgroupLayout) error {
	if m.Type != "proc" && m.Type != "sysfs" {
		if err := r.checkDestSymlink(m.Destination); err != nil {
			return err
		}
	}
	switch m.Type {
	case "bind":
		return r.bindMount(m)
	case "cgroup", "cgroup2":
		return r.mountCgroup(m, hostCgroups)
	}
	var target *os.File
	var err error
	if m.Type == "proc" || m.Type == "sysfs" {
		target, err = r.strictDir(m.Destination)
	} else {
		target, err = r.mkdirAll(m.Destination)
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	defer target.Close()
	if err := linux.Mount(m.Source, linux.FdPath(target), m.Type, uintptr(m.Flags), m.Data); err != nil {
		return fmt.Errorf("%s: %w", m.Destination, err)
	}
	return r.propagate(m.Destination, m.Propagation)
}

// propagate applies propagation flags to the mount now at dest. The target
// is resolved again: the fd taken before the mount points at the covered
// directory, not at the new mount.
func (r *rootfs) propagate(dest string, flags []uint64) error {
	if len(flags) == 0 {
		return nil
	}
	f, err := r.open(dest)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, fl := range flags {
		if err := linux.Mount("", linux.FdPath(f), "", uintptr(fl), ""); err != nil {
			return fmt.Errorf("%s: %w", dest, err)
		}
	}
	return nil
}

// procBindAllowed lists the /proc files a bind mount from procfs may
// cover (what lxcfs-style setups need; runc allows the same set).
var procBindAllowed = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/net/dev": true, "/proc/sys/kernel/ns_last_pid": true,
}

// checkProcBind refuses to bind a procfs file over a /proc path that could
// hide an LSM or sysctl interface (CVE-2019-16884).
func checkProcBind(dest string, srcIsProc bool) error {
	if dest != "/proc" && !strings.HasPrefix(dest, "/proc/") {
		return nil
	}
	if dest == "/proc" {
		return fmt.Errorf("bind mount over /proc: refused, mount procfs instead")
	}
	if srcIsProc && !procBindAllowed[dest] {
		return fmt.Errorf("bind mount of a procfs file over %s: refused (CVE-2019-16884)", dest)
	}
	return nil
}

func (r *rootfs) bindMount(m spec.Mount) error {
	src, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("bind mount on %s: source: %w", m.Destination, err)
	}
	if isUnder(m.Destination, "/proc") {
		var st unix.Statfs_t
		if err := unix.Statfs(m.Source, &st); err != nil {
			return fmt.Errorf("bind mount on %s: %w", m.Destination, &os.PathError{Op: "statfs", Path: m.Source, Err: err})
		}
		if err := checkProcBind(m.Destination, st.Type == unix.PROC_SUPER_MAGIC); err != nil {
			return err
		}
	}
	var target *os.File
	if src.IsDir() {
		target, err = r.mkdirAll(m.Destination)
	} else {
		target, err = r.mkfile(m.Destination)
	}
	if err != nil {
		return fmt.Errorf("bind mount on %s: %w", m.Destination, err)
	}
	defer target.Close()
	if err := linux.Mount(m.Source, linux.FdPath(target), "", uintptr(m.Flags&(unix.MS_BIND|unix.MS_REC)), ""); err != nil {
		return fmt.Errorf("%s: %w", m.Destination, err)
	}
	if err := r.remountBind(m.Destination, m.Flags); err != nil {
		return err
	}
	return r.propagate(m.Destination, m.Propagation)
}

// bindPreserved are the per-mount flags a bind remount keeps from the mount
// it copies. The kernel refuses to clear them when they are locked (mounts
// inherited across a user namespace) and we never want to lose them anyway.
var bindPreserved = map[int64]uint64{
	unix.ST_NOSUID: unix.MS_NOSUID,
	unix.ST_NODEV:  unix.MS_NODEV,
	unix.ST_NOEXEC: unix.MS_NOEXEC,
	unix.ST_RDONLY: unix.MS_RDONLY,
}

// remountFlags computes the flags of the bind remount: the requested ones
// plus those preserved from the statfs flags of the bind mount itself.
func remountFlags(requested uint64, statfsFlags int64) uint64 {
	out := unix.MS_BIND | unix.MS_REMOUNT | requested&^(unix.MS_BIND|unix.MS_REC)
	for st, ms := range bindPreserved {
		if statfsFlags&st != 0 {
			out |= ms
		}
	}
	return out
}

// remountBind applies per-mount flags (ro, nosuid, ...) to the bind mount now
// at dest: mount(2) ignores them on the initial MS_BIND.
func (r *rootfs) remountBind(dest string, flags uint64) error {
	if flags&^(unix.MS_BIND|unix.MS_REC) == 0 {
		return nil
	}
	f, err := r.open(dest)
	if err != nil {
		return err
	}
	defer f.Close()
	return remountFd(f, dest, flags)
}

func remountFd(f *os.File, name string, flags uint64) error {
	st, err := linux.Fstatfs(f)
	if err != nil {
		return err
	}
	if err := linux.Mount("", linux.FdPath(f), "", uintptr(remountFlags(flags, st.Flags)), ""); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// isUnder says whether p is dir or inside it (both clean and absolute).
func isUnder(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// createDevices makes the device nodes of the plan in the container's /dev.
// Runs as real root in the init user namespace, so mknod works; if it does
// not (a restricted host), the host's node is bind-mounted instead.
func (r *rootfs) createDevices(devs []spec.Device) error {
	for _, d := range devs {
		if err := r.createDevice(d); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	return nil
}

func (r *rootfs) createDevice(d spec.Device) error {
	dir, err := r.mkdirAll(path.Dir(d.Path))
	if err != nil {
		return err
	}
	defer dir.Close()
	base := path.Base(d.Path)
	mode := d.Mode
	switch d.Type {
	case "c", "u":
		mode |= unix.S_IFCHR
	case "b":
		mode |= unix.S_IFBLK
	case "p":
		mode |= unix.S_IFIFO
	default:
		return fmt.Errorf("unknown device type %q", d.Type)
	}
	dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	err = linux.Mknodat(int(dir.Fd()), base, mode, dev)
	if errors.Is(err, unix.EEXIST) {
		// An image's own /dev (no tmpfs on it): replace what is there.
		if err = linux.Unlinkat(int(dir.Fd()), base, 0); err == nil {
			err = linux.Mknodat(int(dir.Fd()), base, mode, dev)
		}
	}
	if errors.Is(err, unix.EPERM) && d.Type != "p" {
		return r.bindDevice(d)
	}
	if err != nil {
		return err
	}
	if err := linux.Fchownat(int(dir.Fd()), base, int(d.UID), int(d.GID)); err != nil {
		return err
	}
	// mknod applied the umask; the spec's mode is exact.
	return linux.Fchmodat(int(dir.Fd()), base, d.Mode)
}

func (r *rootfs) bindDevice(d spec.Device) error {
	target, err := r.mkfile(d.Path)
	if err != nil {
		return err
	}
	defer target.Close()
	return linux.Mount(d.Path, linux.FdPath(target), "", unix.MS_BIND, "")
}

// devSymlinks are the standard /dev symlinks.
var devSymlinks = [][2]string{
	{"/proc/self/fd", "fd"},
	{"/proc/self/fd/0", "stdin"},
	{"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"},
}

func (r *rootfs) createDevSymlinks() error {
	dev, err := r.mkdirAll("/dev")
	if err != nil {
		return err
	}
	defer dev.Close()
	links := devSymlinks
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	for _, l := range links {
		if err := linux.Symlinkat(l[0], int(dev.Fd()), l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	// ptmx must be the devpts instance's, whatever the image had there.
	if err := linux.Unlinkat(int(dev.Fd()), "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return linux.Symlinkat("pts/ptmx", int(dev.Fd()), "ptmx")
}

// pivotRoot makes the rootfs the new "/" and drops the old root.
func pivotRoot(root string) error {
	oldroot, err := linux.Openat(unix.AT_FDCWD, "/", unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer oldroot.Close()
	newroot, err := linux.Openat(unix.AT_FDCWD, root, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer newroot.Close()
	if err := unix.Fchdir(int(newroot.Fd())); err != nil {
		return &os.PathError{Op: "fchdir", Path: root, Err: err}
	}
	// pivot_root(".", ".") stacks the old root on top of the new one at
	// "/", without needing a put_old directory in the image.
	if err := linux.PivotRoot(".", "."); err != nil {
		return err
	}
	// The old root may be shared with the host (rootfsPropagation
	// shared): make it slave so the unmount below stays ours.
	if err := linux.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := linux.Unmount(".", unix.MNT_DETACH); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

// openDevNull opens the container's /dev/null and checks it is the real
// null device: it is bind-mounted over masked files, and a hostile image or
// racing container could have made it a symlink to something the mask would
// then expose (CVE-2025-31133).
func openDevNull() (*os.File, error) {
	f, err := linux.Openat(unix.AT_FDCWD, "/dev/null", unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	st, err := linux.Fstat(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		f.Close()
		return nil, fmt.Errorf("/dev/null is not the null device (mode %#o, rdev %d:%d)", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return f, nil
}

// openInNewRoot opens p after pivot_root. The root is now the container's,
// so symlinks cannot leave it; magic links (/proc/self/root/...) could, and
// are refused.
func openInNewRoot(p string) (*os.File, error) {
	return linux.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_MAGICLINKS,
	})
}

// maskPaths hides paths: /dev/null over files, an empty read-only tmpfs over
// directories. Missing paths are skipped.
func maskPaths(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	null, err := openDevNull()
	if err != nil {
		return fmt.Errorf("masked paths: %w", err)
	}
	defer null.Close()
	for _, p := range paths {
		f, err := openInNewRoot(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masked path: %w", err)
		}
		st, err := linux.Fstat(f)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = linux.Mount("tmpfs", linux.FdPath(f), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=0555")
			} else {
				err = linux.Mount(linux.FdPath(null), linux.FdPath(f), "", unix.MS_BIND, "")
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths bind-mounts each path onto itself and remounts it read-only.
// Missing paths are skipped.
func readonlyPaths(paths []string) error {
	for _, p := range paths {
		f, err := openInNewRoot(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("readonly path: %w", err)
		}
		err = linux.Mount(linux.FdPath(f), linux.FdPath(f), "", unix.MS_BIND|unix.MS_REC, "")
		f.Close()
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
		if f, err = openInNewRoot(p); err != nil {
			return fmt.Errorf("readonly path: %w", err)
		}
		err = remountFd(f, p, unix.MS_RDONLY)
		f.Close()
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
	}
	return nil
}

// remountRootReadonly makes "/" read-only (root.readonly).
func remountRootReadonly() error {
	f, err := linux.Openat(unix.AT_FDCWD, "/", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return remountFd(f, "/", unix.MS_RDONLY)
}

// writeProcFile writes a /proc file of the container, after checking that
// what was opened really is procfs: a mount over it could otherwise
// redirect the write (CVE-2025-52881 class).
func writeProcFile(p, value string) error {
	f, err := linux.Openat(unix.AT_FDCWD, p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_TRUNC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := linux.Fstatfs(f)
	if err != nil {
		return err
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s is not on procfs (filesystem magic %#x)", p, st.Type)
	}
	if _, err := f.WriteString(value); err != nil {
		return err
	}
	return nil
}
