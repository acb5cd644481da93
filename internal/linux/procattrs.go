package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The process attributes below are per thread in the kernel (task_struct):
// each call acts on the calling thread only, and execve keeps them, so the
// setup face makes them on the thread that execs.

// SchedSetattr is sched_setattr(2) on the calling thread.
func SchedSetattr(attr *unix.SchedAttr) error {
	if err := retry(func() error { return unix.SchedSetAttr(0, attr, 0) }); err != nil {
		return os.NewSyscallError(fmt.Sprintf("sched_setattr(policy %d, flags %#x, nice %d, priority %d)",
			attr.Policy, attr.Flags, attr.Nice, attr.Priority), err)
	}
	return nil
}

// ioprioWhoProcess is IOPRIO_WHO_PROCESS (linux/ioprio.h); with who 0 it
// names the calling thread.
const ioprioWhoProcess = 1

// IoprioSet is ioprio_set(IOPRIO_WHO_PROCESS, 0, prio): the I/O priority of
// the calling thread.
func IoprioSet(prio int) error {
	err := retry(func() error {
		_, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, uintptr(prio))
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return os.NewSyscallError(fmt.Sprintf("ioprio_set(%#x)", prio), err)
	}
	return nil
}

// Personality is personality(2) for the calling thread.
func Personality(persona uint32) error {
	err := retry(func() error {
		// The call returns the previous persona, never an error value
		// for a valid one; -1 with errno on failure.
		r, _, e := unix.Syscall(unix.SYS_PERSONALITY, uintptr(persona), 0, 0)
		if int32(r) == -1 && e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return os.NewSyscallError(fmt.Sprintf("personality(%#x)", persona), err)
	}
	return nil
}

// KernelAtLeast says whether the running kernel is major.minor or newer.
func KernelAtLeast(major, minor int) (bool, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, os.NewSyscallError("uname", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false, fmt.Errorf("kernel release %q: not major.minor", rel)
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(digits(parts[1]))
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("kernel release %q: not major.minor", rel)
	}
	return maj > major || maj == major && min >= minor, nil
}

// digits is the leading run of decimal digits of s.
func digits(s string) string {
	for i, r := range s {
		if r < '0' || r > '9' {
			return s[:i]
		}
	}
	return s
}
