package process

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// stdio holds the container's three fds until they are handed to clone3, and
// the shim's keep-alive readers afterwards.
type stdio struct {
	child [3]*os.File
	// stdin is the shim's own writer of the stdin fifo, held until CloseIO:
	// the process reads EOF only once it and every client's writer are
	// closed, so a client that detaches does not end the process's input and
	// the next one to attach writes on (containerd's runc shim holds one
	// too). The shim never writes to it.
	stdin *os.File
	// keep holds a reader on each output fifo for the container's life, so
	// a container writing after its client went away does not die of
	// SIGPIPE (containerd's runc shim does the same).
	keep []*os.File
	// logger is the binary:// logging process, if any.
	logger *logger

	// With a terminal the process gets /dev/null and its pty; the shim
	// keeps containerd's stdin (termIn, nil if none) and stdout (termOut)
	// and copies between them and the pty's master (console).
	termIn, termOut *os.File
	console         *console
}

// openTerminalStdio opens the IO of a process with a terminal.
func openTerminalStdio(ctx context.Context, id, ns, in, out, errp string) (*stdio, error) {
	s, err := openStdio(ctx, id, ns, in, out, errp)
	if err != nil {
		return nil, err
	}
	if in != "" {
		// openStdio holds the shim's writer of it (s.stdin), so a
		// detach is no end of input here either; CloseIO closes it,
		// after which the end of containerd's input hangs the terminal
		// up (as with containerd's runc shim).
		s.termIn = s.child[0]
	} else {
		s.child[0].Close()
	}
	s.termOut = s.child[1]
	s.child[2].Close()
	s.child = [3]*os.File{}
	for i := range s.child {
		if s.child[i], err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
			s.closeChild()
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// openStdio opens the IO containerd asked for. Fifos are handed to the
// container directly: no copy goroutines, no pipes in between.
func openStdio(ctx context.Context, id, ns, in, out, errp string) (_ *stdio, err error) {
	s := &stdio{}
	defer func() {
		if err == nil {
			err = s.applyIOOwner(ctx, id) // io_owner.go: runtime options IoUid/IoGid
		}
		if err != nil {
			s.closeChild()
			s.close()
		}
	}()
	if s.child[0], err = s.openInput(in); err != nil {
		return nil, fmt.Errorf("stdin %q: %w", in, err)
	}
	if u, err := url.Parse(out); err == nil && u.Scheme == "binary" {
		if errp != out {
			return nil, fmt.Errorf("stdout %q and stderr %q: a logging binary must take both: %w", out, errp, errdefs.ErrInvalidArgument)
		}
		// id is "<container>" or "<container>/<exec>"; an exec's logger
		// gets the exec's id as CONTAINER_ID, as runc's shim sets it.
		lid := id
		if _, e, ok := strings.Cut(id, "/"); ok {
			lid = e
		}
		if s.logger, err = startLogger(ctx, u, lid, ns); err != nil {
			return nil, err
		}
		s.child[1], s.child[2] = s.logger.stdout, s.logger.stderr
		return s, nil
	}
	for i, p := range []string{out, errp} {
		f, keep, err := s.openOutput(p)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", []string{"stdout", "stderr"}[i], p, err)
		}
		s.child[i+1] = f
		if keep != nil {
			s.keep = append(s.keep, keep)
		}
	}
	return s, nil
}

// openInput opens the process's stdin and, for a fifo, the shim's writer
// of it (s.stdin).
func (s *stdio) openInput(p string) (_ *os.File, err error) {
	if p == "" {
		return os.Open(os.DevNull)
	}
	if isURI(p) {
		return nil, fmt.Errorf("stdin from a URI: %w", errdefs.ErrNotImplemented)
	}
	// O_NONBLOCK: opening a fifo for reading must not wait for a writer.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeNamedPipe != 0 {
		// Through our reader's fd: the same fifo, and with a reader
		// there the open neither blocks nor fails with ENXIO.
		if s.stdin, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|unix.O_NONBLOCK, 0); err != nil {
			return nil, fmt.Errorf("hold the stdin fifo open: %w", err)
		}
	}
	// The container reads with blocking semantics.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		return nil, err
	}
	return f, nil
}

// closeStdin drops the shim's writer of the stdin fifo (CloseIO): the
// process reads EOF once the clients' writers are closed too. Nothing to
// do without one, or the second time.
func (s *stdio) closeStdin() error {
	if s == nil || s.stdin == nil {
		return nil
	}
	err := s.stdin.Close()
	s.stdin = nil
	return err
}

func (s *stdio) openOutput(p string) (child, keep *os.File, err error) {
	if p == "" {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		return f, nil, err
	}
	if isURI(p) {
		u, err := url.Parse(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
		}
		if u.Scheme != "file" {
			// binary:// is handled by openStdio for both streams.
			return nil, nil, fmt.Errorf("%s:// logging is not supported by io.containerd.autokill.v1 yet: %w", u.Scheme, errdefs.ErrNotImplemented)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return nil, nil, fmt.Errorf("log file %q: not an absolute path: %w", p, errdefs.ErrInvalidArgument)
		}
		// Its directory too, as containerd's runc shim does.
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, nil, err
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		return f, nil, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	if st.Mode()&os.ModeNamedPipe == 0 {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		return f, nil, err
	}
	return openFifoWriter(p)
}

// fifoReaderWait bounds how long opening an output fifo waits for its
// client's reader.
var fifoReaderWait = 10 * time.Second

// openFifoWriter opens the process's end of an output fifo, and the
// shim's keep-alive reader. The writer is opened first, blocking until
// the client's reader is there: containerd's client opens its reader in
// a goroutine that may not have reached open(2) yet, and a reader that
// arrives after a short-lived process has written and exited would wait
// for a writer that never comes again (its data sits in the pipe, held
// by our reader, until the client gives up). containerd's runc shim
// opens its fifo writers the same way. Only if no reader comes in time
// does our own reader complete the open.
func openFifoWriter(p string) (child, keep *os.File, err error) {
	type result struct {
		f   *os.File
		err error
	}
	opened := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		opened <- result{f, err}
	}()
	var r result
	select {
	case r = <-opened:
	case <-time.After(fifoReaderWait):
	}
	// O_NONBLOCK: a reader's open never waits; it also ends the writer's
	// open above if that is still waiting.
	keep, err = os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if r.f == nil && r.err == nil {
		if err != nil {
			// Still waiting for a reader, which may never come: whoever
			// finishes that open closes it.
			go func() {
				if r := <-opened; r.f != nil {
					r.f.Close()
				}
			}()
			return nil, nil, err
		}
		r = <-opened
	}
	if err != nil || r.err != nil {
		if keep != nil {
			keep.Close()
		}
		if r.f != nil {
			r.f.Close()
		}
		return nil, nil, errors.Join(r.err, err)
	}
	return r.f, keep, nil
}

func isURI(p string) bool {
	u, err := url.Parse(p)
	return err == nil && u.Scheme != "" && len(u.Scheme) > 1
}

// closeChild drops the shim's copies of the container's fds once clone3 has
// duplicated them: readers must see EOF when the container's last writer ends.
func (s *stdio) closeChild() {
	for i, f := range s.child {
		if f != nil {
			f.Close()
			s.child[i] = nil
		}
	}
}

func (s *stdio) close() error {
	var errs []error
	if s.console != nil {
		s.console.close()
		s.console = nil
	}
	for _, f := range []*os.File{s.termIn, s.termOut} {
		if f != nil {
			f.Close()
		}
	}
	s.termIn, s.termOut = nil, nil
	errs = append(errs, s.closeStdin())
	for _, f := range s.keep {
		errs = append(errs, f.Close())
	}
	s.keep = nil
	if s.logger != nil {
		errs = append(errs, s.logger.wait())
		s.logger = nil
	}
	return errors.Join(errs...)
}

// attachConsole starts copying for the pty master the process sent.
func (s *stdio) attachConsole(ctx context.Context, id string, master *os.File) error {
	c, err := startConsole(ctx, id, master, s.termIn, s.termOut)
	if err != nil {
		return err
	}
	// The copier has its own fd of stdin, and owns stdout from here.
	if s.termIn != nil {
		s.termIn.Close()
		s.termIn = nil
	}
	s.termOut = nil
	s.console = c
	return nil
}

// drainConsole: see console.drain; nothing without a terminal.
func (s *stdio) drainConsole() {
	if s != nil && s.console != nil {
		s.console.drain()
	}
}

// outputDrain bounds how long an exit waits for containerd to read what
// the process left in its output fifos.
const outputDrain = 2 * time.Second

// drainOutput waits (bounded) until containerd has read what the process
// wrote to its output fifos. The process writes into the fifo itself, so
// at its exit the last of its output may still sit in the pipe; containerd
// closes its reader soon after it sees the exit (containerd's runc shim
// finishes its own copy before it reports the exit, for the same reason).
func (s *stdio) drainOutput() {
	if s == nil {
		return
	}
	deadline := time.Now().Add(outputDrain)
	for _, f := range s.keep {
		for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
			n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ) // FIONREAD: bytes unread in the pipe
			if err != nil || n == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(wait)
		}
	}
}
