package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/guard"
	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mount"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// system is everything a Container does to the machine: mounts, cgroups,
// the clone3 of its init, the crash guard. The lifecycle (state, locks,
// events) is written against it so that its races can be tested under
// -race without root, with a fake (container_race_test.go); linuxSystem is
// the real one.
type system interface {
	// native reports whether clone3 gives autokill pidfds (Linux 7.1+).
	native() bool
	mountRootfs(mounts []*types.Mount, dir string) error
	unmountRootfs(dir string) error
	newCgroup(bundle, path string, systemd bool, res *specs.LinuxResources) (cgroups.Manager, error)
	// spawn clones the init into its namespaces (and, on cgroup v2, its
	// cgroup), running the setup face with stdio and the setup socket.
	spawn(ctx context.Context, plan *spec.Plan, cg cgroups.Manager, stdio [3]*os.File) (initProc, setupConn, error)
	// spawnExec clones a process into every namespace of init and (v2)
	// its cgroup, running the exec face with stdio and the setup socket.
	spawnExec(ctx context.Context, init initProc, plan *spec.ExecPlan, cg cgroups.Manager, stdio [3]*os.File) (initProc, setupConn, error)
	// arm makes the daemon's death kill the whole cgroup (see
	// internal/guard); disarm undoes it once the cgroup is gone.
	arm(ctx context.Context, id string, cg cgroups.Manager) error
	disarm(ctx context.Context, id string) error
}

// initProc is the container's init, watched through its pidfd.
type initProc interface {
	Pid() int
	Signal(syscall.Signal) error
	Wait(context.Context) (pidfd.Exit, error)
	// Open returns a plain (never autokill) pidfd of the process, for an
	// exec to join its namespaces with; ErrExited once it has exited.
	Open() (*os.File, error)
	Close() error
}

// killedExitWait bounds the wait for a child we SIGKILLed to be reported
// gone. SIGKILL cannot be caught, so only a process stuck in the kernel
// (uninterruptible sleep, say on a hung network filesystem) takes longer;
// the request then goes on without its exit rather than hang.
const killedExitWait = 5 * time.Second

// setOOMScoreAdj writes process.oomScoreAdj of a child the daemon just
// cloned, before its setup face runs. The daemon does it, not the child:
// lowering the score needs CAP_SYS_RESOURCE in the initial user namespace,
// which a child in a user namespace of its own never has (runc writes it
// from its parent process too).
func setOOMScoreAdj(p *pidfd.Process, v *int) error {
	if v == nil {
		return nil
	}
	dir, err := childProcDir(p)
	if err != nil {
		return fmt.Errorf("process.oomScoreAdj: %w", err)
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), "oom_score_adj", unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("process.oomScoreAdj: %w", os.NewSyscallError("open oom_score_adj", err))
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(strconv.Itoa(*v))); err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			cur, _ := os.ReadFile("/proc/self/oom_score_adj")
			return fmt.Errorf("process.oomScoreAdj %d: lowering it below the shim's %s needs CAP_SYS_RESOURCE, which the shim lacks (CRI's restrict_oom_score_adj keeps it at containerd's): %w: %w",
				*v, strings.TrimSpace(string(cur)), os.NewSyscallError("write oom_score_adj", err), errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("process.oomScoreAdj %d: %w", *v, os.NewSyscallError("write oom_score_adj", err))
	}
	return nil
}

// setupConn is the daemon's end of initsync.
type setupConn interface {
	SendPlan(plan any) error
	SendJoined() error
	RecvReady() error
	SendStart() error
	RecvExec() error
	// RecvConsole takes the pty master of a process with a terminal.
	RecvConsole() (*os.File, error)
	Close() error
}

type linuxSystem struct{}

func (linuxSystem) native() bool { return pidfd.Probe().Native }

func (linuxSystem) mountRootfs(mounts []*types.Mount, dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return mount.All(mounts, dir)
}

func (linuxSystem) unmountRootfs(dir string) error { return mount.UnmountAll(dir) }

func (linuxSystem) newCgroup(bundle, path string, systemd bool, res *specs.LinuxResources) (cgroups.Manager, error) {
	return cgroups.New(bundle, path, systemd, res)
}

func (linuxSystem) arm(ctx context.Context, id string, cg cgroups.Manager) error {
	exe, err := setupExe()
	if err != nil {
		return err
	}
	return guard.Arm(ctx, exe, id, cg.Dirs().All)
}

func (linuxSystem) disarm(ctx context.Context, id string) error { return guard.Disarm(ctx, id) }

func (linuxSystem) spawn(ctx context.Context, plan *spec.Plan, cg cgroups.Manager, stdio [3]*os.File) (initProc, setupConn, error) {
	exe, err := setupExe()
	if err != nil {
		return nil, nil, err
	}
	attr := &pidfd.SpawnAttr{
		Exe:  exe,
		Args: []string{"containerd-shim-autokill-v1", initsync.InitArg},
		// One P: the setup face drops capabilities and credentials on
		// every thread of its own (broadcast), so each thread the Go
		// runtime would start per CPU is work and a window; it is short
		// lived and does nothing in parallel.
		Env:        []string{"GOMAXPROCS=1"},
		Cloneflags: plan.Namespaces.Create,
		Stdio:      stdio,
	}
	var nsFiles []*os.File
	defer func() {
		for _, f := range nsFiles {
			f.Close()
		}
	}()
	if err := userNSAttr(plan, attr, &nsFiles); err != nil {
		return nil, nil, err
	}
	for _, j := range plan.Namespaces.Join {
		f, err := os.Open(j.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("join %s namespace: %w", j.Type, err)
		}
		nsFiles = append(nsFiles, f)
		// A path of the wrong type would be joined as what it is: a
		// "network" path to another container's mount namespace would
		// move this init into it.
		if err := pidfd.CheckNamespace(f, j.Flag); err != nil {
			return nil, nil, fmt.Errorf("join %s namespace: %w: %w", j.Type, err, errdefs.ErrInvalidArgument)
		}
		if err := linux.CheckSysctlJoin(plan, j, f); err != nil {
			return nil, nil, err
		}
		if j.Flag == syscall.CLONE_NEWPID {
			attr.PidNS = f
		} else {
			attr.Setns = append(attr.Setns, pidfd.Namespace{File: f, Type: j.Flag})
		}
	}
	if cg != nil {
		attr.Cgroup = cg.IntoFd()
	}
	parent, child, err := initsync.NewPair()
	if err != nil {
		return nil, nil, err
	}
	// A plan too large for one packet fails now, before there is a child
	// to clean up, and with the spec's size in the message.
	if err := checkPlanSize(parent, plan); err != nil {
		parent.Close()
		child.Close()
		return nil, nil, err
	}
	attr.Sync = child.File()
	p, err := pidfd.Spawn(attr)
	child.Close()
	if err != nil {
		parent.Close()
		return nil, nil, err
	}
	if err := setOOMScoreAdj(p, plan.OOMScoreAdj); err != nil {
		_ = p.Signal(syscall.SIGKILL)
		p.Close()
		parent.Close()
		return nil, nil, err
	}
	if attr.UserNS {
		if err := releaseUserNS(p, parent, plan.UserNS); err != nil {
			_ = p.Signal(syscall.SIGKILL)
			p.Close()
			parent.Close()
			return nil, nil, err
		}
	}
	return p, parent, nil
}

func checkPlanSize(c *initsync.Parent, plan *spec.Plan) error {
	limit, err := c.PlanLimit()
	if err != nil {
		return err
	}
	b, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	// Fallback, set after the spawn, only shortens it (false → true).
	if n := len(b); n > limit {
		return fmt.Errorf("spec too large: plan of %d bytes, the setup socket carries at most %d: %w", n, limit, errdefs.ErrInvalidArgument)
	}
	return nil
}
