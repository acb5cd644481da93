// Package hooks runs OCI hooks (runtime-spec config.md, "POSIX-platform
// Hooks"): each hook is execve'd with its path, args and env exactly as the
// spec gives them, the container's state JSON on stdin, and a timeout.
//
// The caller chooses where a hook runs: the daemon runs prestart,
// createRuntime, poststart and poststop in the runtime namespace; the setup
// face runs createContainer and startContainer inside the container's
// namespaces. Either way the hook gets fds 0-2 only: os/exec passes nothing
// else, and both callers keep every other fd CLOEXEC, so no autokill pidfd
// and no initsync socket reaches a hook.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// maxStderr bounds what of a failing hook's output goes into the error.
const maxStderr = 4 << 10

// RunAll runs hooks in order and stops at the first failure; the error
// names the phase and the hook's index and carries its stderr.
func RunAll(ctx context.Context, phase string, hs []spec.Hook, state *specs.State) error {
	if len(hs) == 0 {
		return nil
	}
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("%s hook: state: %w", phase, err)
	}
	for i, h := range hs {
		if err := Run(ctx, h, b); err != nil {
			return fmt.Errorf("%s hook %d (%s): %w", phase, i, h.Path, err)
		}
	}
	return nil
}

// Run runs one hook with state on stdin and waits for it, killing it at
// its timeout.
func Run(ctx context.Context, h spec.Hook, state []byte) error {
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(h.Timeout)*time.Second)
		defer cancel()
	}
	// exec.Cmd, not CommandContext's Path lookup: the spec's path is used
	// as is (absolute, checked by internal/spec) and args[0] is the
	// hook's argv[0], which may differ from the path.
	cmd := &exec.Cmd{Path: h.Path, Args: h.Args, Env: h.Env}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{h.Path}
	}
	if cmd.Env == nil {
		// nil would mean "the caller's environment" to os/exec; the
		// spec's env is the hook's whole environment.
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout = &limited{w: &out}
	cmd.Stderr = cmd.Stdout
	// A process group of its own, so that the timeout kills what the hook
	// started too, and the hook never receives the caller's terminal
	// signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Something the hook left running may hold its stdout: the hook's
	// own exit is what counts.
	cmd.WaitDelay = time.Second
	// os/exec passes 0-2 but also whatever is not CLOEXEC: an fd someone
	// inherited or created without the flag would reach the hook. Every fd
	// of ours is CLOEXEC by design; this makes it so for the rest, process
	// wide (none of our exec()s rely on an inherited fd above 2: the setup
	// face's spawn dup2()s its own).
	if err := sealFds(); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		<-done
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && h.Timeout > 0 {
			return fmt.Errorf("killed after its timeout of %ds%s", h.Timeout, tail(out.String()))
		}
		return fmt.Errorf("killed: %w%s", ctx.Err(), tail(out.String()))
	}
	if err != nil {
		return fmt.Errorf("%w%s", err, tail(out.String()))
	}
	return nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return ": " + s
}

// limited keeps the first maxStderr bytes and swallows the rest, so a
// chatty hook neither blocks on a full pipe nor grows the daemon.
type limited struct{ w *bytes.Buffer }

func (l *limited) Write(p []byte) (int, error) {
	if room := maxStderr - l.w.Len(); room > 0 {
		if len(p) > room {
			l.w.Write(p[:room])
		} else {
			l.w.Write(p)
		}
	}
	return len(p), nil
}

// sealFds marks every fd above 2 CLOEXEC; a variable so that the unit test
// can show what happens without it.
var sealFds = func() error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil && err != unix.ENOSYS {
		return fmt.Errorf("close_range CLOEXEC: %w", err)
	}
	return nil
}
