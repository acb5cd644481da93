package pidfd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrExited is returned when signalling a process that has exited.
var ErrExited = errors.New("process already finished")

// Process is a child created by Spawn, known only through its pidfd.
type Process struct {
	pid  int
	mode Mode
	// owned is the pidfd clone3 returned, open for the process's whole
	// life: in native mode the autokill pidfd, and closing it kills the
	// process. Only Close closes it.
	owned *ownedFD
	// f is a dup of owned for Go's poller (waiting, signalling, waitid).
	// The kernel acts on the last close of the open file both share, so
	// f's finalizer, should a bug let it run, cannot kill the process.
	f *os.File

	once sync.Once
	done chan struct{}
	exit Exit
	err  error
}

// Exit is how a process ended.
type Exit struct {
	// Status is the exit code, or 128+signal for a death by signal.
	Status int
	// Signal is the fatal signal, 0 when the process exited.
	Signal syscall.Signal
	At     time.Time
}

func newProcess(pid, fd int, mode Mode) (*Process, error) {
	// Non-blocking lets Go's poller watch the pidfd; waitid then answers
	// EAGAIN instead of blocking, which we never need.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl(O_NONBLOCK)", err)
	}
	owned := newOwnedFD(fd)
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		owned.Close()
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return &Process{pid: pid, mode: mode, owned: owned, f: os.NewFile(uintptr(dup), fmt.Sprintf("pidfd:%d", pid)), done: make(chan struct{})}, nil
}

// Pid returns the process's pid in the shim's pid namespace.
func (p *Process) Pid() int { return p.pid }

// Signal delivers sig through the pidfd: there is no pid to be reused.
func (p *Process) Signal(sig syscall.Signal) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if serr == unix.ESRCH {
		return ErrExited
	}
	if serr != nil {
		return os.NewSyscallError("pidfd_send_signal", serr)
	}
	return nil
}

// Done is closed once the process has exited and its status is known.
func (p *Process) Done() <-chan struct{} {
	p.once.Do(func() { go p.watch() })
	return p.done
}

// Wait blocks until the process exits or ctx ends.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.Done():
		return p.exit, p.err
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

func (p *Process) watch() {
	defer close(p.done)
	rc, err := p.f.SyscallConn()
	if err != nil {
		p.err = err
		return
	}
	// The pidfd polls readable once the process has exited.
	err = rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(pfd, 0)
		return perr == nil && n > 0
	})
	if err != nil {
		p.err = fmt.Errorf("watch pidfd %d: %w", p.pid, err)
		return
	}
	at := time.Now()
	var status unix.WaitStatus
	if p.mode.Native {
		status, err = p.exitInfo()
	} else {
		status, err = p.reap()
	}
	if err != nil {
		p.err = err
		return
	}
	p.exit = decode(status, at)
}

// exitInfo reads the status of an autoreaped process: waitid cannot, as
// there is no zombie to collect.
func (p *Process) exitInfo() (unix.WaitStatus, error) {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	// The pidfd may turn readable a moment before the exit info is
	// published; the gap is a few instructions, so poll briefly.
	for i := 0; ; i++ {
		var info unix.PidfdInfo
		info.Mask = unix.PIDFD_INFO_EXIT
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			ierr = unix.IoctlPidfdInfo(int(fd), &info)
		}); err != nil {
			return 0, err
		}
		if ierr != nil && ierr != unix.ESRCH {
			return 0, os.NewSyscallError("ioctl(PIDFD_GET_INFO)", ierr)
		}
		if ierr == nil && info.Mask&unix.PIDFD_INFO_EXIT != 0 {
			return unix.WaitStatus(info.Exit_code), nil
		}
		if i > 1000 {
			return 0, fmt.Errorf("pidfd %d: PIDFD_GET_INFO has no exit info after exit", p.pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// reap collects the zombie a fallback-mode child leaves.
func (p *Process) reap() (unix.WaitStatus, error) {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info unix.Siginfo
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for {
			// __WALL: our children have exit_signal 0 ("clone children").
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WALL, nil)
			if werr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, os.NewSyscallError("waitid(P_PIDFD)", werr)
	}
	return siginfoStatus(&info), nil
}

// Close drops the shim's pidfd. In native mode that kills a live process.
func (p *Process) Close() error {
	ferr := p.f.Close()
	if err := p.owned.Close(); err != nil {
		return err
	}
	return ferr
}

func decode(ws unix.WaitStatus, at time.Time) Exit {
	switch {
	case ws.Signaled():
		return Exit{Status: 128 + int(ws.Signal()), Signal: ws.Signal(), At: at}
	default:
		return Exit{Status: ws.ExitStatus(), At: at}
	}
}

// Open returns a second pidfd of the process, one that is never an
// autokill pidfd (pidfd_open makes a new file): it may be handed to another
// process, which then cannot keep this one alive by holding it. It fails
// with ErrExited once the process has exited, so the new pidfd can never
// name a process that reused the pid.
func (p *Process) Open() (*os.File, error) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return nil, ErrExited
		}
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	// Still running after the open: the pid named our process when it
	// was opened (it cannot be reused before our pidfd reports the exit).
	if p.exited() {
		unix.Close(fd)
		return nil, ErrExited
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", p.pid)), nil
}

// exited polls the pidfd without blocking.
func (p *Process) exited() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	readable := true
	if err := rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(pfd, 0)
		readable = perr != nil || n > 0
	}); err != nil {
		return true
	}
	return readable
}
