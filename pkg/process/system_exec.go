package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// maxExecPlanBytes: the exec face's limit (setup.maxExecPlan) less slack,
// checked here to fail with InvalidArgument before anything is spawned.
const maxExecPlanBytes = 60 << 20

// execNamespaces are joined by every exec (besides pid, which the spawner
// thread joins): joining one that is also ours is harmless for these, so
// a container that shares the host's network needs no special case. The
// user namespace is added only when it differs (setns refuses our own).
var execNamespaces = []struct {
	name string
	flag uint64
}{
	{"mnt", unix.CLONE_NEWNS},
	{"net", unix.CLONE_NEWNET},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"time", unix.CLONE_NEWTIME},
}

func (linuxSystem) spawnExec(ctx context.Context, init initProc, plan *spec.ExecPlan, cg cgroups.Manager, stdio [3]*os.File) (initProc, setupConn, error) {
	exe, err := setupExe()
	if err != nil {
		return nil, nil, err
	}
	if plan.LastCap, err = linux.LastCap(); err != nil {
		return nil, nil, fmt.Errorf("cap_last_cap: %w", err)
	}
	planFile, err := sealedPlan(plan)
	if err != nil {
		return nil, nil, err
	}
	defer planFile.Close()
	// A pidfd of our own making, not the init's autokill one: the exec
	// face holds it until its constructor has joined, and a copy of an
	// autokill pidfd held elsewhere would keep the container alive.
	target, err := init.Open()
	if err != nil {
		if errors.Is(err, pidfd.ErrExited) {
			return nil, nil, fmt.Errorf("the container's init has exited: %w", errdefs.ErrFailedPrecondition)
		}
		return nil, nil, err
	}
	defer target.Close()
	flags, err := execJoinFlags(init.Pid())
	if err != nil {
		return nil, nil, err
	}
	fallback := "0"
	if plan.Fallback {
		fallback = "1"
	}
	attr := &pidfd.SpawnAttr{
		Exe:   exe,
		Args:  []string{"containerd-shim-autokill-v1", initsync.ExecArg, strconv.FormatUint(flags, 16), fallback},
		Env:   []string{"GOMAXPROCS=1"},
		Stdio: stdio,
		// The pid namespace is the spawner thread's to join: the new
		// process must be in it, not just its children.
		PidNS: target,
		Extra: []*os.File{target, planFile},
	}
	if cg != nil {
		attr.Cgroup = cg.IntoFd()
	}
	parent, child, err := initsync.NewPair()
	if err != nil {
		return nil, nil, err
	}
	attr.Sync = child.File()
	p, err := pidfd.Spawn(attr)
	child.Close()
	if err != nil {
		parent.Close()
		return nil, nil, err
	}
	return p, parent, nil
}

// sealedPlan puts the plan in a memfd that nobody can change once sealed:
// the exec face reads it as its fd 5.
func sealedPlan(plan *spec.ExecPlan) (*os.File, error) {
	b, err := json.Marshal(plan)
	if err != nil {
		return nil, fmt.Errorf("encode the exec plan: %w", err)
	}
	if len(b) > maxExecPlanBytes {
		return nil, fmt.Errorf("exec process too large: plan of %d bytes, at most %d: %w", len(b), maxExecPlanBytes, errdefs.ErrInvalidArgument)
	}
	fd, err := unix.MemfdCreate("autokill-exec-plan", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "autokill-exec-plan")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the exec plan: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl(F_ADD_SEALS)", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// execJoinFlags is the CLONE_NEW* set an exec joins with setns on the
// init's pidfd: every namespace type this kernel has, the user namespace
// only when the init's is not ours.
func execJoinFlags(initPid int) (uint64, error) {
	var flags uint64
	for _, ns := range execNamespaces {
		if _, err := os.Stat("/proc/self/ns/" + ns.name); err == nil {
			flags |= ns.flag
		}
	}
	var own, theirs unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		return 0, os.NewSyscallError("stat /proc/self/ns/user", err)
	}
	// Read after the pidfd was opened, which proved initPid is still the
	// init; an init that exits meanwhile fails the setns with ESRCH.
	if err := unix.Stat("/proc/"+strconv.Itoa(initPid)+"/ns/user", &theirs); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0, fmt.Errorf("the container's init has exited: %w", errdefs.ErrFailedPrecondition)
		}
		return 0, os.NewSyscallError("stat the init's user namespace", err)
	}
	if own.Ino != theirs.Ino || own.Dev != theirs.Dev {
		flags |= unix.CLONE_NEWUSER
	}
	return flags, nil
}
