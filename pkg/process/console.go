package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// consoleDrain bounds how long an exit waits for its terminal's output:
// until every holder of the pty's slave is gone (EIO), which for the init
// is at once (its pid namespace or its leftovers die with it), but a
// background process of an exec may keep it open.
const consoleDrain = 2 * time.Second

// console copies between a process's pty master and containerd's IO:
// stdin fifo → master, master → stdout.
type console struct {
	master    *os.File
	done      chan struct{} // closed once the output copy has ended
	closeOnce sync.Once
}

// ptyMaster checks that an fd the setup face sent is a pty master.
func ptyMaster(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 {
		return fmt.Errorf("the console the container sent is not a pty master (device %d:%d): %w", unix.Major(st.Rdev), unix.Minor(st.Rdev), errdefs.ErrInvalidArgument)
	}
	if _, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPTN); err != nil {
		return fmt.Errorf("the console the container sent is not a pty master: %w", os.NewSyscallError("ioctl(TIOCGPTN)", err))
	}
	return nil
}

// pollable returns a non-blocking copy of f registered with Go's poller.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// startConsole takes the master and the process's IO (in may be nil) and
// copies until the slave side is closed by all. On success it owns out.
func startConsole(ctx context.Context, id string, master, in, out *os.File) (*console, error) {
	if err := ptyMaster(master); err != nil {
		return nil, err
	}
	m, err := pollable(master)
	if err != nil {
		return nil, err
	}
	master.Close()
	c := &console{master: m, done: make(chan struct{})}
	if in != nil {
		r, err := pollable(in)
		if err != nil {
			m.Close()
			return nil, err
		}
		go func() {
			defer r.Close()
			if _, err := io.Copy(m, fifoReader{r}); err != nil && !errors.Is(err, os.ErrClosed) {
				log.G(ctx).WithError(err).WithField("id", id).Warn("terminal input")
				return
			}
			// The end of input (CloseIO, then containerd's writer gone):
			// the terminal is hung up, as a terminal whose user has gone
			// is: the session gets SIGHUP (containerd's runc shim closes
			// its console the same way).
			c.close()
		}()
	}
	go func() {
		defer close(c.done)
		if _, err := io.Copy(out, ptyReader{m}); err != nil && !errors.Is(err, os.ErrClosed) {
			log.G(ctx).WithError(err).WithField("id", id).Warn("terminal output")
		}
		// The last writer of containerd's stdout: its reader sees EOF now,
		// not only at Delete (ctr 2.4's exec waits for that EOF before it
		// deletes the process).
		out.Close()
	}()
	return c, nil
}

// resize sets the terminal's size.
func (c *console) resize(width, height uint32) error {
	ws := &unix.Winsize{Row: uint16(height), Col: uint16(width)}
	rc, err := c.master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return err
	}
	return os.NewSyscallError("ioctl(TIOCSWINSZ)", ierr)
}

// drain waits (bounded) for the output copy to end, so that what the
// process wrote reaches containerd before its exit is published.
func (c *console) drain() {
	select {
	case <-c.done:
	case <-time.After(consoleDrain):
	}
}

func (c *console) close() {
	c.closeOnce.Do(func() { c.master.Close() })
}

// ptyReader: a master whose slave every process has closed reads EIO.
type ptyReader struct{ f *os.File }

func (r ptyReader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if errors.Is(err, syscall.EIO) {
		return n, io.EOF
	}
	return n, err
}

// fifoReader reads a fifo that containerd may open for writing only
// after us: read(2) answers EOF while no writer has come yet, poll(2)
// does not (POLLHUP only once a writer has come and gone), so we wait for
// poll to say there is something.
type fifoReader struct{ f *os.File }

func (r fifoReader) Read(b []byte) (n int, err error) {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, 0); err != nil {
			return err != unix.EINTR
		}
		if p[0].Revents == 0 {
			return false
		}
		n, rerr = unix.Read(int(fd), b)
		return rerr != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
