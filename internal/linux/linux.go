// Package linux wraps the system calls the setup face makes: each wrapper
// retries EINTR and returns an *os.SyscallError, *os.PathError or *MountError
// that says what was attempted.
package linux

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// retry runs fn until it does not fail with EINTR.
func retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// MountError is a failed mount(2).
type MountError struct {
	Source, Target, Type string
	Flags                uintptr
	Data                 string
	Err                  error
}

func (e *MountError) Error() string {
	var b strings.Builder
	b.WriteString("mount")
	if e.Source != "" {
		fmt.Fprintf(&b, " %s", e.Source)
	}
	fmt.Fprintf(&b, " on %s", e.Target)
	if e.Type != "" {
		fmt.Fprintf(&b, " type %s", e.Type)
	}
	fmt.Fprintf(&b, " (flags %#x", e.Flags)
	if e.Data != "" {
		fmt.Fprintf(&b, ", data %q", e.Data)
	}
	fmt.Fprintf(&b, "): %v", e.Err)
	return b.String()
}

func (e *MountError) Unwrap() error { return e.Err }

// Mount is mount(2).
func Mount(source, target, fstype string, flags uintptr, data string) error {
	err := retry(func() error { return unix.Mount(source, target, fstype, flags, data) })
	if err != nil {
		return &MountError{Source: source, Target: target, Type: fstype, Flags: flags, Data: data, Err: err}
	}
	return nil
}

// Unmount is umount2(2).
func Unmount(target string, flags int) error {
	if err := retry(func() error { return unix.Unmount(target, flags) }); err != nil {
		return &os.PathError{Op: "umount2", Path: target, Err: err}
	}
	return nil
}

// PivotRoot is pivot_root(2).
func PivotRoot(newRoot, putOld string) error {
	if err := retry(func() error { return unix.PivotRoot(newRoot, putOld) }); err != nil {
		return &os.PathError{Op: "pivot_root", Path: newRoot, Err: err}
	}
	return nil
}

// Openat2 is openat2(2); name is used in the error only.
func Openat2(dirfd int, path string, how *unix.OpenHow) (*os.File, error) {
	var fd int
	err := retry(func() (err error) { fd, err = unix.Openat2(dirfd, path, how); return err })
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Openat is openat(2) with O_CLOEXEC added.
func Openat(dirfd int, path string, flags int, mode uint32) (*os.File, error) {
	var fd int
	err := retry(func() (err error) { fd, err = unix.Openat(dirfd, path, flags|unix.O_CLOEXEC, mode); return err })
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Mknodat is mknodat(2).
func Mknodat(dirfd int, name string, mode uint32, dev uint64) error {
	if err := retry(func() error { return unix.Mknodat(dirfd, name, mode, int(dev)) }); err != nil {
		return &os.PathError{Op: "mknodat", Path: name, Err: err}
	}
	return nil
}

// Fchownat is fchownat(2) with AT_SYMLINK_NOFOLLOW.
func Fchownat(dirfd int, name string, uid, gid int) error {
	if err := retry(func() error { return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return &os.PathError{Op: "fchownat", Path: name, Err: err}
	}
	return nil
}

// Fchmodat is fchmodat(2).
func Fchmodat(dirfd int, name string, mode uint32) error {
	if err := retry(func() error { return unix.Fchmodat(dirfd, name, mode, 0) }); err != nil {
		return &os.PathError{Op: "fchmodat", Path: name, Err: err}
	}
	return nil
}

// Symlinkat is symlinkat(2).
func Symlinkat(target string, dirfd int, name string) error {
	if err := retry(func() error { return unix.Symlinkat(target, dirfd, name) }); err != nil {
		return &os.PathError{Op: "symlinkat", Path: name, Err: err}
	}
	return nil
}

// Unlinkat is unlinkat(2).
func Unlinkat(dirfd int, name string, flags int) error {
	if err := retry(func() error { return unix.Unlinkat(dirfd, name, flags) }); err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// Fstatfs is fstatfs(2).
func Fstatfs(f *os.File) (*unix.Statfs_t, error) {
	var st unix.Statfs_t
	if err := retry(func() error { return unix.Fstatfs(int(f.Fd()), &st) }); err != nil {
		return nil, &os.PathError{Op: "fstatfs", Path: f.Name(), Err: err}
	}
	return &st, nil
}

// Fstat is fstat(2).
func Fstat(f *os.File) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := retry(func() error { return unix.Fstat(int(f.Fd()), &st) }); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return &st, nil
}

// Prctl is prctl(2); op names the option in the error.
func Prctl(op string, option int, arg2, arg3, arg4, arg5 uintptr) error {
	if err := retry(func() error { return unix.Prctl(option, arg2, arg3, arg4, arg5) }); err != nil {
		return os.NewSyscallError("prctl "+op, err)
	}
	return nil
}

// Unshare is unshare(2).
func Unshare(flags int) error {
	if err := retry(func() error { return unix.Unshare(flags) }); err != nil {
		return os.NewSyscallError(fmt.Sprintf("unshare %#x", flags), err)
	}
	return nil
}

// Capset sets the calling thread's effective, permitted and inheritable
// capability sets (bit n = capability n), with the v3 (64-bit) header.
func Capset(effective, permitted, inheritable uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(effective), Permitted: uint32(permitted), Inheritable: uint32(inheritable)},
		{Effective: uint32(effective >> 32), Permitted: uint32(permitted >> 32), Inheritable: uint32(inheritable >> 32)},
	}
	if err := retry(func() error { return unix.Capset(&hdr, &data[0]) }); err != nil {
		return os.NewSyscallError("capset", err)
	}
	return nil
}

// Prlimit sets a resource limit of the calling process.
func Prlimit(resource int, soft, hard uint64) error {
	lim := unix.Rlimit{Cur: soft, Max: hard}
	if err := retry(func() error { return unix.Prlimit(0, resource, &lim, nil) }); err != nil {
		return os.NewSyscallError(fmt.Sprintf("prlimit %d", resource), err)
	}
	return nil
}

// FdPath is the magic link through which a mount can target an fd.
func FdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }
