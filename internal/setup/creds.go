package setup

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// capsMask keeps the bits of the capabilities the kernel knows.
func capsMask(last uint) uint64 {
	if last >= 63 {
		return ^uint64(0)
	}
	return 1<<(last+1) - 1
}

func setRlimits(rl []spec.Rlimit) error {
	for _, r := range rl {
		if err := linux.Prlimit(r.Resource, r.Soft, r.Hard); err != nil {
			return fmt.Errorf("%s soft %d hard %d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// dropBoundingSetOps drops from the bounding set every capability not in
// keep. It needs CAP_SETPCAP, so it runs before the uid change.
func dropBoundingSetOps(keep uint64, last uint) []sysOp {
	var ops []sysOp
	for c := uint(0); c <= last; c++ {
		if keep&(1<<c) == 0 {
			ops = append(ops, prctlOp(fmt.Sprintf("PR_CAPBSET_DROP %d", c), unix.PR_CAPBSET_DROP, uintptr(c), 0))
		}
	}
	return ops
}

// switchUser sets the groups, gid and uid. Go's syscall.Set* apply to every
// thread of the process (libc's setxid broadcast under cgo), so no thread
// keeps root behind.
func switchUser(p *spec.Process) error {
	gids := make([]int, len(p.AdditionalGids))
	for i, g := range p.AdditionalGids {
		gids[i] = int(g)
	}
	// An empty list clears the supplementary groups inherited from the shim.
	if err := syscall.Setgroups(gids); err != nil {
		return os.NewSyscallError(fmt.Sprintf("setgroups %v", p.AdditionalGids), err)
	}
	if err := syscall.Setresgid(int(p.GID), int(p.GID), int(p.GID)); err != nil {
		return os.NewSyscallError(fmt.Sprintf("setresgid %d", p.GID), err)
	}
	if err := syscall.Setresuid(int(p.UID), int(p.UID), int(p.UID)); err != nil {
		return os.NewSyscallError(fmt.Sprintf("setresuid %d", p.UID), err)
	}
	return nil
}

// dropCaps takes every thread from the shim's full set to the spec's, in
// the order the kernel needs: the bounding set while CAP_SETPCAP is still
// there, keepcaps so the permitted set survives a change to a non-zero uid,
// the uid change, then the effective/permitted/inheritable sets and the
// ambient set (which needs its capabilities in permitted and inheritable).
// after runs between the uid change and the capability sets.
func dropCaps(c *spec.Capabilities, last uint, p *spec.Process, after func() error) error {
	m := capsMask(last)
	ops := dropBoundingSetOps(c.Bounding&m, last)
	ops = append(ops, prctlOp("PR_SET_KEEPCAPS 1", unix.PR_SET_KEEPCAPS, 1, 0))
	if err := broadcast(ops); err != nil {
		return fmt.Errorf("capabilities: bounding set: %w", err)
	}
	if err := switchUser(p); err != nil {
		return fmt.Errorf("process.user: %w", err)
	}
	if err := after(); err != nil {
		return err
	}
	capset, free := capsetOp(c.Effective&m, c.Permitted&m, c.Inheritable&m)
	defer free()
	ops = []sysOp{
		prctlOp("PR_SET_KEEPCAPS 0", unix.PR_SET_KEEPCAPS, 0, 0),
		capset,
		prctlOp("PR_CAP_AMBIENT_CLEAR_ALL", unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0),
	}
	for n := uint(0); n <= last; n++ {
		if c.Ambient&(1<<n) != 0 {
			ops = append(ops, prctlOp(fmt.Sprintf("PR_CAP_AMBIENT_RAISE %d", n), unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(n)))
		}
	}
	err := broadcast(ops)
	closeTaskDir()
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	return nil
}

// armPdeathsig is the fallback's crash containment: SIGKILL when the
// daemon's thread dies. Credential changes clear it, so it is set again
// after each, and right before execve.
func armPdeathsig() error {
	return linux.Prctl("PR_SET_PDEATHSIG", unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}

// daemonGone says whether the daemon's end of the initsync socket hung up.
// In a new pid namespace getppid() is 0, so the socket is the only way to
// notice a daemon that died before PDEATHSIG was re-armed.
func daemonGone(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return true
		}
		return fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}
