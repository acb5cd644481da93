package pidfd

/*
#include "spawn_linux.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// HelperAttr describes a helper process of the daemon (the crash guard):
// unlike a container's init it must outlive the daemon, so it gets neither
// CLONE_PIDFD_AUTOKILL nor PR_SET_PDEATHSIG, and no namespace or cgroup of
// any container.
type HelperAttr struct {
	// Exe is executed with execveat(AT_EMPTY_PATH); it may be an O_PATH fd.
	Exe  *os.File
	Args []string
	Env  []string
	// Stdio become the child's fds 0, 1 and 2, Conn its fd 3; every other
	// fd is closed on exec by the trampoline.
	Stdio [3]*os.File
	Conn  *os.File
}

// SpawnHelper starts a helper with clone3(CLONE_PIDFD, exit_signal 0): the
// same trampoline as the containers' inits (signals reset, fds above 3
// close-on-exec), without the flags that tie a child's life to the daemon.
// Its pidfd is a plain one: closing it kills nothing. The child is reaped
// with waitid(P_PIDFD) in both modes, as it is not autoreaped.
//
// It does not go through the spawner thread: without PDEATHSIG the creating
// thread's life does not matter, and that thread may be sitting in a
// container's pid namespace.
func SpawnHelper(attr *HelperAttr) (*Process, error) {
	var s C.struct_ak_spawn
	s.flags = C.uint64_t(unix.CLONE_PIDFD)
	s.cgroup_fd = -1
	free := setExec(&s, attr.Exe, attr.Stdio, attr.Conn, attr.Args, attr.Env)
	defer free()

	var fd, cerr C.int
	pid := C.ak_spawn(&s, &fd, &cerr)
	runtime.KeepAlive(attr)
	if pid < 0 {
		return nil, fmt.Errorf("%w: %w", ErrSpawn, os.NewSyscallError("clone3", unix.Errno(cerr)))
	}
	return newProcess(int(pid), int(fd), Mode{Native: false, Reason: "helper: not autoreaped"})
}
