package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/guard"
	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// Container is one container and its init process.
//
// Every transition happens under mu, and the event describing it is queued
// before mu is released: events reach containerd in transition order
// (Create → Start → Exit → Delete) by construction.
//
// Lock discipline: id, bundle, cfg, pub and sys never change after Create.
// Every other field is guarded by mu, except where said; proc is set once
// by create (before the Container is shared) and closed by Delete under mu.
type Container struct {
	id     string
	bundle string
	cfg    CreateConfig
	pub    Publisher
	sys    system

	mu     sync.Mutex
	status Status
	proc   initProc  // set by create; closed by Delete (under mu)
	sync   setupConn // until the first Start
	cg     cgroups.Manager
	io     *stdio
	rootfs string // mounted by us, unmounted on Delete
	exit   Exit
	// sharedPidNS: no pid namespace of its own, so the init's death does
	// not end the rest of the container. guarded: armed in the crash guard.
	sharedPidNS, guarded bool
	// execs by exec id (exec.go). initExiting: the init has exited and its
	// TaskExit waits for the live execs' exits; no exec may start.
	execs       map[string]*execProcess
	initExiting bool
	feat        cgfeat // pause, update, stats, OOM (cgfeat.go)

	exited chan struct{} // closed once exit is recorded; not guarded
	hooks  *spec.Hooks   // the spec's hooks, nil for none; set by create (hooks.go)
	// seccomp is the container's filter, which every exec gets too (as
	// with runc); nil for none. Set by create, read-only after.
	seccomp *specs.LinuxSeccomp
}

// Create sets up the container described by cfg and leaves its init waiting
// for Start. It publishes TaskCreate. Errors wrap errdefs: InvalidArgument for
// a bad bundle or spec, NotFound, or the cause.
func Create(ctx context.Context, cfg CreateConfig, pub Publisher) (*Container, error) {
	return createWith(ctx, cfg, pub, linuxSystem{})
}

func createWith(ctx context.Context, cfg CreateConfig, pub Publisher, sys system) (_ *Container, retErr error) {
	s, err := spec.Load(cfg.Bundle)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	plan, err := newPlan(cfg.Bundle, s)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	c := &Container{id: cfg.ID, bundle: cfg.Bundle, cfg: cfg, pub: pub, sys: sys, exited: make(chan struct{})}
	setIOOwner(cfg.ID, cfg.IOUID, cfg.IOGID)
	defer func() {
		if retErr != nil {
			c.release(ctx)
			forgetIOOwner(cfg.ID)
		}
	}()
	if err := c.create(ctx, plan); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	c.mu.Lock()
	c.status = StatusCreated
	c.publish(ctx, "/tasks/create", &eventstypes.TaskCreate{
		ContainerID: c.id,
		Bundle:      c.bundle,
		Rootfs:      cfg.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Terminal: cfg.Terminal},
		Pid:         uint32(c.proc.Pid()),
	})
	c.mu.Unlock()
	c.watchOOM(ctx)
	go c.watch()
	return c, nil
}

func (c *Container) create(ctx context.Context, plan *spec.Plan) error {
	c.seccomp = plan.Seccomp
	if len(c.cfg.Rootfs) > 0 {
		rootfs := filepath.Join(c.bundle, "rootfs")
		if err := c.sys.mountRootfs(c.cfg.Rootfs, rootfs); err != nil {
			return err
		}
		c.rootfs = rootfs
	}
	if _, err := os.Stat(plan.Root); err != nil {
		return fmt.Errorf("rootfs: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	// Always a cgroup of its own, derived when the spec names none, so that
	// linux.resources (device rules included) are enforced.
	cgPath, err := cgroups.PathFor(plan.CgroupsPath, c.cfg.Namespace, c.id, c.cfg.Systemd)
	if err != nil {
		return err
	}
	cg, err := c.sys.newCgroup(c.bundle, cgPath, c.cfg.Systemd, plan.Resources)
	if err != nil {
		return err
	}
	c.cg = cg
	// containerd's request and the spec may each ask for the terminal.
	plan.Process.Terminal = plan.Process.Terminal || c.cfg.Terminal
	c.cfg.Terminal = plan.Process.Terminal
	open := openStdio
	if plan.Process.Terminal {
		open = openTerminalStdio
	}
	if c.io, err = open(ctx, c.id, c.cfg.Namespace, c.cfg.Stdin, c.cfg.Stdout, c.cfg.Stderr); err != nil {
		return err
	}

	if err := stageIDMapped(c.bundle, plan); err != nil {
		return err
	}
	c.proc, c.sync, err = c.sys.spawn(ctx, plan, c.cg, c.io.child)
	c.io.closeChild()
	if err != nil {
		return err
	}
	log.G(ctx).WithField("pid", c.proc.Pid()).Debug("init cloned")
	// Armed before the init can run user code (it waits for Plan and
	// Start): from here the daemon's death kills the whole cgroup, whatever
	// the init does to its credentials, and with or without a pid namespace.
	c.sharedPidNS = plan.Namespaces.Create&syscall.CLONE_NEWPID == 0
	if guard.Needed(c.sys.native(), plan.Namespaces.Create) {
		if err := c.sys.arm(ctx, c.id, c.cg); err != nil {
			return err
		}
		c.guarded = true
	}
	plan.Fallback = !c.sys.native()
	c.prepareHooks(plan)
	if err := c.sync.SendPlan(plan); err != nil {
		return c.setupError(ctx, err)
	}
	// The v1 attach waits out an RCU grace period (~10 ms): the setup face
	// mounts meanwhile and waits for Joined only where the cgroup matters.
	if c.cg.IntoFd() == nil {
		if err := c.cg.Add(c.proc.Pid()); err != nil {
			return err
		}
	}
	if err := c.runtimeHooks(ctx); err != nil {
		return err
	}
	if err := c.sync.SendJoined(); err != nil {
		// The setup face is gone (EPIPE): most likely it failed before it
		// needed its cgroup, and its reason is waiting in the socket.
		if rerr := c.sync.RecvReady(); rerr != nil {
			return c.setupError(ctx, rerr)
		}
		return c.setupError(ctx, err)
	}
	if plan.Process.Terminal {
		master, err := c.sync.RecvConsole()
		if err != nil {
			return c.setupError(ctx, err)
		}
		if err := c.io.attachConsole(ctx, c.id, master); err != nil {
			return err
		}
	}
	if err := c.sync.RecvReady(); err != nil {
		return c.setupError(ctx, err)
	}
	// The setup face has bound what it needed of them (and pivoted away
	// from its copies): the host need not keep them.
	if err := unstageIDMapped(c.bundle); err != nil {
		log.G(ctx).WithError(err).Warn("unmount the staged id-mapped mounts")
	}
	return nil
}

// setupError explains a setup face that failed or died before Ready.
func (c *Container) setupError(ctx context.Context, err error) error {
	if errors.Is(err, initsync.ErrClosed) {
		wctx, cancel := context.WithTimeout(ctx, killedExitWait)
		defer cancel()
		if e, werr := c.proc.Wait(wctx); werr == nil {
			return fmt.Errorf("container init died during setup with status %d", e.Status)
		}
	}
	return fmt.Errorf("setup: %w", err)
}

// release undoes a failed Create; everything is best effort.
func (c *Container) release(ctx context.Context) {
	if c.proc != nil {
		_ = c.proc.Signal(syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(ctx, killedExitWait)
		_, _ = c.proc.Wait(wctx)
		cancel()
		c.proc.Close()
	}
	c.cleanup(ctx)
}

// cleanup releases what outlives the init: fds, cgroup, rootfs.
func (c *Container) cleanup(ctx context.Context) error {
	var errs []error
	c.stopOOM()
	if c.sync != nil {
		c.sync.Close()
		c.sync = nil
	}
	for id, e := range c.execs {
		errs = append(errs, e.release())
		delete(c.execs, id)
	}
	if c.io != nil {
		c.io.closeChild()
		errs = append(errs, c.io.close())
	}
	if c.cg != nil {
		if err := c.cg.Delete(ctx); err != nil {
			errs = append(errs, err)
		} else {
			c.cg = nil
		}
	}
	// Only once the cgroup is gone: until then a crash of the daemon must
	// still kill whatever is left in it.
	if c.guarded && c.cg == nil {
		if err := c.sys.disarm(ctx, c.id); err != nil {
			errs = append(errs, err)
		} else {
			c.guarded = false
		}
	}
	if err := unstageIDMapped(c.bundle); err != nil {
		errs = append(errs, fmt.Errorf("id-mapped mounts: %w", err))
	}
	if c.rootfs != "" {
		if err := c.sys.unmountRootfs(c.rootfs); err != nil {
			errs = append(errs, err)
		} else {
			c.rootfs = ""
		}
	}
	return errors.Join(errs...)
}

// watch turns the init's exit into state and the TaskExit event.
func (c *Container) watch() {
	ctx := context.Background()
	e, err := c.proc.Wait(ctx)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Error("watch init exit")
		e = pidfd.Exit{Status: 255, At: time.Now()}
	}
	c.mu.Lock()
	c.initExiting = true
	c.killLeftovers(ctx)
	live := c.liveExecs()
	c.mu.Unlock()
	// Every exit of an exec is reported before the init's, as containerd
	// expects (its runc shim holds the init's exit back the same way): they
	// are ending already, with the pid namespace or the leftovers' kill.
	for _, ch := range live {
		<-ch
	}
	// What the init wrote to its terminal or fifos, before its exit.
	c.io.drainConsole()
	c.io.drainOutput()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(live) > 0 {
		// What an exec that was still starting forked meanwhile.
		c.killLeftovers(ctx)
	}
	c.beforeExit(ctx)
	c.exit = Exit{Pid: uint32(c.proc.Pid()), Status: uint32(e.Status), At: e.At}
	to, err := next(opExit, c.status)
	if err != nil {
		// Cannot happen: only created and running inits exist to exit.
		log.G(ctx).WithError(err).WithField("id", c.id).Error("exit in unexpected state")
	}
	c.status = to
	c.publish(ctx, "/tasks/exit", &eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         c.exit.Pid,
		ExitStatus:  c.exit.Status,
		ExitedAt:    timestamppb.New(c.exit.At),
	})
	close(c.exited)
}

// killLeftovers: no pid namespace died with this init, so what it left
// running would outlive the container's exit. containerd's runc shim kills
// it too (shouldKillAllOnExit), before TaskExit. Called with mu held.
func (c *Container) killLeftovers(ctx context.Context) {
	if !c.sharedPidNS || c.cg == nil {
		return
	}
	if err := c.cg.SignalAll(syscall.SIGKILL); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("kill the processes the init left")
	}
}

// ID returns the container's id.
func (c *Container) ID() string { return c.id }

// Start execs the user's entrypoint and publishes TaskStart.
// FailedPrecondition unless the container is created.
func (c *Container) Start(ctx context.Context) (_ uint32, retErr error) {
	// After mu is released: a slow poststart hook must not block Kill.
	defer func() {
		if retErr == nil {
			c.poststartHooks(ctx)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	to, err := next(opStart, c.status)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.id, err)
	}
	if c.sync == nil {
		// An earlier Start reached the setup face and failed; the init is
		// on its way out (its exit moves the state to stopped), and there
		// is nobody left to tell "start" to.
		return 0, fmt.Errorf("start %s: an earlier start failed: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	// The connection is spent whatever happens next: the setup face
	// either execs (EOF) or reports its failure and exits.
	conn := c.sync
	c.sync = nil
	defer conn.Close()
	if err := conn.SendStart(); err != nil {
		return 0, fmt.Errorf("start %s: %w", c.id, err)
	}
	if err := conn.RecvExec(); err != nil {
		// The setup face reported and exits. Answer once its exit is
		// recorded (TaskExit queued, state stopped), as runc's shim does:
		// a client that deletes the task right after the failed Start
		// (ctr run --rm) must not be refused for a task still "created".
		_ = c.proc.Signal(syscall.SIGKILL)
		c.mu.Unlock()
		select {
		case <-c.exited:
		case <-time.After(killedExitWait):
		case <-ctx.Done():
		}
		c.mu.Lock()
		return 0, fmt.Errorf("start %s: %w", c.id, err)
	}
	c.status = to
	pid := uint32(c.proc.Pid())
	c.publish(ctx, "/tasks/start", &eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	return pid, nil
}

// Kill sends signal to the init, or with all to every process of the
// container. NotFound once the container has no process left.
func (c *Container) Kill(ctx context.Context, signal uint32, all bool) error {
	// Held throughout: Delete closes the pidfd and drops the cgroup under
	// mu, and a Kill that raced it must see "deleted" (NotFound), not a
	// closed fd. Signalling is quick; the cgroup freeze of --all is the
	// slowest part (milliseconds).
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := next(opKill, c.status); err != nil {
		return fmt.Errorf("%s: %w", c.id, err)
	}
	sig := syscall.Signal(signal)
	if all && c.cg != nil {
		if err := c.cg.SignalAll(sig); err != nil {
			return fmt.Errorf("kill %s --all: %w", c.id, err)
		}
		return nil
	}
	if err := c.proc.Signal(sig); err != nil {
		if errors.Is(err, pidfd.ErrExited) {
			return fmt.Errorf("kill %s: %w: %w", c.id, err, errdefs.ErrNotFound)
		}
		return fmt.Errorf("kill %s: %w", c.id, err)
	}
	c.thawKilled(ctx, sig)
	return nil
}

// State reports the container's current state.
func (c *Container) State() StateInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return StateInfo{
		ID:       c.id,
		Bundle:   c.bundle,
		Pid:      uint32(c.proc.Pid()),
		Status:   c.status,
		Stdin:    c.cfg.Stdin,
		Stdout:   c.cfg.Stdout,
		Stderr:   c.cfg.Stderr,
		Terminal: c.cfg.Terminal,
		Exit:     c.exit,
	}
}

// Wait blocks until the init has exited (or ctx ends) and returns its exit.
func (c *Container) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-c.exited:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Delete releases everything the container holds (init if never started,
// rootfs mount, cgroup) and publishes TaskDelete. FailedPrecondition while the
// container is running.
func (c *Container) Delete(ctx context.Context) (Exit, error) {
	c.mu.Lock()
	status := c.status
	_, err := next(opDelete, status)
	if err == nil && status == StatusCreated {
		// Never started: the waiting setup face is killed, as runc does.
		// Under mu: a racing Delete may close the pidfd once it is done.
		if serr := c.proc.Signal(syscall.SIGKILL); serr != nil && !errors.Is(serr, pidfd.ErrExited) {
			err = fmt.Errorf("delete %s: %w", c.id, serr)
		}
	}
	c.mu.Unlock()
	if err != nil {
		return Exit{}, fmt.Errorf("%s: %w", c.id, err)
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Another Delete may have won the race while we waited.
	to, err := next(opDelete, c.status)
	if err != nil {
		return Exit{}, fmt.Errorf("%s: %w", c.id, err)
	}
	if err := c.cleanup(ctx); err != nil {
		return Exit{}, fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.poststopHooks(ctx)
	c.proc.Close()
	forgetIOOwner(c.id)
	c.status = to
	c.publish(ctx, "/tasks/delete", &eventstypes.TaskDelete{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         c.exit.Pid,
		ExitStatus:  c.exit.Status,
		ExitedAt:    timestamppb.New(c.exit.At),
	})
	return c.exit, nil
}

// Pids lists the processes of the container.
func (c *Container) Pids(ctx context.Context) ([]ProcessInfo, error) {
	// Under mu: Delete removes the cgroup under it, and a listing that
	// raced it would read a cgroup half gone. Reading cgroup.procs is quick.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == StatusDeleted {
		return nil, fmt.Errorf("pids %s: %w", c.id, errdefs.ErrNotFound)
	}
	if c.cg == nil {
		if c.status == StatusStopped {
			return nil, nil
		}
		return []ProcessInfo{{Pid: uint32(c.proc.Pid())}}, nil
	}
	pids, err := c.cg.Pids()
	if err != nil {
		return nil, fmt.Errorf("pids %s: %w", c.id, err)
	}
	execs := c.execPids()
	out := make([]ProcessInfo, len(pids))
	for i, p := range pids {
		out[i] = ProcessInfo{Pid: uint32(p), ExecID: execs[uint32(p)]}
	}
	return out, nil
}

// publish queues ev; callers hold mu so that the queue order is the
// transition order.
func (c *Container) publish(ctx context.Context, topic string, ev any) {
	a, err := typeurl.MarshalAny(ev)
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Error("encode event")
		return
	}
	c.pub.Publish(ctx, topic, a)
}
