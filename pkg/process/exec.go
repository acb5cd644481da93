package process

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// ExecConfig is one ExecProcess request: a process to run in the
// container's namespaces and cgroup.
type ExecConfig struct {
	ID       string
	Terminal bool
	Stdin    string
	Stdout   string
	Stderr   string
	Spec     *specs.Process
}

// unknownExitStatus is what containerd reports for a process whose exit
// could not be known (containerd's UnknownExitStatus).
const unknownExitStatus = 255

// execProcess is one exec of the container. All fields but id, cfg, plan
// and exited are guarded by the container's mu.
type execProcess struct {
	id   string
	cfg  ExecConfig
	plan *spec.ExecPlan

	status Status // created, running or stopped; deleted ones leave the map
	// starting: Start is spawning it, outside mu. It counts as live for the
	// init's exit, and a second Start or a Delete must wait for it.
	starting bool
	proc     initProc
	io       *stdio
	exit     Exit
	// stdinClosed: CloseIO came before the exec's IO was opened (by its
	// Start), which then closes the shim's stdin writer at once.
	stdinClosed bool

	exited chan struct{} // closed by finish: exited, failed to start, or gone
	done   bool          // exited is closed
}

// finish records an exec's end and wakes its waiters. Called with mu held.
func (e *execProcess) finish(ex Exit) {
	e.status, e.exit = StatusStopped, ex
	if !e.done {
		e.done = true
		close(e.exited)
	}
}

// Exec registers an exec process and publishes TaskExecAdded; Start runs it.
// InvalidArgument for a bad process spec, AlreadyExists for a taken id,
// FailedPrecondition once the container's init is gone.
func (c *Container) Exec(ctx context.Context, cfg ExecConfig) error {
	if cfg.ID == "" {
		return fmt.Errorf("exec in %s: empty exec id: %w", c.id, errdefs.ErrInvalidArgument)
	}
	plan, err := newExecPlan(cfg.Spec)
	if err != nil {
		return fmt.Errorf("exec %s in %s: %w", cfg.ID, c.id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.execAllowed(); err != nil {
		return fmt.Errorf("exec %s: %w", cfg.ID, err)
	}
	if _, ok := c.execs[cfg.ID]; ok {
		return fmt.Errorf("exec %s in %s: %w", cfg.ID, c.id, errdefs.ErrAlreadyExists)
	}
	if c.execs == nil {
		c.execs = make(map[string]*execProcess)
	}
	plan.Seccomp = c.seccomp
	c.execs[cfg.ID] = &execProcess{id: cfg.ID, cfg: cfg, plan: plan, status: StatusCreated, exited: make(chan struct{})}
	c.publish(ctx, "/tasks/exec-added", &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: cfg.ID})
	return nil
}

// execAllowed: an exec needs the init's namespaces, so a live init that
// is not on its way out. Called with mu held.
func (c *Container) execAllowed() error {
	switch {
	case c.status == StatusDeleted:
		return fmt.Errorf("container %s: %w", c.id, errdefs.ErrNotFound)
	case c.status == StatusStopped || c.initExiting:
		return fmt.Errorf("container %s is stopped: %w", c.id, errdefs.ErrFailedPrecondition)
	case c.status != StatusCreated && c.status != StatusRunning:
		return fmt.Errorf("container %s is %s: %w", c.id, c.status, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// execLocked finds an exec; NotFound for an unknown id. Called with mu held.
func (c *Container) execLocked(id string) (*execProcess, error) {
	e, ok := c.execs[id]
	if !ok {
		return nil, fmt.Errorf("exec %s in %s: %w", id, c.id, errdefs.ErrNotFound)
	}
	return e, nil
}

// StartExec runs a registered exec and publishes TaskExecStarted. The
// spawn happens outside mu, so that many execs start at once and the
// init's State and Kill are never held up by them.
func (c *Container) StartExec(ctx context.Context, id string) (uint32, error) {
	c.mu.Lock()
	e, err := c.execLocked(id)
	if err == nil && (e.status != StatusCreated || e.starting) {
		err = fmt.Errorf("start exec %s in %s: it is %s: %w", id, c.id, e.statusLocked(), errdefs.ErrFailedPrecondition)
	}
	if err == nil {
		if err = c.execAllowed(); err != nil {
			// It can never start now: its waiters learn so, as after
			// a failed start.
			e.finish(Exit{Status: unknownExitStatus, At: time.Now()})
		}
	}
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	e.starting = true
	c.mu.Unlock()

	p, io, err := c.spawnExec(ctx, e)

	c.mu.Lock()
	defer c.mu.Unlock()
	e.starting = false
	if err != nil {
		e.finish(Exit{Status: unknownExitStatus, At: time.Now()})
		if errors.Is(err, pidfd.ErrExited) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
		}
		return 0, fmt.Errorf("start exec %s in %s: %w", id, c.id, err)
	}
	e.status, e.proc, e.io = StatusRunning, p, io
	if e.stdinClosed {
		if err := io.closeStdin(); err != nil {
			log.G(ctx).WithError(err).WithFields(log.Fields{"id": c.id, "exec": id}).Warn("close stdin")
		}
	}
	pid := uint32(p.Pid())
	if c.initExiting && c.sharedPidNS {
		// The init exited while we spawned, and without a pid namespace
		// of its own nothing else ends this process: the container is
		// over, as its leftovers were killed.
		_ = p.Signal(syscall.SIGKILL)
	}
	c.publish(ctx, "/tasks/exec-started", &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: id, Pid: pid})
	go c.watchExec(e)
	return pid, nil
}

// spawnExec creates the process and waits until it has exec'd (EOF on the
// setup socket) or failed; on failure nothing of it is left.
func (c *Container) spawnExec(ctx context.Context, e *execProcess) (_ initProc, _ *stdio, retErr error) {
	open := openStdio
	if e.plan.Process.Terminal {
		open = openTerminalStdio
	}
	io, err := open(ctx, c.id+"/"+e.id, c.cfg.Namespace, e.cfg.Stdin, e.cfg.Stdout, e.cfg.Stderr)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if retErr != nil {
			io.closeChild()
			io.close()
		}
	}()
	plan := *e.plan
	plan.Fallback = !c.sys.native()
	p, conn, err := c.sys.spawnExec(ctx, c.proc, &plan, c.cg, io.child)
	io.closeChild()
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	fail := func(err error) (initProc, *stdio, error) {
		_ = p.Signal(syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(ctx, killedExitWait)
		_, _ = p.Wait(wctx)
		cancel()
		p.Close()
		return nil, nil, err
	}
	if c.cg.IntoFd() == nil {
		if err := c.cg.Add(p.Pid()); err != nil {
			return fail(fmt.Errorf("move into the container's cgroup: %w", err))
		}
	}
	if err := conn.SendJoined(); err != nil {
		// Gone already: its reason is waiting in the socket.
		if rerr := conn.RecvExec(); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	if e.plan.Process.Terminal {
		master, err := conn.RecvConsole()
		if err != nil {
			return fail(err)
		}
		if err := io.attachConsole(ctx, c.id+"/"+e.id, master); err != nil {
			return fail(err)
		}
	}
	if err := conn.RecvExec(); err != nil {
		return fail(err)
	}
	return p, io, nil
}

// watchExec turns an exec's exit into its state and a TaskExit event.
func (c *Container) watchExec(e *execProcess) {
	ctx := context.Background()
	ex, err := e.proc.Wait(ctx)
	if err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"id": c.id, "exec": e.id}).Error("watch exec exit")
		ex = pidfd.Exit{Status: unknownExitStatus, At: time.Now()}
	}
	// e.io is set before this watcher starts and released only once the
	// exec is stopped, which is below.
	e.io.drainConsole()
	e.io.drainOutput()
	c.mu.Lock()
	defer c.mu.Unlock()
	e.finish(Exit{Pid: uint32(e.proc.Pid()), Status: uint32(ex.Status), At: ex.At})
	c.noteOOM(ctx) // an OOM kill of the exec is reported before its exit (cgfeat.go)
	c.publish(ctx, "/tasks/exit", &eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          e.id,
		Pid:         e.exit.Pid,
		ExitStatus:  e.exit.Status,
		ExitedAt:    timestamppb.New(e.exit.At),
	})
}

func (e *execProcess) statusLocked() Status {
	if e.starting {
		return StatusCreated
	}
	return e.status
}

// KillExec signals an exec: FailedPrecondition before it started, NotFound
// once it has exited (as containerd's runc shim answers).
func (c *Container) KillExec(ctx context.Context, id string, signal uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.execLocked(id)
	if err != nil {
		return err
	}
	switch {
	case e.starting || e.status == StatusCreated:
		return fmt.Errorf("kill exec %s in %s: process not started: %w", id, c.id, errdefs.ErrFailedPrecondition)
	case e.status == StatusStopped:
		return fmt.Errorf("kill exec %s in %s: %w: %w", id, c.id, pidfd.ErrExited, errdefs.ErrNotFound)
	}
	if err := e.proc.Signal(syscall.Signal(signal)); err != nil {
		if errors.Is(err, pidfd.ErrExited) {
			return fmt.Errorf("kill exec %s in %s: %w: %w", id, c.id, err, errdefs.ErrNotFound)
		}
		return fmt.Errorf("kill exec %s in %s: %w", id, c.id, err)
	}
	return nil
}

// StateExec reports an exec's state.
func (c *Container) StateExec(id string) (StateInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.execLocked(id)
	if err != nil {
		return StateInfo{}, err
	}
	st := StateInfo{
		ID:       e.id,
		Bundle:   c.bundle,
		Status:   e.statusLocked(),
		Stdin:    e.cfg.Stdin,
		Stdout:   e.cfg.Stdout,
		Stderr:   e.cfg.Stderr,
		Terminal: e.cfg.Terminal,
		Exit:     e.exit,
	}
	if e.proc != nil {
		st.Pid = uint32(e.proc.Pid())
	}
	return st, nil
}

// WaitExec blocks until the exec has exited (or its Start failed).
func (c *Container) WaitExec(ctx context.Context, id string) (Exit, error) {
	c.mu.Lock()
	e, err := c.execLocked(id)
	c.mu.Unlock()
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-e.exited:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.exit, nil
}

// DeleteExec forgets an exec that is not running. FailedPrecondition while
// it runs.
func (c *Container) DeleteExec(ctx context.Context, id string) (Exit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.execLocked(id)
	if err != nil {
		return Exit{}, err
	}
	if e.starting || e.status == StatusRunning {
		return Exit{}, fmt.Errorf("delete exec %s in %s: it is running: %w", id, c.id, errdefs.ErrFailedPrecondition)
	}
	delete(c.execs, id)
	if err := e.release(); err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"id": c.id, "exec": id}).Warn("release exec io")
	}
	return e.exit, nil
}

// release drops what a stopped (or never started) exec holds; a waiter
// of one that never started returns. Called with mu held.
func (e *execProcess) release() error {
	if !e.done {
		e.finish(Exit{Status: unknownExitStatus, At: time.Now()})
	}
	if e.proc != nil {
		e.proc.Close()
	}
	if e.io != nil {
		err := e.io.close()
		e.io = nil
		return err
	}
	return nil
}

// liveExecs are the execs the init's TaskExit must wait for: running or
// being started. Called with mu held.
func (c *Container) liveExecs() []chan struct{} {
	var out []chan struct{}
	for _, e := range c.execs {
		if e.starting || e.status == StatusRunning {
			out = append(out, e.exited)
		}
	}
	return out
}

// execPids maps the pid of each running exec to its id. Called with mu held.
func (c *Container) execPids() map[uint32]string {
	m := make(map[uint32]string)
	for _, e := range c.execs {
		if e.status == StatusRunning && e.proc != nil {
			m[uint32(e.proc.Pid())] = e.id
		}
	}
	return m
}

// stdioLocked is the IO of the init (execID "") or of an exec (nil until
// its Start opened it), and the exec. Called with mu held.
func (c *Container) stdioLocked(execID string) (*stdio, *execProcess, error) {
	if execID == "" {
		return c.io, nil, nil
	}
	e, err := c.execLocked(execID)
	if err != nil {
		return nil, nil, err
	}
	return e.io, e, nil
}

// CloseIO closes the shim's writer of the stdin of the init (execID "") or
// an exec, so that the process reads EOF once containerd's client has
// closed its own; for an exec not started yet it is remembered.
func (c *Container) CloseIO(execID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	io, e, err := c.stdioLocked(execID)
	if err != nil {
		return err
	}
	if e != nil {
		e.stdinClosed = true
	}
	if err := io.closeStdin(); err != nil {
		return fmt.Errorf("close the stdin of %s %s: %w", c.id, execID, err)
	}
	return nil
}

// ResizePty sets the terminal size of the init (execID "") or an exec; a
// process without a terminal has nothing to resize (as runc's shim).
func (c *Container) ResizePty(execID string, width, height uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	io, _, err := c.stdioLocked(execID)
	if err != nil {
		return err
	}
	if io == nil || io.console == nil {
		return nil
	}
	if err := io.console.resize(width, height); err != nil {
		return fmt.Errorf("resize the terminal of %s: %w", c.id, err)
	}
	return nil
}
