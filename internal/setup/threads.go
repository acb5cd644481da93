package setup

/*
#include <stdlib.h>
#include "threads_linux.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capability sets, the bounding set and keepcaps belong to each thread, and
// the setup face is a Go program with several. A capability dropped on the
// main thread alone would leave the other threads of the same address space
// with the host's privileges, one ptrace or /proc/PID/mem write away for
// whoever reaches the main thread. So every such change is a broadcast: the
// same calls run on every thread (threads_linux.c).

// sysOp is one system call of a broadcast.
type sysOp struct {
	name string
	nr   uintptr
	args [6]uintptr
}

func prctlOp(name string, option int, arg2, arg3 uintptr) sysOp {
	return sysOp{name: "prctl " + name, nr: unix.SYS_PRCTL, args: [6]uintptr{uintptr(option), arg2, arg3}}
}

// taskDir is <procfs>/self/task of a procfs instance the setup face made
// itself and never attached: the container cannot have mounted over it,
// and it lists thread ids in the setup face's own pid namespace, which is
// what tgkill takes.
var taskDir *os.File

func openTaskDir() (*os.File, error) {
	if taskDir != nil {
		return taskDir, nil
	}
	proc, release, err := privateProcfs()
	if err != nil {
		return nil, err
	}
	defer release()
	mfd := int(proc.Fd())
	fd, err := unix.Openat(mfd, "self/task", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: "<private procfs>/self/task", Err: err}
	}
	taskDir = os.NewFile(uintptr(fd), "<private procfs>/self/task")
	return taskDir, nil
}

// closeTaskDir drops the private procfs once the credentials are final: a
// directory fd left open until exec is one more thing a process.cwd of
// /proc/self/fd/N could point at (CVE-2024-21626).
func closeTaskDir() {
	if taskDir != nil {
		taskDir.Close()
		taskDir = nil
	}
}

// broadcast runs ops, in order, on every thread of the process.
func broadcast(ops []sysOp) error {
	if len(ops) == 0 {
		return nil
	}
	if len(ops) > C.AK_BC_MAX_OPS {
		return fmt.Errorf("broadcast: %d system calls, at most %d", len(ops), C.AK_BC_MAX_OPS)
	}
	dir, err := openTaskDir()
	if err != nil {
		return fmt.Errorf("list the setup face's threads: %w", err)
	}
	// C memory: the signal handlers read it on other threads.
	cops := (*C.struct_ak_bc_op)(C.calloc(C.size_t(len(ops)), C.size_t(unsafe.Sizeof(C.struct_ak_bc_op{}))))
	defer C.free(unsafe.Pointer(cops))
	arr := unsafe.Slice(cops, len(ops))
	for i, o := range ops {
		arr[i].nr = C.long(o.nr)
		for j, a := range o.args {
			arr[i].args[j] = C.long(a)
		}
	}
	var failed, cerr C.int
	if C.ak_broadcast(C.int(dir.Fd()), cops, C.int(len(ops)), &failed, &cerr) == 0 {
		return nil
	}
	errno := unix.Errno(cerr)
	if failed < 0 {
		return fmt.Errorf("apply credentials to every thread: %w", os.NewSyscallError("thread broadcast", errno))
	}
	return os.NewSyscallError(ops[failed].name, errno)
}

// capsetOp sets effective, permitted and inheritable (bit n = capability n),
// with the v3 (64-bit) header in C memory that outlives the broadcast; free
// releases it.
func capsetOp(effective, permitted, inheritable uint64) (op sysOp, free func()) {
	hdr := (*unix.CapUserHeader)(C.calloc(1, C.size_t(unsafe.Sizeof(unix.CapUserHeader{}))))
	data := (*[2]unix.CapUserData)(C.calloc(2, C.size_t(unsafe.Sizeof(unix.CapUserData{}))))
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	data[0] = unix.CapUserData{Effective: uint32(effective), Permitted: uint32(permitted), Inheritable: uint32(inheritable)}
	data[1] = unix.CapUserData{Effective: uint32(effective >> 32), Permitted: uint32(permitted >> 32), Inheritable: uint32(inheritable >> 32)}
	op = sysOp{
		name: fmt.Sprintf("capset eff %#x prm %#x inh %#x", effective, permitted, inheritable),
		nr:   unix.SYS_CAPSET,
		args: [6]uintptr{uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data))},
	}
	return op, func() { C.free(unsafe.Pointer(hdr)); C.free(unsafe.Pointer(data)) }
}

// setNonDumpable makes the process non-dumpable: ptrace, /proc/PID/mem and
// the /proc/PID/{root,cwd,fd} links then need CAP_SYS_PTRACE, which no
// container has, while the setup face sits in the container's pid namespace
// with the host's privileges. Dumpability is per process, not per thread.
// The user's execve restores it (for a readable, non-setuid binary), as
// with runc.
func setNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_DUMPABLE 0", err)
	}
	return nil
}
