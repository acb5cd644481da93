package setup

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// applyProcessAttrs sets what the spec says of one process that outlives
// execve and is per process, not per container: the scheduler and the I/O
// priority. The kernel keeps them per thread, so it must run on the thread
// that execs (the setup face's locked main thread), and while the
// capabilities are still the shim's: a real-time policy or a lower nice
// needs CAP_SYS_NICE, IOPRIO_CLASS_RT CAP_SYS_ADMIN or CAP_SYS_NICE. The
// init and every exec'd process go through it.
func applyProcessAttrs(p *spec.Process) error {
	if s := p.Scheduler; s != nil {
		attr := unix.SchedAttr{
			Policy:   s.Policy,
			Flags:    s.Flags,
			Nice:     s.Nice,
			Priority: s.Priority,
			Runtime:  s.Runtime,
			Deadline: s.Deadline,
			Period:   s.Period,
		}
		if err := linux.SchedSetattr(&attr); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("process.scheduler: the kernel refuses it: %w: %w", err, errdefs.ErrInvalidArgument)
			}
			// EPERM: a real-time policy in a cgroup without an rt
			// budget (cpu.rt_runtime_us), a deadline task with a
			// cpuset that is not a root domain, or a missing
			// CAP_SYS_NICE.
			return fmt.Errorf("process.scheduler: %w", err)
		}
	}
	if p.IOPriority != nil {
		if err := linux.IoprioSet(*p.IOPriority); err != nil {
			return fmt.Errorf("process.ioPriority: %w", err)
		}
	}
	return nil
}

// setPersonality applies linux.personality (LINUX, LINUX32) for the
// container's init. runc does it for the init only; an exec'd process
// gets what its spawner has.
func setPersonality(persona *uint32) error {
	if persona == nil {
		return nil
	}
	if err := linux.Personality(*persona); err != nil {
		return fmt.Errorf("linux.personality: %w", err)
	}
	return nil
}

// timeNSMinKernel is where execve started to move a process into the time
// namespace it unshared for its children (exec_task_namespaces, "fs/exec:
// switch timens when a task gets a new mm"), which is how the init gets
// into its time namespace without a process of its own in between.
var timeNSMinKernel = [2]int{6, 1}

// unshareTimeNS makes the new time namespace of the container, with its
// offsets, that the init enters at its execve. Offsets can only be written
// while no process is in the namespace (the kernel freezes them when the
// first one enters), which is why it cannot be a clone3 flag: clone3 puts
// the child into it at once. unshare(CLONE_NEWTIME) leaves the caller where
// it is and only sets the namespace for its children and (Linux 6.1 at the latest)
// for its next execve; no second process is needed.
func unshareTimeNS(offsets []spec.TimeOffset) error {
	ok, err := linux.KernelAtLeast(timeNSMinKernel[0], timeNSMinKernel[1])
	if err != nil {
		return fmt.Errorf("time namespace: %w", err)
	}
	if !ok {
		return fmt.Errorf("time namespace: needs Linux %d.%d or newer, where execve enters the namespace unshared before it: %w",
			timeNSMinKernel[0], timeNSMinKernel[1], errdefs.ErrNotImplemented)
	}
	if err := linux.Unshare(unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("time namespace: %w", err)
	}
	if len(offsets) == 0 {
		return nil
	}
	// One write: the kernel takes the whole set at once, one clock a
	// line, and freezes it at the first process that enters.
	var b strings.Builder
	for _, o := range offsets {
		b.WriteString(o.Clock + " " + strconv.FormatInt(o.Secs, 10) + " " + strconv.FormatUint(uint64(o.Nanosecs), 10) + "\n")
	}
	if err := writeProcFile("/proc/self/timens_offsets", b.String()); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ERANGE) {
			return fmt.Errorf("linux.timeOffsets: the kernel refuses them (out of range?): %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("linux.timeOffsets: %w", err)
	}
	return nil
}
