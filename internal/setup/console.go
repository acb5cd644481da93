package setup

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// ptmxMajor, ptmxMinor: the pty multiplexer (/dev/ptmx, /dev/pts/ptmx).
const ptmxMajor, ptmxMinor = 5, 2

// openConsole allocates a pty from the devpts of the root we are in (the
// container's: after pivot_root, or after joining its mount namespace),
// makes its peer our controlling terminal and stdio, and returns the
// master for the daemon. The slave is opened from the master
// (TIOCGPTPEER), never by a /dev/pts path the container could swap.
// With devConsole (the init), the slave is also bind-mounted on
// /dev/console, as the runtime spec asks of a process with a terminal.
func openConsole(size *spec.ConsoleSize, devConsole bool) (*os.File, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("terminal: open /dev/ptmx: %w", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	ok := false
	defer func() {
		if !ok {
			master.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("fstat /dev/ptmx", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != ptmxMajor || unix.Minor(st.Rdev) != ptmxMinor {
		return nil, fmt.Errorf("terminal: /dev/ptmx is not the pty multiplexer (mode %#o, device %d:%d)", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("ioctl(TIOCSPTLCK)", err))
	}
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws); err != nil {
			return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("ioctl(TIOCSWINSZ)", err))
		}
	}
	peer, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("ioctl(TIOCGPTPEER)", errno))
	}
	slave := int(peer)
	defer unix.Close(slave)
	if devConsole {
		if err := mountConsole(slave); err != nil {
			return nil, fmt.Errorf("terminal: /dev/console: %w", err)
		}
	}
	// A session of its own, whose controlling terminal the pty is: job
	// control and ^C reach the container's processes, not the daemon's.
	if _, err := unix.Setsid(); err != nil {
		return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("setsid", err))
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("ioctl(TIOCSCTTY)", err))
	}
	for i := 0; i <= 2; i++ {
		if err := unix.Dup3(slave, i, 0); err != nil {
			return nil, fmt.Errorf("terminal: %w", os.NewSyscallError("dup3", err))
		}
	}
	ok = true
	return master, nil
}

// sendConsole allocates the terminal and hands its master to the daemon;
// the process keeps only the slave, as its stdio.
func sendConsole(size *spec.ConsoleSize, devConsole bool, send func(*os.File) error) error {
	master, err := openConsole(size, devConsole)
	if err != nil {
		return err
	}
	defer master.Close()
	if err := send(master); err != nil {
		return fmt.Errorf("terminal: hand the pty to the daemon: %w", err)
	}
	return nil
}

// mountConsole binds the pty slave (by its fd: open_tree of the fd, no
// /dev/pts path looked up) onto /dev/console of the root we are in. /dev
// must be reached without symlinks; a console entry that is a symlink is
// replaced, as the image's /dev/ptmx is, so the bind never lands
// elsewhere.
func mountConsole(slave int) error {
	dev, err := linux.Openat2(unix.AT_FDCWD, "/dev", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return err
	}
	defer dev.Close()
	target, err := consoleTarget(dev)
	if err != nil {
		return err
	}
	defer target.Close()
	node, err := linux.OpenTree(slave, "", unix.OPEN_TREE_CLONE|unix.AT_EMPTY_PATH)
	if err != nil {
		return err
	}
	defer node.Close()
	return linux.MoveMount(node, target)
}

// consoleTarget returns an O_PATH handle on /dev/console, a regular file or
// a device (never a symlink), creating an empty file when it is missing.
func consoleTarget(dev *os.File) (*os.File, error) {
	// At most: unlink a symlink, create the file, open it.
	for range 3 {
		f, err := linux.Openat(int(dev.Fd()), "console", unix.O_PATH|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) {
			c, cerr := linux.Openat(int(dev.Fd()), "console", unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY, 0o600)
			if cerr != nil && !errors.Is(cerr, unix.EEXIST) {
				return nil, cerr
			}
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := linux.Fstat(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFCHR:
			return f, nil
		case unix.S_IFLNK:
			f.Close()
			if err := linux.Unlinkat(int(dev.Fd()), "console", 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return nil, err
			}
		default:
			f.Close()
			return nil, fmt.Errorf("the image's /dev/console is neither a file nor a device (mode %#o)", st.Mode)
		}
	}
	return nil, errors.New("/dev/console keeps changing under us")
}
