package pidfd

/*
#include "spawn_linux.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// launchTimeoutMS bounds the wait for the launcher: it makes a few system
// calls and one clone3, so only a stopped or starved launcher comes near it.
const launchTimeoutMS = 10000

// launcher is the daemon's side of a launch: its end of the socket the
// launcher answers on, and the launcher's end, closed once clone3 is done.
type launcher struct {
	ours   *os.File
	theirs int
}

// setLaunch turns s into a launcher's spawn: the launcher is a plain child
// of the daemon in no container cgroup (it unshares the namespaces), and the
// init it clones gets the container's flags and cgroup.
func setLaunch(s *C.struct_ak_spawn, mode Mode) (*launcher, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	l := &launcher{ours: os.NewFile(uintptr(fds[0]), "launcher"), theirs: fds[1]}
	s.launch = 1
	s.launch_fd = C.int(l.theirs)
	flags := uint64(unix.CLONE_PIDFD)
	if mode.Native {
		flags |= unix.CLONE_AUTOREAP | unix.CLONE_PIDFD_AUTOKILL
	} else {
		// The kernel refuses CLONE_PARENT with CLONE_AUTOREAP: fallback only.
		flags |= unix.CLONE_PARENT
	}
	if s.cgroup_fd >= 0 {
		flags |= unix.CLONE_INTO_CGROUP
		s.launch_cgroup_fd = s.cgroup_fd
		s.cgroup_fd = -1
		s.flags &^= C.uint64_t(unix.CLONE_INTO_CGROUP)
	}
	s.launch_flags = C.uint64_t(flags)
	return l, nil
}

func (l *launcher) closeTheirs() {
	if l.theirs >= 0 {
		unix.Close(l.theirs)
		l.theirs = -1
	}
}

func (l *launcher) close() {
	l.closeTheirs()
	l.ours.Close()
}

// launched takes the init's pidfd from the launcher whose own pidfd is lfd,
// and disposes of the launcher: killed if it has not answered in time,
// reaped in fallback mode, released (AUTOREAP) in native mode.
func (l *launcher) launched(lfd int, mode Mode) (*Process, error) {
	l.closeTheirs()
	initFD, err := l.receive()
	if err != nil {
		_ = unix.PidfdSendSignal(lfd, unix.SIGKILL, nil, 0)
	}
	if !mode.Native {
		var info unix.Siginfo
		for {
			werr := unix.Waitid(unix.P_PIDFD, lfd, &info, unix.WEXITED|unix.WALL, nil)
			if werr != unix.EINTR {
				break
			}
		}
	}
	// Native: the launcher's pidfd is an autokill one; closing it is a
	// SIGKILL to a launcher that is somehow still there, and it is
	// autoreaped. Either way its copy of the init's pidfd goes with it.
	unix.Close(lfd)
	if err != nil {
		return nil, err
	}
	pid, err := pidOfPidfd(initFD)
	if err != nil {
		// The only copy: closing it kills the init in native mode; in
		// fallback mode it is not past its setup face's first read, which
		// sees EOF once the caller closes the sync socket.
		unix.Close(initFD)
		return nil, err
	}
	return newProcess(pid, initFD, mode)
}

// receive reads the launcher's one message: the init's pidfd, or the
// trampoline's failure report.
func (l *launcher) receive() (int, error) {
	pfd := []unix.PollFd{{Fd: int32(l.ours.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, launchTimeoutMS)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("launcher: %w", os.NewSyscallError("poll", err))
		}
		if n == 0 {
			return -1, fmt.Errorf("launcher: no answer in %d ms", launchTimeoutMS)
		}
		break
	}
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	// CMSG_CLOEXEC: the init's pidfd is the autokill one in native mode and
	// must never cross another exec.
	n, oobn, _, _, err := unix.Recvmsg(int(l.ours.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("launcher: %w", os.NewSyscallError("recvmsg", err))
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return -1, fmt.Errorf("launcher: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if len(fds) == 1 && n == 1 && buf[0] == 'p' {
		return fds[0], nil
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if n == 0 {
		return -1, errors.New("launcher: exited without an init")
	}
	var fail struct {
		Kind  string `json:"kind"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(buf[:n], &fail); err == nil && fail.Kind == "fail" {
		return -1, errors.New(fail.Error)
	}
	return -1, fmt.Errorf("launcher: unexpected answer %q", buf[:n])
}

// pidOfPidfd reads a pidfd's pid, in the daemon's pid namespace, from the
// kernel (fdinfo exists on every kernel we run on, PIDFD_GET_INFO only from
// 6.13): the launcher's word is not needed.
func pidOfPidfd(fd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, fmt.Errorf("launcher: pid of the init's pidfd: %w", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Pid:")); ok {
			pid, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || pid <= 0 {
				// -1: already exited and reaped; 0: not in our pid namespace.
				return 0, fmt.Errorf("launcher: the init's pidfd names pid %q", bytes.TrimSpace(v))
			}
			return pid, nil
		}
	}
	return 0, errors.New("launcher: fd is not a pidfd")
}
