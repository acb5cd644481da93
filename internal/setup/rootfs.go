package setup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
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
// then go onto the resolved O_PATH handle with the new mount API (move_mount
// by fd, see internal/linux/mountapi.go), so the path is never looked up a
// second time (no TOCTOU) and no /proc/self/fd/N path, which a mount over
// the container's /proc/self could redirect, is ever a mount target.
//
// Decision on hostile destinations: every symlink on the way to a
// destination, the last component included, is contained (re-rooted at the
// rootfs, as runc's SecureJoin does, so /var/run/... works where /var/run
// -> /run and CRI's /etc/resolv.conf bind works where it links to a stub
// that is not there: see resolveDest). A redirection therefore stays in the
// image's own tree, which its author controls anyway. What it must not
// reach is a kernel filesystem: procfs and sysfs refuse any symlink on their
// path, and a mount whose resolved target lies on procfs or sysfs is refused
// unless it is one of the few a runtime makes there, named by its literal
// path (checkTarget). Tests: TestRunCtrSpec, TestRunDanglingSymlinkTarget,
// TestRunDestSymlinkFollowedInside, TestRunHostileKernelFSSymlink,
// cve_test.go.
type rootfs struct {
	path string
	fd   *os.File // O_PATH|O_DIRECTORY
}

func openRoot(p string) (*rootfs, error) {
	f, err := linux.Openat(unix.AT_FDCWD, p, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	// A root on procfs or sysfs would make every mount below land there,
	// out of reach of the checks that keep mounts off those filesystems.
	st, err := linux.Fstatfs(f)
	if err == nil && isKernelFS(st.Type) {
		err = fmt.Errorf("rootfs %s is on %s: %w", p, fsName(st.Type), errdefs.ErrInvalidArgument)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rootfs{path: p, fd: f}, nil
}

// isKernelFS says whether a statfs magic is procfs or sysfs, where a mount
// can hide or redirect what the kernel shows.
func isKernelFS(magic int64) bool {
	return magic == unix.PROC_SUPER_MAGIC || magic == unix.SYSFS_MAGIC
}

func fsName(magic int64) string {
	switch magic {
	case unix.PROC_SUPER_MAGIC:
		return "procfs"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	}
	return fmt.Sprintf("filesystem %#x", magic)
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
	// A missing file below /proc or /sys is a name the kernel does not
	// have (a dangling image symlink to /proc/sysrq-trigger on a kernel
	// without it): nothing may be created there, and it is the spec's or the
	// image's fault, not the host's.
	if st, err := linux.Fstatfs(dir); err == nil && isKernelFS(st.Type) {
		return nil, fmt.Errorf("%s does not exist on %s and no mount target is created there: %w", p, fsName(st.Type), errdefs.ErrInvalidArgument)
	}
	f, err := linux.Openat(int(dir.Fd()), path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY, 0o644)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if f != nil {
		f.Close()
	}
	f, err = r.open(p)
	if errors.Is(err, os.ErrNotExist) {
		// The name exists (EEXIST above) but leads nowhere: a dangling
		// symlink, through which nothing is created.
		return nil, fmt.Errorf("%s is a dangling symlink: refusing to create its target: %w: %w", p, errdefs.ErrInvalidArgument, err)
	}
	return f, err
}

// strictDir returns a handle on the directory p inside the root, refusing
// any symlink on the way, creating it when missing. Used for procfs and
// sysfs: a hostile image with /proc -> /somewhere must not get procfs
// mounted somewhere else, where the later masking of /proc/* would miss it
// (CVE-2019-16884, CVE-2019-19921 class).
func (r *rootfs) strictDir(p string) (*os.File, error) {
	f, err := r.strictOpen(p, unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		var d *os.File
		if d, err = r.mkdirAll(p); err == nil {
			d.Close()
			f, err = r.strictOpen(p, unix.O_DIRECTORY)
		}
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s: a component is a symlink: refusing to mount a kernel filesystem there (CVE-2019-19921): %w: %w", p, errdefs.ErrInvalidArgument, err)
	case errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("%s: not a directory: refusing to mount a kernel filesystem there: %w: %w", p, errdefs.ErrInvalidArgument, err)
	case err != nil:
		return nil, err
	}
	return f, nil
}

// strictOpen opens p inside the root (O_PATH) without following any
// symlink, so that the handle is the one the path names literally.
func (r *rootfs) strictOpen(p string, flags uint64) (*os.File, error) {
	return linux.Openat2(int(r.fd.Fd()), p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
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

// resolveDest is where a mount for dest goes inside the rootfs: every
// symlink on the way, the last component included, is followed as if the
// rootfs were "/" (an absolute target starts at the rootfs, ".." stops at
// it), and the part a dangling symlink points to that does not exist yet
// is kept, to be created inside the rootfs. That is runc's SecureJoin
// resolution: images whose /etc/resolv.conf links to a systemd-resolved
// stub that is not there get CRI's bind on the link's target, as with runc.
// The result is only a path inside the rootfs: it is opened or created
// with pathrs (re-rooted again, so a rename between the two steps cannot
// leave the rootfs), and checkTarget then judges the very handle the mount
// goes onto.
func (r *rootfs) resolveDest(dest string) (string, error) {
	joined, err := securejoin.SecureJoin(r.path, dest)
	if err != nil {
		return "", fmt.Errorf("mount destination %s: resolving it inside the rootfs: %w", dest, err)
	}
	rel, err := filepath.Rel(r.path, joined)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("mount destination %s resolves outside the rootfs (%s): %w", dest, joined, errdefs.ErrInvalidArgument)
	}
	return path.Join("/", rel), nil
}

// procBindAllowed are the /proc files a bind mount may cover: those lxcfs
// emulates, runc's checkProcMount list (runc dropped /proc/net/dev: /proc/net
// is a symlink, so that path never resolves to itself).
var procBindAllowed = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/sys/kernel/ns_last_pid": true, "/proc/sys/crypto/fips_enabled": true,
}

// sysBindAllowed are the sysfs files a bind mount may cover: lxcfs's
// emulated CPU list.
var sysBindAllowed = map[string]bool{
	"/sys/devices/system/cpu/online": true,
}

// kernelFSTarget says whether a mount of type typ at the spec path dest may
// go onto a target on the filesystem magic. On procfs and sysfs only what a
// runtime itself mounts there is allowed: procfs on /proc, sysfs on /sys,
// the cgroup tree (tmpfs, cgroup, cgroup2 or a bind) at /sys/fs/cgroup, and
// lxcfs-style binds over the files listed above. Anything else there can
// hide what the kernel shows (an LSM's /proc/self/attr, CVE-2019-16884) or,
// over /proc/<pid>, replace the setup face's /proc/self and with it every
// /proc/self/... lookup made after pivot_root.
func kernelFSTarget(dest, typ string, magic int64) error {
	ok := false
	switch magic {
	case unix.PROC_SUPER_MAGIC:
		ok = typ == "proc" && dest == "/proc" || typ == "bind" && procBindAllowed[dest]
	case unix.SYSFS_MAGIC:
		ok = typ == "sysfs" && dest == "/sys" || typ == "bind" && sysBindAllowed[dest] ||
			dest == "/sys/fs/cgroup" && (typ == "tmpfs" || typ == "cgroup" || typ == "cgroup2" || typ == "bind")
	default:
		return nil
	}
	if ok {
		return nil
	}
	return fmt.Errorf("the target of the %s mount on %s is on %s: a mount there could hide or redirect what the kernel shows (CVE-2019-16884 class): %w",
		typ, dest, fsName(magic), errdefs.ErrInvalidArgument)
}

// checkTarget checks the resolved handle of a mount target (fstatfs of the
// very fd the mount goes onto, never a path): see kernelFSTarget. src is the
// statfs of a bind's source, nil for other mounts.
func (r *rootfs) checkTarget(m spec.Mount, target *os.File, src *unix.Statfs_t) error {
	// The spec refuses "/"; symlinks must not reach it either (runc
	// refuses a mount point on the top of the rootfs too).
	if sameFile(target, r.fd) {
		return fmt.Errorf("the %s mount on %s resolves to the root of the container: %w", m.Type, m.Destination, errdefs.ErrInvalidArgument)
	}
	st, err := linux.Fstatfs(target)
	if err != nil {
		return fmt.Errorf("mount target %s: %w", m.Destination, err)
	}
	if !isKernelFS(st.Type) {
		return nil
	}
	if err := kernelFSTarget(m.Destination, m.Type, st.Type); err != nil {
		return err
	}
	// Allowed by its spec path: the handle must be what that path names
	// literally, not a place an image symlink led to.
	lit, err := r.strictOpen(m.Destination, 0)
	if err != nil {
		return fmt.Errorf("the target of the %s mount on %s is on %s but is not that path itself (a symlink on the way?): %w: %w",
			m.Type, m.Destination, fsName(st.Type), errdefs.ErrInvalidArgument, err)
	}
	defer lit.Close()
	if !sameFile(lit, target) {
		return fmt.Errorf("the target of the %s mount on %s is on %s but is not that path itself: %w",
			m.Type, m.Destination, fsName(st.Type), errdefs.ErrInvalidArgument)
	}
	// The allowed files are for emulations (lxcfs, a FUSE filesystem). A
	// procfs or sysfs file bound there would be a second name for another
	// kernel file, writable past readonlyPaths (a bind below /proc/sys
	// stays read-write when /proc/sys is made read-only): ns_last_pid
	// becoming core_pattern is a host escape.
	if src != nil && isKernelFS(src.Type) {
		return fmt.Errorf("bind mount on %s: the source %s is on %s: only emulated files (lxcfs) may cover kernel files: %w",
			m.Destination, m.Source, fsName(src.Type), errdefs.ErrInvalidArgument)
	}
	return nil
}

// sameFile says whether two handles are the same inode.
func sameFile(a, b *os.File) bool {
	sa, err := linux.Fstat(a)
	if err != nil {
		return false
	}
	sb, err := linux.Fstat(b)
	return err == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// mount performs one spec mount.
func (r *rootfs) mount(m spec.Mount, hostCgroups *cgroupLayout) error {
	at := m.Destination
	if m.Type != "proc" && m.Type != "sysfs" {
		var err error
		if at, err = r.resolveDest(m.Destination); err != nil {
			return err
		}
	}
	switch m.Type {
	case "bind":
		return r.bindMount(m, at)
	case "cgroup", "cgroup2":
		target, err := r.mkdirAll(at)
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
		defer target.Close()
		if err := r.checkTarget(m, target, nil); err != nil {
			return err
		}
		if err := r.mountCgroup(m, target, hostCgroups); err != nil {
			return err
		}
		// The v1 tree is a tmpfs with a mount per hierarchy: set last,
		// on what is now at the destination, before any process runs.
		return r.setRecursiveAt(m, at)
	}
	var target *os.File
	var err error
	if m.Type == "proc" || m.Type == "sysfs" {
		target, err = r.strictDir(m.Destination)
	} else {
		target, err = r.mkdirAll(at)
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	defer target.Close()
	if err := r.checkTarget(m, target, nil); err != nil {
		return err
	}
	mnt, err := linux.NewMount(m.Type, m.Source, fsOptions(m.Flags, m.Data), newMountAttrs(m.Flags))
	if err != nil {
		return sysfsFallback(m, target, fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err))
	}
	defer mnt.Close()
	if err := setRecursive(mnt, m); err != nil {
		return err
	}
	if err := linux.MoveMount(mnt, target); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	return propagateFd(mnt, m.Destination, m.Propagation)
}

// setRecursive applies the recursive attributes (rro, rnosuid...) to the
// whole tree under mnt with mount_setattr(AT_RECURSIVE). On a detached
// tree (a bind's clone, a new filesystem) nobody sees the tree without
// them, submounts of an rbind included: that is what makes rro stronger
// than ro, which only the top mount of an rbind gets.
func setRecursive(mnt *os.File, m spec.Mount) error {
	if m.RecSet == 0 && m.RecClr == 0 {
		return nil
	}
	if err := linux.MountSetattr(mnt, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: m.RecSet, Attr_clr: m.RecClr}); err != nil {
		return fmt.Errorf("%s: recursive mount attributes: %w", m.Destination, err)
	}
	return nil
}

// setRecursiveAt is setRecursive for the mount now at at (m's resolved
// destination), opened again in the rootfs.
func (r *rootfs) setRecursiveAt(m spec.Mount, at string) error {
	if m.RecSet == 0 && m.RecClr == 0 {
		return nil
	}
	f, err := r.open(at)
	if err != nil {
		return err
	}
	defer f.Close()
	return setRecursive(f, m)
}

// sbOptions are the MS_* flags that belong to the superblock of a new
// filesystem, as fsconfig flags. MS_SILENT (log noise) and MS_I_VERSION
// (tmpfs always counts versions) have no fsconfig form and change nothing
// for the filesystems a spec may mount here.
var sbOptions = []struct {
	flag uint64
	key  string
}{
	{unix.MS_RDONLY, "ro"},
	{unix.MS_SYNCHRONOUS, "sync"},
	{unix.MS_DIRSYNC, "dirsync"},
	{unix.MS_LAZYTIME, "lazytime"},
}

// fsOptions turns a new mount's flags and data into fsconfig calls, in
// the order mount(2) would apply them (superblock flags, then the data).
func fsOptions(flags uint64, data string) []linux.FsOption {
	var out []linux.FsOption
	for _, o := range sbOptions {
		if flags&o.flag != 0 {
			out = append(out, linux.FsOption{Key: o.key})
		}
	}
	return append(out, linux.ParseFsData(data)...)
}

// perMount maps the per-mount MS_* flags to MOUNT_ATTR_* ones (atime apart).
var perMount = []struct{ ms, attr uint64 }{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	{unix.MS_NOSYMFOLLOW, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

const msAtime = unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// atimeAttr is the atime mode mount(2) picks from the flags: strictatime
// wins, then noatime, else relatime (the default).
func atimeAttr(flags uint64) uint64 {
	switch {
	case flags&unix.MS_STRICTATIME != 0:
		return unix.MOUNT_ATTR_STRICTATIME
	case flags&unix.MS_NOATIME != 0:
		return unix.MOUNT_ATTR_NOATIME
	}
	return unix.MOUNT_ATTR_RELATIME
}

// newMountAttrs are the fsmount attributes of a new filesystem mounted with
// the MS_* flags.
func newMountAttrs(flags uint64) uint64 {
	var out uint64
	for _, f := range perMount {
		if flags&f.ms != 0 {
			out |= f.attr
		}
	}
	return out | atimeAttr(flags)
}

// mountAttrs is what mount_setattr changes on a bind (or any existing
// mount) for the requested MS_* flags, with the semantics of the
// MS_BIND|MS_REMOUNT it replaces: the requested flags are set; nothing is
// cleared, so the mount keeps the nosuid, nodev, noexec and ro it copied
// from its source (locked or not); the atime mode (with nodiratime) is
// replaced only when an atime option was given, as a remount keeps it
// otherwise.
func mountAttrs(flags uint64) *unix.MountAttr {
	a := &unix.MountAttr{}
	for _, f := range perMount {
		if flags&f.ms != 0 {
			a.Attr_set |= f.attr
		}
	}
	if flags&msAtime != 0 {
		a.Attr_clr = unix.MOUNT_ATTR__ATIME
		if flags&unix.MS_NODIRATIME == 0 {
			a.Attr_clr |= unix.MOUNT_ATTR_NODIRATIME
		}
		a.Attr_set |= atimeAttr(flags)
	}
	return a
}

// setAttrs applies per-mount flags to the mount whose root is f.
func setAttrs(f *os.File, name string, flags uint64) error {
	a := mountAttrs(flags)
	if a.Attr_set == 0 && a.Attr_clr == 0 {
		return nil
	}
	if err := linux.MountSetattr(f, 0, a); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// propagateFd applies propagation flags (MS_SHARED... with MS_REC for the
// r* forms) to the mount whose root is mnt.
func propagateFd(mnt *os.File, dest string, flags []uint64) error {
	for _, fl := range flags {
		var at uint
		if fl&unix.MS_REC != 0 {
			at = unix.AT_RECURSIVE
		}
		if err := linux.MountSetattr(mnt, at, &unix.MountAttr{Propagation: fl &^ unix.MS_REC}); err != nil {
			return fmt.Errorf("%s: propagation: %w", dest, err)
		}
	}
	return nil
}

// propagate applies propagation flags to the mount now at dest, resolved
// again (for mounts made without a handle on the new mount).
func (r *rootfs) propagate(dest string, flags []uint64) error {
	if len(flags) == 0 {
		return nil
	}
	f, err := r.open(dest)
	if err != nil {
		return err
	}
	defer f.Close()
	return propagateFd(f, dest, flags)
}

// bindMount clones the source (open_tree), applies the per-mount flags to
// the clone while nobody can see it yet, and attaches it on the resolved
// target: the container never sees the bind without its ro/nosuid..., and
// no path is looked up between the check of the target and the mount.
func (r *rootfs) bindMount(m spec.Mount, at string) error {
	if m.Destination == "/proc" {
		return fmt.Errorf("bind mount over /proc: refused, mount procfs instead: %w", errdefs.ErrInvalidArgument)
	}
	cloneFlags := uint(unix.OPEN_TREE_CLONE)
	if m.Flags&unix.MS_REC != 0 {
		cloneFlags |= unix.AT_RECURSIVE
	}
	tree, err := linux.OpenTree(unix.AT_FDCWD, m.Source, cloneFlags)
	if err != nil {
		return fmt.Errorf("bind mount on %s: source: %w", m.Destination, err)
	}
	defer tree.Close()
	src, err := linux.Fstat(tree)
	if err != nil {
		return fmt.Errorf("bind mount on %s: source: %w", m.Destination, err)
	}
	srcFS, err := linux.Fstatfs(tree)
	if err != nil {
		return fmt.Errorf("bind mount on %s: source: %w", m.Destination, err)
	}
	var target *os.File
	if src.Mode&unix.S_IFMT == unix.S_IFDIR {
		target, err = r.mkdirAll(at)
	} else {
		target, err = r.mkfile(at)
	}
	if err != nil {
		return fmt.Errorf("bind mount on %s: %w", m.Destination, err)
	}
	defer target.Close()
	if err := r.checkTarget(m, target, srcFS); err != nil {
		return err
	}
	if err := setAttrs(tree, m.Destination, m.Flags); err != nil {
		return err
	}
	if err := setRecursive(tree, m); err != nil {
		return err
	}
	if err := linux.MoveMount(tree, target); err != nil {
		return fmt.Errorf("bind mount on %s: %w", m.Destination, err)
	}
	return propagateFd(tree, m.Destination, m.Propagation)
}

// remountBind applies per-mount flags (ro, nosuid, ...) to the bind mount now
// at dest, resolved again (for binds made without a handle on the new mount).
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

// remountFd applies per-mount flags to the mount whose root is f
// (mount_setattr, see mountAttrs).
func remountFd(f *os.File, name string, flags uint64) error {
	return setAttrs(f, name, flags)
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
	// An image whose /dev leads into /proc or /sys must not get nodes
	// (or binds of host nodes) there.
	if st, err := linux.Fstatfs(dir); err != nil {
		return err
	} else if isKernelFS(st.Type) {
		return fmt.Errorf("%s is on %s: %w", path.Dir(d.Path), fsName(st.Type), errdefs.ErrInvalidArgument)
	}
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

// bindDevice binds the host's node d.Path (the setup face still sees the
// host's /dev) by handle, after checking it is the node the spec names.
func (r *rootfs) bindDevice(d spec.Device) error {
	node, err := linux.OpenTree(unix.AT_FDCWD, d.Path, unix.OPEN_TREE_CLONE)
	if err != nil {
		return err
	}
	defer node.Close()
	st, err := linux.Fstat(node)
	if err != nil {
		return err
	}
	want := uint32(unix.S_IFCHR)
	if d.Type == "b" {
		want = unix.S_IFBLK
	}
	if st.Mode&unix.S_IFMT != want || st.Rdev != unix.Mkdev(uint32(d.Major), uint32(d.Minor)) {
		return fmt.Errorf("host node %s is not device %s %d:%d: %w", d.Path, d.Type, d.Major, d.Minor, errdefs.ErrFailedPrecondition)
	}
	target, err := r.mkfile(d.Path)
	if err != nil {
		return err
	}
	defer target.Close()
	return linux.MoveMount(node, target)
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
	// "." must name the old root for what follows, and after pivot_root the
	// cwd still is the new root's top, under the old root now stacked on
	// it: the change of propagation below would hit the new root's whole
	// tree, making every rshared volume a mere slave (Kubernetes'
	// Bidirectional propagation then never reaches the host). The handle
	// opened before the pivot is the old root, whatever the kernel does
	// with the cwd.
	if err := unix.Fchdir(int(oldroot.Fd())); err != nil {
		return &os.PathError{Op: "fchdir", Path: "the old root", Err: err}
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
// racing container could have made it a symlink or another node, which the
// mask would then expose (CVE-2025-31133). The fd checked here is the one
// maskPaths clones (open_tree on the fd): nothing is looked up in between.
func openDevNull() (*os.File, error) {
	f, err := linux.Openat2(unix.AT_FDCWD, "/dev/null", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	st, err := linux.Fstat(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !isDevNull(st) {
		f.Close()
		return nil, fmt.Errorf("/dev/null is not the null device (mode %#o, rdev %d:%d): refusing to mask with it (CVE-2025-31133): %w",
			st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), errdefs.ErrInvalidArgument)
	}
	return f, nil
}

func isDevNull(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3)
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

// maskAttrs are the attributes of a mask: nothing to write, run or open
// as a device through it.
const maskAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC

// maskPaths hides paths: /dev/null over files, an empty read-only tmpfs over
// directories. Missing paths are skipped. Every mask is attached by handle
// (move_mount onto the O_PATH fd of the path; /dev/null cloned from the fd
// that was checked, the tmpfs made with fsmount), not through
// /proc/self/fd/N of the container's procfs, which a bind mount over
// /proc/<pid> would redirect.
func maskPaths(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	null, err := openDevNull()
	if err != nil {
		return fmt.Errorf("masked paths: %w", err)
	}
	defer null.Close()
	mode := "0555"
	for _, p := range paths {
		f, err := openInNewRoot(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masked path: %w", err)
		}
		var mask *os.File
		st, err := linux.Fstat(f)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				mask, err = linux.NewMount("tmpfs", "tmpfs", []linux.FsOption{{Key: "ro"}, {Key: "mode", Value: &mode}}, maskAttrs)
			} else {
				mask, err = linux.CloneMount(null, false)
			}
		}
		if err == nil {
			err = linux.MoveMount(mask, f)
			mask.Close()
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths binds each path onto itself, recursively, and makes the
// bind read-only before attaching it (open_tree + mount_setattr + move_mount
// onto the path's handle: see maskPaths for why not /proc/self/fd/N).
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
		err = readonlyPath(f, p)
		f.Close()
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
	}
	return nil
}

func readonlyPath(f *os.File, p string) error {
	tree, err := linux.CloneMount(f, true)
	if err != nil {
		return err
	}
	defer tree.Close()
	if err := setAttrs(tree, p, unix.MS_RDONLY); err != nil {
		return err
	}
	return linux.MoveMount(tree, f)
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

// writeProcFile writes value to the procfs file p ("/proc/sys/net/...",
// "/proc/self/oom_score_adj") through a procfs instance of its own,
// made with fsopen and never attached: no mount the container or its
// bundle made (a procfs file of another kind bound over p, a shared mount
// that a racing container changes) can redirect the write (CVE-2025-52881
// class); checking that the file opened is on procfs could not tell, since
// the redirect target is on procfs too. The instance shows our own pid
// namespace, and sysctls act on the writer's namespaces, not the mount's.
// It is preferred to pathrs-lite's procfs handle, which may cache one
// opened before pivot_root; this one lives for one write.
func writeProcFile(p, value string) error {
	rel, ok := strings.CutPrefix(p, "/proc/")
	if !ok {
		return fmt.Errorf("%s is not a /proc path", p)
	}
	// "self" is a symlink, refused below: name ourselves by pid.
	if r, ok := strings.CutPrefix(rel, "self/"); ok {
		rel = strconv.Itoa(unix.Getpid()) + "/" + r
	}
	proc, release, err := privateProcfs()
	if err != nil {
		return err
	}
	defer release()
	f, err := linux.Openat2(int(proc.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(value); err != nil {
		return err
	}
	return nil
}

// execProcfs is the exec face's private procfs (ExecMain): made before it
// entered the container's user and mount namespaces, where a new procfs
// instance may be refused (mount_too_revealing: the container's /proc has
// masks over it).
var execProcfs *os.File

// privateProcfs returns a procfs instance of our pid namespace that is
// attached nowhere, and what to call once done with it.
func privateProcfs() (*os.File, func(), error) {
	if execProcfs != nil {
		return execProcfs, func() {}, nil
	}
	proc, err := linux.NewMount("proc", "proc", nil, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("private procfs: %w", err)
	}
	return proc, func() { proc.Close() }, nil
}

// cwdError classifies a failure to resolve process.cwd: RESOLVE_IN_ROOT
// (and enterCwd) refuse magic links with ELOOP, and /proc/self/fd/N is how
// a cwd reaches an fd that points outside the root (CVE-2024-21626).
func cwdError(cwd string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("process.cwd %s goes through a magic link (/proc/self/fd/N...) that could lead out of the container (CVE-2024-21626): %w: %w",
			cwd, errdefs.ErrInvalidArgument, err)
	}
	return fmt.Errorf("process.cwd %s: %w", cwd, err)
}

// enterCwd makes process.cwd the working directory, as root, right after
// pivot_root, and returns its identity for reenterCwd. The path is resolved
// without magic links: "/" is the container's now, so plain symlinks stay
// inside it, but /proc/self/fd/N or /proc/1/cwd jump to whatever an open
// fd or a process points at, possibly outside the root (CVE-2024-21626: a
// cwd through a leaked fd gave the container the host's filesystem).
func enterCwd(cwd string) (*unix.Stat_t, error) {
	f, err := linux.Openat2(unix.AT_FDCWD, cwd, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, cwdError(cwd, err)
	}
	defer f.Close()
	if err := unix.Fchdir(int(f.Fd())); err != nil {
		return nil, &os.PathError{Op: "fchdir", Path: cwd, Err: err}
	}
	st, err := linux.Fstat(f)
	if err != nil {
		return nil, err
	}
	return st, checkCwd(cwd, st)
}

// reenterCwd enters cwd again by path, with the user's credentials, so that
// a directory the user may not reach fails Create rather than the exec, and
// checks that the path still leads to the directory enterCwd found.
func reenterCwd(cwd string, want *unix.Stat_t) error {
	if err := unix.Chdir(cwd); err != nil {
		return &os.PathError{Op: "chdir", Path: cwd, Err: err}
	}
	return checkCwd(cwd, want)
}

// checkCwd verifies the working directory is inside the root (getcwd
// answers an absolute path; the kernel gives "(unreachable)/..." for one
// outside it) and is the directory want.
func checkCwd(cwd string, want *unix.Stat_t) error {
	wd, err := unix.Getwd()
	if err != nil || !path.IsAbs(wd) {
		return fmt.Errorf("process.cwd %s: the working directory is outside the container's root (CVE-2024-21626): %w", cwd, errdefs.ErrInvalidArgument)
	}
	var st unix.Stat_t
	if err := unix.Stat(".", &st); err != nil {
		return &os.PathError{Op: "stat", Path: cwd, Err: err}
	}
	if st.Dev != want.Dev || st.Ino != want.Ino {
		return fmt.Errorf("process.cwd %s changed while the container was set up: %w", cwd, errdefs.ErrInvalidArgument)
	}
	return nil
}
