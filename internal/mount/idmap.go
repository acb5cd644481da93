package mount

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// NewUserNS returns an fd of a new user namespace with the given maps, for
// mount_setattr(MOUNT_ATTR_IDMAP): the kernel takes an idmapping only from
// a user namespace, and a namespace needs a process for its maps to be
// written. That process is a child stopped by PTRACE_TRACEME at its execve,
// so it never runs a single instruction of the binary; it is killed once
// its namespace is open (the mount keeps the idmapping, not the process).
// os/exec passes it stdio only: it never holds an fd of ours.
func NewUserNS(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	if len(uids) == 0 || len(gids) == 0 {
		return nil, fmt.Errorf("id-mapped mount: both uid and gid mappings are needed: %w", errdefs.ErrInvalidArgument)
	}
	// The tracer is the thread that forks: if it exited before the kill,
	// the child would be let go and run the binary.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"autokill-idmap-userns"}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: sysIDMap(uids),
		GidMappings: sysIDMap(gids),
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("id-mapped mount: user namespace for the mapping: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), os.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("id-mapped mount: %w", err)
	}
	// The pid cannot have been reused: the child is ours and unreaped
	// until the Wait above.
	return f, nil
}

func sysIDMap(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

// IDMapped returns a detached, id-mapped copy of the mount tree at src
// (a bind: tree says rbind), with idmap on every mount of the copy when
// recursive, on its top mount only otherwise. The copy's propagation is
// private: it is no peer of anything on the host.
func IDMapped(src string, tree, recursive bool, userns *os.File) (*os.File, error) {
	mnt, err := Clone(src, tree)
	if err != nil {
		return nil, err
	}
	fd := int(mnt.Fd())
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd()), Propagation: unix.MS_PRIVATE}
	sflags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		sflags |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(fd, "", sflags, attr); err != nil {
		mnt.Close()
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
			// EINVAL: the filesystem cannot be id-mapped (no FS_ALLOW_IDMAP).
			return nil, fmt.Errorf("id-mapped mount of %s: %w: %w", src, os.NewSyscallError("mount_setattr(MOUNT_ATTR_IDMAP)", err), errdefs.ErrNotImplemented)
		}
		return nil, fmt.Errorf("id-mapped mount of %s: %w", src, os.NewSyscallError("mount_setattr(MOUNT_ATTR_IDMAP)", err))
	}
	return mnt, nil
}

// Clone is a detached copy of the mount at src (open_tree OPEN_TREE_CLONE;
// the whole tree below it with tree), in src's peer group like any bind.
func Clone(src string, tree bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if tree {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: src, Err: err}
	}
	return os.NewFile(uintptr(fd), src), nil
}

// Attach moves a detached mount onto target (a path of the host).
func Attach(mnt *os.File, target string) error {
	if err := unix.MoveMount(int(mnt.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount", Path: target, Err: err}
	}
	return nil
}

// ParseIDMapOption parses containerd's uidmap=/gidmap= option value,
// "ctrID:hostID:size" ranges separated by commas (the overlay
// snapshotter's remap-ids labels).
func ParseIDMapOption(v string) ([]specs.LinuxIDMapping, error) {
	var out []specs.LinuxIDMapping
	for _, r := range strings.Split(v, ",") {
		f := strings.Split(r, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("id mapping %q is not ctrID:hostID:size: %w", r, errdefs.ErrInvalidArgument)
		}
		var n [3]uint32
		for i, s := range f {
			x, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id mapping %q: %w: %w", r, err, errdefs.ErrInvalidArgument)
			}
			n[i] = uint32(x)
		}
		if n[2] == 0 {
			return nil, fmt.Errorf("id mapping %q has size 0: %w", r, errdefs.ErrInvalidArgument)
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	return out, nil
}

// idmapOptions takes uidmap= and gidmap= out of a rootfs mount's options.
func idmapOptions(opts []string) (rest []string, uids, gids []specs.LinuxIDMapping, err error) {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, "uidmap="); ok {
			if uids, err = ParseIDMapOption(v); err != nil {
				return nil, nil, nil, fmt.Errorf("uidmap: %w", err)
			}
			continue
		}
		if v, ok := strings.CutPrefix(o, "gidmap="); ok {
			if gids, err = ParseIDMapOption(v); err != nil {
				return nil, nil, nil, fmt.Errorf("gidmap: %w", err)
			}
			continue
		}
		rest = append(rest, o)
	}
	if (uids == nil) != (gids == nil) {
		return nil, nil, nil, fmt.Errorf("uidmap= and gidmap= go together: %w", errdefs.ErrInvalidArgument)
	}
	return rest, uids, gids, nil
}

// oneIDMapped mounts a rootfs mount that carries uidmap=/gidmap= (what
// containerd 2.x's overlay snapshotter hands over with remap-ids for a
// user-namespaced container): overlay gets id-mapped copies of its
// lowerdirs (the upperdir is already owned by the container's root), a
// bind is id-mapped itself.
func oneIDMapped(m mountSpec, uids, gids []specs.LinuxIDMapping, target string) (err error) {
	userns, err := NewUserNS(uids, gids)
	if err != nil {
		return err
	}
	defer userns.Close()
	switch m.typ {
	case "overlay":
		return overlayIDMapped(m, userns, target)
	case "bind", "rbind":
		mnt, err := IDMapped(m.source, m.flags&unix.MS_REC != 0, false, userns)
		if err != nil {
			return err
		}
		defer mnt.Close()
		if err := Attach(mnt, target); err != nil {
			return err
		}
		return remountBindFlags(target, m.flags)
	}
	return fmt.Errorf("uidmap=/gidmap= on a %q mount: %w", m.typ, errdefs.ErrNotImplemented)
}

type mountSpec struct {
	typ, source string
	flags       uintptr
	options     []string
}

func overlayIDMapped(m mountSpec, userns *os.File, target string) error {
	idx := -1
	for i, o := range m.options {
		if strings.HasPrefix(o, "lowerdir=") {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("overlay with uidmap=/gidmap= but no lowerdir: %w", errdefs.ErrInvalidArgument)
	}
	// Private copies, attached only for the overlay mount to find them by
	// path: overlayfs takes its own references to the layers at mount time.
	tmp, err := os.MkdirTemp(parentDir(target), ".autokill-idmap-")
	if err != nil {
		return err
	}
	var attached []string
	defer func() {
		for _, d := range attached {
			_ = unix.Unmount(d, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		_ = os.RemoveAll(tmp)
	}()
	lowers := strings.Split(strings.TrimPrefix(m.options[idx], "lowerdir="), ":")
	mapped := make([]string, len(lowers))
	for i, l := range lowers {
		d := fmt.Sprintf("%s/%d", tmp, i)
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		mnt, err := IDMapped(l, false, false, userns)
		if err != nil {
			return fmt.Errorf("lowerdir %s: %w", l, err)
		}
		err = Attach(mnt, d)
		mnt.Close()
		if err != nil {
			return err
		}
		attached = append(attached, d)
		mapped[i] = d
	}
	opts := append([]string{}, m.options...)
	opts[idx] = "lowerdir=" + strings.Join(mapped, ":")
	data := strings.Join(opts, ",")
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("mount options of %d bytes exceed a page: %w", len(data), errdefs.ErrNotImplemented)
	}
	if err := unix.Mount(m.source, target, "overlay", m.flags, data); err != nil {
		return &os.PathError{Op: "mount overlay", Path: target, Err: err}
	}
	return nil
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}
