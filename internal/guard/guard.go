// Package guard extends the crash guarantee to the containers whose init's
// death does not take the whole container with it.
//
// The kernel kills a container's init when the daemon dies (native:
// CLONE_PIDFD_AUTOKILL; fallback: PR_SET_PDEATHSIG), and when that init is
// pid 1 of its own pid namespace the namespace goes with it. That leaves two
// holes: a container without a new pid namespace (host pid, or a pid
// namespace joined by path) whose other processes survive, and, in fallback
// mode only, an init that changed its credentials (setuid(2), a setuid
// binary), which clears PDEATHSIG.
//
// No kernel feature kills a cgroup when a process dies, so the daemon starts
// one guard process (only once a container needs it) that learns of the
// daemon's death from the kernel, EOF on a socket only the daemon holds or
// the daemon's pidfd turning readable, and then kills every cgroup the
// daemon armed (v2: cgroup.kill; v1: freeze, pidfd_send_signal SIGKILL to
// each process, thaw, until empty) and exits.
//
// The guard is a C-only face of the shim binary (guard_linux.c): a
// constructor that runs before the Go runtime and never returns to it, so it
// costs the few pages of libc it touches instead of a second Go runtime. It
// is exec'd from the daemon's read-only exe with pidfd.SpawnHelper: no
// autokill pidfd, no PDEATHSIG, no container fd, namespace or cgroup; it is
// non-dumpable and in its own session.
package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// #include "guard_linux.h"
import "C"

// Arg is argv[1] of the guard face (AK_GUARD_ARG in guard_linux.h).
const Arg = "__autokill_guard"

const (
	// maxMsg is the guard's receive buffer (MAX_MSG in guard_linux.c).
	maxMsg = 64 * 1024
	// replyTimeout bounds a request: the guard answers at once unless it
	// is stopped or wedged, and then it is replaced.
	replyTimeout = 5 * time.Second
	// restartBackoff spaces restarts of a guard that keeps failing.
	restartBackoff = time.Second
)

// Needed reports whether a container created with these clone flags needs
// the guard: in fallback mode always (PDEATHSIG does not survive a
// credential change), in native mode only without a new pid namespace
// (autokill kills the init, and only a pid namespace's init takes the other
// processes with it).
func Needed(native bool, cloneflags uint64) bool {
	return !native || cloneflags&unix.CLONE_NEWPID == 0
}

// checkDirs refuses what the guard must never be armed with: no directory
// at all, or the root of a cgroup hierarchy, which would make the daemon's
// death kill every process of the host.
func checkDirs(dirs []string) error {
	if len(dirs) == 0 {
		return fmt.Errorf("no cgroup directory: %w", errdefs.ErrInvalidArgument)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return fmt.Errorf("cgroup mounts: %w", err)
	}
	for _, d := range dirs {
		for _, m := range mounts {
			if filepath.Clean(d) == m.Mountpoint {
				return fmt.Errorf("%s is the root of a cgroup hierarchy: %w", d, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// Guard is the daemon's side of one guard process: what is armed, and the
// connection to the process that holds a copy of it.
type Guard struct {
	mu    sync.Mutex
	exe   *os.File            // the read-only shim binary; not owned
	armed map[string][]string // id → cgroup directories
	conn  *os.File            // our end of the SEQPACKET pair, nil when no guard runs
	proc  *pidfd.Process
	// restarting is set while a background restart is pending, so that a
	// guard that keeps dying is retried by one goroutine only.
	restarting bool
}

var std Guard

// Arm asks the daemon's guard (started on first use, from exe) to kill every
// process of dirs should the daemon die before Disarm(id).
func Arm(ctx context.Context, exe *os.File, id string, dirs []string) error {
	return std.Arm(ctx, exe, id, dirs)
}

// Disarm forgets id; nothing happens to its cgroup when the daemon dies.
func Disarm(ctx context.Context, id string) error { return std.Disarm(ctx, id) }

// Arm records id's cgroup directories in the guard, starting the guard if
// none runs. When it returns nil the guard holds them.
func (g *Guard) Arm(ctx context.Context, exe *os.File, id string, dirs []string) error {
	msg, err := encode('A', id, dirs)
	if err == nil {
		err = checkDirs(dirs)
	}
	if err != nil {
		return fmt.Errorf("arm the crash guard for %s: %w", id, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exe == nil {
		g.exe = exe
	}
	if g.armed == nil {
		g.armed = map[string][]string{}
	}
	if g.conn == nil {
		if err := g.startLocked(ctx); err != nil {
			return fmt.Errorf("arm the crash guard for %s: %w", id, err)
		}
	}
	if err := g.requestLocked(msg); err != nil {
		// One replacement, which also re-arms the others; if that
		// fails too the container cannot be guarded and must not run.
		log.G(ctx).WithError(err).Warn("crash guard did not answer; replacing it")
		if rerr := g.replaceLocked(ctx); rerr != nil {
			return fmt.Errorf("arm the crash guard for %s: %w (after %w)", id, rerr, err)
		}
		if err := g.requestLocked(msg); err != nil {
			return fmt.Errorf("arm the crash guard for %s: %w", id, err)
		}
	}
	g.armed[id] = dirs
	return nil
}

// Disarm forgets id. Unknown ids are not an error: cleanup may run twice.
func (g *Guard) Disarm(ctx context.Context, id string) error {
	msg, err := encode('D', id, nil)
	if err != nil {
		return fmt.Errorf("disarm the crash guard for %s: %w", id, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.armed[id]; !ok {
		return nil
	}
	delete(g.armed, id)
	if g.conn == nil {
		return nil // a restart re-arms only what is still in g.armed
	}
	if err := g.requestLocked(msg); err != nil {
		log.G(ctx).WithError(err).Warn("crash guard did not answer; replacing it")
		if rerr := g.replaceLocked(ctx); rerr != nil {
			return fmt.Errorf("disarm the crash guard for %s: %w (after %w)", id, rerr, err)
		}
	}
	return nil
}

// Pid is the guard process's pid, 0 when none runs.
func (g *Guard) Pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc == nil {
		return 0
	}
	return g.proc.Pid()
}

func (g *Guard) startLocked(ctx context.Context) error {
	if g.exe == nil {
		return errors.New("crash guard: no binary to run")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "guard-conn"), os.NewFile(uintptr(fds[1]), "guard-conn-child")
	defer theirs.Close()
	tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, opt, &tv); err != nil {
			ours.Close()
			return os.NewSyscallError("setsockopt", err)
		}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		ours.Close()
		return err
	}
	defer null.Close()
	p, err := pidfd.SpawnHelper(&pidfd.HelperAttr{
		Exe:   g.exe,
		Args:  []string{"containerd-shim-autokill-v1", Arg, strconv.Itoa(os.Getpid())},
		Stdio: [3]*os.File{null, null, os.Stderr},
		Conn:  theirs,
	})
	if err != nil {
		ours.Close()
		return fmt.Errorf("start the crash guard: %w", err)
	}
	g.conn, g.proc = ours, p
	log.G(ctx).WithField("guard", p.Pid()).Debug("crash guard started")
	go g.watch(p)
	return nil
}

// stopLocked ends the current guard. SIGKILL comes before our end of the
// socket closes: a live guard that saw EOF first would take it for the
// daemon's death and kill every armed container.
func (g *Guard) stopLocked() {
	if g.proc != nil {
		_ = g.proc.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
		_, _ = g.proc.Wait(ctx)
		cancel()
		g.proc.Close()
		g.proc = nil
	}
	if g.conn != nil {
		g.conn.Close()
		g.conn = nil
	}
}

// replaceLocked starts a new guard holding everything armed, then ends the
// old one. Until the new one holds it all the old one stays: there is never
// a moment without a guard for a container that had one.
func (g *Guard) replaceLocked(ctx context.Context) error {
	oldConn, oldProc := g.conn, g.proc
	g.conn, g.proc = nil, nil
	err := g.startLocked(ctx)
	if err == nil {
		for id, dirs := range g.armed {
			msg, _ := encode('A', id, dirs)
			if err = g.requestLocked(msg); err != nil {
				err = fmt.Errorf("re-arm %s: %w", id, err)
				break
			}
		}
	}
	newConn, newProc := g.conn, g.proc
	g.conn, g.proc = oldConn, oldProc
	if err != nil {
		if newProc != nil {
			g.conn, g.proc = newConn, newProc
			g.stopLocked()
			g.conn, g.proc = oldConn, oldProc
		}
		return err
	}
	g.stopLocked()
	g.conn, g.proc = newConn, newProc
	return nil
}

// watch notices a guard that died while the daemon lives (the pidfd polls
// readable) and replaces it, re-arming everything.
func (g *Guard) watch(p *pidfd.Process) {
	e, werr := p.Wait(context.Background())
	ctx := context.Background()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc != p {
		return // replaced or stopped on purpose
	}
	l := log.G(ctx).WithFields(log.Fields{"guard": p.Pid(), "status": e.Status, "signal": e.Signal, "armed": len(g.armed)})
	if werr != nil {
		l = l.WithError(werr)
	}
	l.Error("crash guard exited while the daemon runs; restarting it")
	g.proc.Close()
	g.proc = nil
	g.conn.Close()
	g.conn = nil
	g.restartLocked(ctx)
}

func (g *Guard) restartLocked(ctx context.Context) {
	if len(g.armed) == 0 || g.restarting {
		return // the next Arm starts one
	}
	err := g.replaceLocked(ctx)
	if err == nil {
		log.G(ctx).WithFields(log.Fields{"guard": g.proc.Pid(), "armed": len(g.armed)}).Warn("crash guard restarted and re-armed")
		return
	}
	log.G(ctx).WithError(err).Errorf("restart the crash guard; retrying in %v", restartBackoff)
	g.restarting = true
	time.AfterFunc(restartBackoff, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.restarting = false
		if g.proc == nil {
			g.restartLocked(ctx)
		}
	})
}

// requestLocked sends one request and reads the guard's answer.
func (g *Guard) requestLocked(msg []byte) error {
	if g.conn == nil {
		return errors.New("crash guard not running")
	}
	fd := int(g.conn.Fd())
	if err := unix.Sendmsg(fd, msg, nil, nil, unix.MSG_NOSIGNAL); err != nil {
		return fmt.Errorf("crash guard %d: %w", g.proc.Pid(), os.NewSyscallError("sendmsg", err))
	}
	var buf [512]byte
	for {
		n, _, err := unix.Recvfrom(fd, buf[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("crash guard %d: %w", g.proc.Pid(), os.NewSyscallError("recv", err))
		}
		switch {
		case n == 0:
			return fmt.Errorf("crash guard %d hung up", g.proc.Pid())
		case buf[0] == 'k':
			return nil
		case buf[0] == 'e':
			return fmt.Errorf("crash guard %d refused: %s", g.proc.Pid(), buf[1:n])
		default:
			return fmt.Errorf("crash guard %d: unexpected answer %q", g.proc.Pid(), buf[:n])
		}
	}
}

// encode builds "<op>\0<id>\0<dir>\0...": NUL-separated, as no path or id
// can hold a NUL.
func encode(op byte, id string, dirs []string) ([]byte, error) {
	if id == "" || strings.IndexByte(id, 0) >= 0 {
		return nil, fmt.Errorf("bad container id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	var b bytes.Buffer
	b.WriteByte(op)
	b.WriteByte(0)
	b.WriteString(id)
	b.WriteByte(0)
	for _, d := range dirs {
		if !filepath.IsAbs(d) || strings.IndexByte(d, 0) >= 0 {
			return nil, fmt.Errorf("bad cgroup directory %q: %w", d, errdefs.ErrInvalidArgument)
		}
		b.WriteString(d)
		b.WriteByte(0)
	}
	if b.Len() > maxMsg {
		return nil, fmt.Errorf("%d bytes of cgroup directories for %s: %w", b.Len(), id, errdefs.ErrInvalidArgument)
	}
	return b.Bytes(), nil
}
