// Package initsync is the protocol between the shim daemon and the setup face
// of a container's init, over one SOCK_SEQPACKET socketpair (fd 3 in the
// child). Each message is one packet holding one JSON object.
//
//	daemon                              setup face (pid 1 of the container)
//	  SendPlan(plan)  ───────────────▶  RecvPlan
//	  [v1: cgroup attach]                rootfs, mounts, ... (not cgroup-related)
//	  SendJoined      ───────────────▶  RecvJoined, before the first step that
//	                                     needs its cgroup (cgroupns, cgroup mounts)
//	                                     ..., devices, pivot_root, ...
//	  RecvReady       ◀───────────────  Ready()          or Fail(err)
//	  SendStart       ───────────────▶  RecvStart
//	                                     execve(entrypoint)
//	  RecvExec        ◀───────────────  EOF: the socket is CLOEXEC, exec worked
//	                                     or Fail(err): exec failed
//
// A Fail message may replace any message the setup face sends. The daemon
// treats EOF before Ready as a setup failure (the child died).
package initsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ChildFd is the fd number of the socket in the setup face.
const ChildFd = 3

// maxPacket bounds one message; a plan is a few KiB.
const maxPacket = 1 << 20

type kind string

const (
	kindPlan  kind = "plan"
	kindReady kind = "ready"
	kindStart kind = "start"
	// kindJoined: the daemon has put the child into its cgroup. Sent after
	// the plan so that the slow cgroup v1 attach (an RCU wait of ~10 ms)
	// overlaps with the setup face's mounts.
	kindJoined kind = "joined"
	kindFail   kind = "fail"
)

type message struct {
	Kind  kind            `json:"kind"`
	Plan  json.RawMessage `json:"plan,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`
}

// codes carries the errdefs class of a setup failure across the socket, so
// that containerd gets InvalidArgument for a hostile bundle and NotFound for a
// missing entrypoint rather than Unknown.
var codes = []struct {
	name string
	err  error
}{
	{"invalid-argument", errdefs.ErrInvalidArgument},
	{"not-found", errdefs.ErrNotFound},
	{"failed-precondition", errdefs.ErrFailedPrecondition},
	{"not-implemented", errdefs.ErrNotImplemented},
	{"permission-denied", errdefs.ErrPermissionDenied},
}

// ErrClosed is returned when the peer closed the socket.
var ErrClosed = errors.New("initsync: peer closed the socket")

// ChildError is a failure the setup face reported.
type ChildError struct {
	Msg  string
	Code string
}

func (e *ChildError) Error() string { return e.Msg }

// Unwrap gives the errdefs error the setup face classified the failure as.
func (e *ChildError) Unwrap() error {
	for _, c := range codes {
		if c.name == e.Code {
			return c.err
		}
	}
	return nil
}

// Conn is one end of the socketpair.
type Conn struct{ f *os.File }

// NewPair returns the daemon's end and the child's end, both CLOEXEC.
func NewPair() (parent, child *Conn, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return &Conn{os.NewFile(uintptr(fds[0]), "initsync-parent")},
		&Conn{os.NewFile(uintptr(fds[1]), "initsync-child")}, nil
}

// FromFd wraps the setup face's inherited socket.
func FromFd(fd int) *Conn { return &Conn{os.NewFile(uintptr(fd), "initsync")} }

// File exposes the socket, for passing it to the child.
func (c *Conn) File() *os.File { return c.f }

// Close closes the socket.
func (c *Conn) Close() error { return c.f.Close() }

func (c *Conn) send(m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("initsync: %s message of %d bytes is too large", m.Kind, len(b))
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return werr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("initsync: send %s: %w", m.Kind, werr)
	}
	return nil
}

func (c *Conn) recv() (message, error) {
	buf := make([]byte, maxPacket)
	n, err := c.f.Read(buf)
	if errors.Is(err, unix.ECONNRESET) {
		// A peer that exits with one of our messages unread leaves
		// ECONNRESET, which the kernel reports (once) ahead of the
		// messages the peer sent before: its Fail is still queued.
		n, err = c.f.Read(buf)
	}
	if err == io.EOF || (err == nil && n == 0) {
		return message{}, ErrClosed
	}
	if err != nil {
		return message{}, fmt.Errorf("initsync: recv: %w", err)
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return message{}, fmt.Errorf("initsync: bad message: %w", err)
	}
	if m.Kind == kindFail {
		return m, &ChildError{Msg: m.Error, Code: m.Code}
	}
	return m, nil
}

func (c *Conn) expect(k kind) (message, error) {
	m, err := c.recv()
	if err != nil {
		return m, err
	}
	if m.Kind != k {
		return m, fmt.Errorf("initsync: got %q, want %q", m.Kind, k)
	}
	return m, nil
}

// SendPlan sends the plan (any JSON-encodable value) to the setup face.
func (c *Conn) SendPlan(plan any) error {
	b, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("initsync: encode plan: %w", err)
	}
	return c.send(message{Kind: kindPlan, Plan: b})
}

// RecvPlan decodes the plan into v.
func (c *Conn) RecvPlan(v any) error {
	m, err := c.expect(kindPlan)
	if err != nil {
		return err
	}
	return json.Unmarshal(m.Plan, v)
}

// SendJoined tells the setup face it is in its cgroup.
func (c *Conn) SendJoined() error { return c.send(message{Kind: kindJoined}) }

// RecvJoined waits for SendJoined.
func (c *Conn) RecvJoined() error { _, err := c.expect(kindJoined); return err }

// Ready tells the daemon that setup is done and the init waits for start.
func (c *Conn) Ready() error { return c.send(message{Kind: kindReady}) }

// RecvReady waits for Ready; a *ChildError carries the setup face's failure.
func (c *Conn) RecvReady() error { _, err := c.expect(kindReady); return err }

// SendStart tells the setup face to exec the entrypoint.
func (c *Conn) SendStart() error { return c.send(message{Kind: kindStart}) }

// RecvStart waits for SendStart.
func (c *Conn) RecvStart() error { _, err := c.expect(kindStart); return err }

// RecvExec waits for the outcome of the exec: nil when the socket closed
// because exec succeeded, a *ChildError when the setup face reported failure.
func (c *Conn) RecvExec() error {
	m, err := c.recv()
	if err == ErrClosed {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("initsync: unexpected %q after start", m.Kind)
}

// Fail reports err to the daemon.
func (c *Conn) Fail(err error) error {
	m := message{Kind: kindFail, Error: err.Error()}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			m.Code = c.name
			break
		}
	}
	return c.send(m)
}
