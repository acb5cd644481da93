package linux

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The new mount API (open_tree, move_mount, mount_setattr, fsopen, fsconfig,
// fsmount) addresses every mount by file descriptor. The setup face uses it
// instead of mount(2) on /proc/self/fd/N: that magic path is looked up
// through whatever procfs is mounted at /proc at that moment, and after
// pivot_root that is the container's own, where a bind mount over /proc/1
// (the setup face's /proc/self) redirects every such lookup. A descriptor
// names the mount or the mount point itself; no path is looked up again.
// All of it is in Linux 5.12 (mount_setattr), the shim's minimum.

// OpenTree is open_tree(2) with OPEN_TREE_CLOEXEC. With OPEN_TREE_CLONE the
// result is a detached copy of the mount (tree, with AT_RECURSIVE) at path,
// which no one else can see until it is moved somewhere.
func OpenTree(dirfd int, path string, flags uint) (*os.File, error) {
	var fd int
	err := retry(func() (err error) { fd, err = unix.OpenTree(dirfd, path, flags|unix.O_CLOEXEC); return err })
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CloneMount is a detached copy of the mount under the handle f (recursive
// when rec): the bind source of a mount done by descriptor.
func CloneMount(f *os.File, rec bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.AT_EMPTY_PATH)
	if rec {
		flags |= unix.AT_RECURSIVE
	}
	var fd int
	err := retry(func() (err error) { fd, err = unix.OpenTree(int(f.Fd()), "", flags|unix.O_CLOEXEC); return err })
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: f.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// MoveMount attaches the mount mnt (from OpenTree, CloneMount or Fsmount) on
// top of whatever is mounted at the location of the handle target, exactly
// where mount(2) on that path would have put it. After it, mnt is a handle on
// the attached mount, for MountSetattr.
func MoveMount(mnt, target *os.File) error {
	err := retry(func() error {
		return unix.MoveMount(int(mnt.Fd()), "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	})
	if err != nil {
		return fmt.Errorf("move_mount %s onto %s: %w", mnt.Name(), target.Name(), err)
	}
	return nil
}

// MountSetattr is mount_setattr(2) on the mount whose root is the handle f
// (AT_EMPTY_PATH); flags may add AT_RECURSIVE.
func MountSetattr(f *os.File, flags uint, attr *unix.MountAttr) error {
	err := retry(func() error { return unix.MountSetattr(int(f.Fd()), "", flags|unix.AT_EMPTY_PATH, attr) })
	if err != nil {
		return fmt.Errorf("mount_setattr %s (set %#x, clear %#x, propagation %#x): %w",
			f.Name(), attr.Attr_set, attr.Attr_clr, attr.Propagation, err)
	}
	return nil
}

// FsOption is one fsconfig(2) call: a flag ("ro", "newinstance") when
// Value is nil, else a string parameter ("mode" = "755").
type FsOption struct {
	Key   string
	Value *string
}

// ParseFsData splits mount(2)-style data ("mode=755,size=64k,newinstance")
// into fsconfig options, the way the kernel splits it for mount(2).
func ParseFsData(data string) []FsOption {
	var out []FsOption
	for _, o := range strings.Split(data, ",") {
		if o == "" {
			continue
		}
		if k, v, ok := strings.Cut(o, "="); ok {
			out = append(out, FsOption{Key: k, Value: &v})
		} else {
			out = append(out, FsOption{Key: o})
		}
	}
	return out
}

// NewMount creates a filesystem of type fstype and returns it as a detached
// mount (fsopen, fsconfig, fsmount) with the MOUNT_ATTR_* attributes attrs,
// ready for MoveMount. A parameter the filesystem refuses is reported with
// the kernel's own message from the fs context log.
func NewMount(fstype, source string, opts []FsOption, attrs uint64) (*os.File, error) {
	var fsfd int
	err := retry(func() (err error) { fsfd, err = unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC); return err })
	if err != nil {
		return nil, &os.PathError{Op: "fsopen", Path: fstype, Err: err}
	}
	fs := os.NewFile(uintptr(fsfd), fstype)
	defer fs.Close()
	fail := func(what string, err error) error {
		if log := fsLog(fs); log != "" {
			return fmt.Errorf("fsconfig %s %s: %w (%s)", fstype, what, err, log)
		}
		return fmt.Errorf("fsconfig %s %s: %w", fstype, what, err)
	}
	if source != "" {
		if err := retry(func() error { return unix.FsconfigSetString(fsfd, "source", source) }); err != nil {
			return nil, fail("source="+source, err)
		}
	}
	for _, o := range opts {
		var err error
		if o.Value == nil {
			err = retry(func() error { return unix.FsconfigSetFlag(fsfd, o.Key) })
		} else {
			err = retry(func() error { return unix.FsconfigSetString(fsfd, o.Key, *o.Value) })
		}
		if err != nil {
			what := o.Key
			if o.Value != nil {
				what += "=" + *o.Value
			}
			return nil, fail(what, err)
		}
	}
	if err := retry(func() error { return unix.FsconfigCreate(fsfd) }); err != nil {
		return nil, fail("create", err)
	}
	var mfd int
	err = retry(func() (err error) { mfd, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs)); return err })
	if err != nil {
		return nil, fail(fmt.Sprintf("fsmount (attributes %#x)", attrs), err)
	}
	return os.NewFile(uintptr(mfd), fstype), nil
}

// fsLog drains the messages the kernel queued on an fs context ("e Unknown
// parameter 'x'"); the fd is not readable when there are none.
func fsLog(fs *os.File) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, err := unix.Read(int(fs.Fd()), buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(bytes.TrimSpace(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}
