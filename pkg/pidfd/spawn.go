package pidfd

/*
#include <stdlib.h>
#include "spawn_linux.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SpawnAttr describes the child clone3 creates.
type SpawnAttr struct {
	// Exe is executed with execveat(AT_EMPTY_PATH); it may be an O_PATH fd.
	Exe *os.File
	// Args and Env of the child.
	Args []string
	Env  []string
	// Cloneflags are the CLONE_NEW* flags of namespaces to create.
	Cloneflags uint64
	// Setns are namespaces the child joins before exec (not pid: see PidNS).
	Setns []Namespace
	// PidNS, when set, is a pid namespace the child is created in.
	PidNS *os.File
	// Cgroup, when set, is a cgroup v2 directory the child starts in.
	Cgroup *os.File
	// Stdio become the child's fds 0, 1 and 2, Sync its fd 3.
	Stdio [3]*os.File
	Sync  *os.File
	// Extra become the child's fds 4, 5, ... in order, and are the only
	// other fds that cross its execve (at most four).
	Extra []*os.File
	// UserNS: Cloneflags has CLONE_NEWUSER, and the child waits for one
	// packet on Sync (the daemon wrote its maps) before it becomes root of
	// the namespace and execs. A joined user namespace is the first of
	// Setns, with the namespaces to create in Unshare instead of
	// Cloneflags (then they belong to it), and sets BecomeRoot.
	UserNS     bool
	BecomeRoot bool
	Unshare    uint64
	// Holder: the child only joins Setns and unshares Unshare, writes one
	// byte on Sync, waits for the other end to close and exits, never
	// exec'ing: a process that shows a joined user namespace's maps.
	Holder bool
	// Launch: the child only joins Setns and unshares Unshare (CLONE_NEWPID
	// included), then clones the real child with the daemon's flags, passes
	// its pidfd back and exits: how an init becomes pid 1 of a pid namespace
	// owned by a user namespace joined by path (see launch in
	// spawn_linux.c). The returned Process is that init.
	Launch bool
}

// Namespace is a namespace to join: an fd of /proc/PID/ns/* (or a bind
// mount of one) and the CLONE_NEW* type it must have. The type is enforced
// twice: CheckNamespace gives a clear error before clone3, and the child's
// setns is given the type so that the kernel refuses a mismatch even if the
// file changed in between.
type Namespace struct {
	File *os.File
	Type uint64
}

// CheckNamespace verifies that f is a namespace of type want (CLONE_NEW*),
// with the NS_GET_NSTYPE ioctl on the open fd (no path lookup).
func CheckNamespace(f *os.File, want uint64) error {
	got, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("%s: not a namespace: %w", f.Name(), os.NewSyscallError("ioctl(NS_GET_NSTYPE)", err))
	}
	if uint64(got) != want {
		return fmt.Errorf("%s: is a %s namespace, not a %s namespace", f.Name(), nsTypeName(uint64(got)), nsTypeName(want))
	}
	return nil
}

func nsTypeName(t uint64) string {
	switch t {
	case unix.CLONE_NEWNS:
		return "mount"
	case unix.CLONE_NEWPID:
		return "pid"
	case unix.CLONE_NEWNET:
		return "network"
	case unix.CLONE_NEWIPC:
		return "ipc"
	case unix.CLONE_NEWUTS:
		return "uts"
	case unix.CLONE_NEWUSER:
		return "user"
	case unix.CLONE_NEWCGROUP:
		return "cgroup"
	case unix.CLONE_NEWTIME:
		return "time"
	}
	return fmt.Sprintf("%#x", t)
}

// ErrSpawn wraps a failed clone3.
var ErrSpawn = errors.New("clone3 failed")

// spawner runs every clone3 on one OS thread that never exits: in fallback
// mode PR_SET_PDEATHSIG fires when the *thread* that created the child exits,
// and joining a pid namespace changes that thread's pid_for_children.
type spawnReq struct {
	attr  *SpawnAttr
	mode  Mode
	probe uint64
	reply chan spawnResult
}

type spawnResult struct {
	p   *Process
	err error
}

var (
	spawnCh    = make(chan spawnReq)
	startSpawn = sync.OnceFunc(func() { go spawnLoop() })
)

func spawnLoop() {
	runtime.LockOSThread()
	// Never unlocked: the thread must outlive every child it creates.
	var ownPidNS *os.File
	for req := range spawnCh {
		if req.probe != 0 {
			req.reply <- spawnResult{err: probeClone(req.probe)}
			continue
		}
		if req.attr.PidNS != nil && ownPidNS == nil {
			f, err := os.Open("/proc/thread-self/ns/pid")
			if err != nil {
				req.reply <- spawnResult{err: fmt.Errorf("open own pid namespace: %w", err)}
				continue
			}
			ownPidNS = f
		}
		p, err := spawnLocked(req.attr, req.mode, ownPidNS)
		req.reply <- spawnResult{p, err}
	}
}

// Spawn creates the child with clone3. In native mode its pidfd is the
// autokill one: closing the returned Process's last reference kills it.
func Spawn(attr *SpawnAttr) (*Process, error) {
	mode := Probe()
	startSpawn()
	reply := make(chan spawnResult, 1)
	spawnCh <- spawnReq{attr: attr, mode: mode, reply: reply}
	r := <-reply
	return r.p, r.err
}

func spawnLocked(attr *SpawnAttr, mode Mode, ownPidNS *os.File) (*Process, error) {
	if attr.PidNS != nil {
		if err := unix.Setns(int(attr.PidNS.Fd()), unix.CLONE_NEWPID); err != nil {
			return nil, fmt.Errorf("join pid namespace: %w", os.NewSyscallError("setns", err))
		}
		defer func() {
			if err := unix.Setns(int(ownPidNS.Fd()), unix.CLONE_NEWPID); err != nil {
				// A spawner thread stuck in a container's pid namespace
				// would create every later container inside it.
				panic(fmt.Sprintf("pidfd: cannot return the spawner thread to its pid namespace: %v", err))
			}
		}()
	}

	var s C.struct_ak_spawn
	s.flags = C.uint64_t(unix.CLONE_PIDFD | attr.Cloneflags)
	if mode.Native {
		s.flags |= C.uint64_t(unix.CLONE_AUTOREAP | unix.CLONE_PIDFD_AUTOKILL)
	} else {
		s.pdeathsig = C.int(unix.SIGKILL)
	}
	s.cgroup_fd = -1
	s.launch_cgroup_fd = -1
	if attr.Cgroup != nil {
		s.flags |= unix.CLONE_INTO_CGROUP
		s.cgroup_fd = C.int(attr.Cgroup.Fd())
	}
	var launch *launcher
	if attr.Launch {
		if attr.PidNS != nil || attr.UserNS || attr.Holder || attr.Cloneflags != 0 {
			return nil, fmt.Errorf("pidfd: a launcher unshares its namespaces; it cannot join a pid namespace, clone namespaces or be a holder")
		}
		var err error
		if launch, err = setLaunch(&s, mode); err != nil {
			return nil, err
		}
		defer launch.close()
	}
	free := setExec(&s, attr.Exe, attr.Stdio, attr.Sync, attr.Args, attr.Env)
	defer free()
	if attr.UserNS {
		s.userns_wait, s.become_root = 1, 1
	}
	if attr.BecomeRoot {
		s.become_root = 1
	}
	if n := len(attr.Extra); n > 0 {
		if n > 4 {
			return nil, fmt.Errorf("pidfd: %d extra fds for the child, at most 4", n)
		}
		buf := (*C.int)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.int(0)))))
		defer C.free(unsafe.Pointer(buf))
		arr := unsafe.Slice(buf, n)
		for i, f := range attr.Extra {
			arr[i] = C.int(f.Fd())
		}
		s.extra_fds = &arr[0]
		s.n_extra = C.int(n)
	}
	s.unshare = C.uint64_t(attr.Unshare)
	if attr.Holder {
		s.holder = 1
	}

	if n := len(attr.Setns); n > 0 {
		// One allocation for both arrays: fds, then types.
		buf := (*C.int)(C.malloc(C.size_t(2*n) * C.size_t(unsafe.Sizeof(C.int(0)))))
		defer C.free(unsafe.Pointer(buf))
		arr := unsafe.Slice(buf, 2*n)
		for i, ns := range attr.Setns {
			if ns.Type == 0 || ns.Type == unix.CLONE_NEWPID || (ns.Type == unix.CLONE_NEWUSER && i != 0) {
				return nil, fmt.Errorf("pidfd: setns of %s: type %#x cannot be joined by the child", ns.File.Name(), ns.Type)
			}
			arr[i] = C.int(ns.File.Fd())
			arr[n+i] = C.int(ns.Type)
		}
		s.ns_fds = &arr[0]
		s.ns_types = &arr[n]
		s.n_ns = C.int(n)
	}

	var fd, cerr C.int
	pid := C.ak_spawn(&s, &fd, &cerr)
	runtime.KeepAlive(attr)
	if pid < 0 {
		return nil, fmt.Errorf("%w: %w", ErrSpawn, os.NewSyscallError("clone3", unix.Errno(cerr)))
	}
	if launch != nil {
		return launch.launched(int(fd), mode)
	}
	return newProcess(int(pid), int(fd), mode)
}

// probeClone asks clone3 for flags with a child that exits at once.
func probeClone(flags uint64) error {
	var s C.struct_ak_spawn
	s.flags = C.uint64_t(flags)
	s.cgroup_fd = -1
	s.probe = 1
	var fd, cerr C.int
	pid := C.ak_spawn(&s, &fd, &cerr)
	if pid < 0 {
		return os.NewSyscallError("clone3", unix.Errno(cerr))
	}
	if flags&unix.CLONE_PIDFD != 0 {
		// In native mode closing the autokill pidfd is all the cleanup the
		// autoreaped child needs.
		if flags&unix.CLONE_AUTOREAP == 0 {
			var info unix.Siginfo
			_ = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WALL, nil)
		}
		unix.Close(int(fd))
	}
	return nil
}

// setExec fills what every child of the trampoline gets, container init or
// helper: the binary, its fds 0-3, argv and envp (in C memory, released by
// the returned func once clone3 is done).
func setExec(s *C.struct_ak_spawn, exe *os.File, stdio [3]*os.File, sync *os.File, args, env []string) (free func()) {
	s.exe_fd = C.int(exe.Fd())
	for i, f := range stdio {
		s.stdio[i] = C.int(f.Fd())
	}
	s.sync_fd = C.int(sync.Fd())
	argv := cStrings(args)
	envp := cStrings(env)
	s.argv = &argv[0]
	s.envp = &envp[0]
	return func() { freeCStrings(argv); freeCStrings(envp) }
}

// cStrings builds a NULL-terminated array in C memory: cgo forbids passing
// Go memory that holds pointers.
func cStrings(ss []string) []*C.char {
	p := (**C.char)(C.calloc(C.size_t(len(ss)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	out := unsafe.Slice(p, len(ss)+1)
	for i, s := range ss {
		out[i] = C.CString(s)
	}
	return out
}

func freeCStrings(cs []*C.char) {
	for _, c := range cs {
		if c != nil {
			C.free(unsafe.Pointer(c))
		}
	}
	C.free(unsafe.Pointer(&cs[0]))
}
