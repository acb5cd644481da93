package setup

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// ptmxMajor, ptmxMinor: the pty multiplexer (/dev/ptmx, /dev/pts/ptmx).
const ptmxMajor, ptmxMinor = 5, 2

// openConsole allocates a pty from the devpts of the root we are in (the
// container's: after pivot_root, or after joining its mount namespace),
// makes its peer our controlling terminal and stdio, and returns the
// master for the daemon. The slave is opened from the master
// (TIOCGPTPEER), never by a /dev/pts path the container could swap.
func openConsole(size *spec.ConsoleSize) (*os.File, error) {
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
func sendConsole(size *spec.ConsoleSize, send func(*os.File) error) error {
	master, err := openConsole(size)
	if err != nil {
		return err
	}
	defer master.Close()
	if err := send(master); err != nil {
		return fmt.Errorf("terminal: hand the pty to the daemon: %w", err)
	}
	return nil
}
