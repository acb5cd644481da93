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
//
// Size: a SEQPACKET message must fit the sender's SO_SNDBUF in one piece
// (af_unix refuses anything longer than sk_sndbuf less a small reserve with
// EMSGSIZE). NewPair raises the buffer to carry maxMessage, and every send
// checks the limit the socket really has, so a plan too large for it fails at
// SendPlan with InvalidArgument, before anything is written. The receiver
// peeks each message's length (MSG_PEEK|MSG_TRUNC) and allocates just that.
//
// Both ends treat the other as untrusted: a message that is not exactly one
// of the kinds above (unknown kind or field, trailing data, a plan that is not
// a JSON object, a field a kind does not carry) is an Internal error, never a
// half-decoded message.
package initsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ChildFd is the fd number of the socket in the setup face.
const ChildFd = 3

// The daemon starts the setup faces by exec'ing its own binary with one of
// these as argv[1]; main dispatches on it. Part of this protocol: both
// ends must agree on it, and nothing else may look like it.
const (
	// InitArg: the setup face of a container's init (internal/setup.Main).
	InitArg = "__autokill_init"
	// ExecArg: the exec face (internal/setup.ExecMain).
	ExecArg = "__autokill_exec"
)

const (
	// maxMessage bounds one message in either direction, whatever the
	// socket could carry: the receiver allocates what the peer announces,
	// so the peer must not be able to announce more. A plan is a few KiB.
	maxMessage = 1 << 20
	// sndbufReserve is what af_unix keeps of sk_sndbuf for itself: a
	// datagram longer than sk_sndbuf - 32 is EMSGSIZE (unix_dgram_sendmsg).
	sndbufReserve = 32
	// maxErrorLen bounds the text of a Fail message, so that a failure
	// naming many hostile paths is still reported instead of being too
	// large to send.
	maxErrorLen = 16 << 10
)

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
	// kindConsole carries the master of the pty the child allocated in the
	// container's devpts, as the one SCM_RIGHTS fd of its packet.
	kindConsole kind = "console"
)

type message struct {
	Kind  kind            `json:"kind"`
	Plan  json.RawMessage `json:"plan,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`
}

// planEnvelope is how many bytes a plan message adds to the plan's JSON.
var planEnvelope = func() int {
	b, err := json.Marshal(message{Kind: kindPlan, Plan: json.RawMessage("0")})
	if err != nil {
		panic(err)
	}
	return len(b) - 1
}()

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
	{"internal", errdefs.ErrInternal},
}

// ErrClosed is returned when the peer closed the socket: the other side is
// gone, so the operation cannot go on (FailedPrecondition).
var ErrClosed = fmt.Errorf("initsync: peer closed the socket: %w", errdefs.ErrFailedPrecondition)

// protocolError is a message the peer should never have sent.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("initsync: "+format+": %w", append(args, errdefs.ErrInternal)...)
}

// ChildError is a failure the setup face reported.
type ChildError struct {
	Msg  string
	Code string
}

func (e *ChildError) Error() string { return e.Msg }

// Unwrap gives the errdefs error the setup face classified the failure as;
// Unknown when it gave no class this side knows.
func (e *ChildError) Unwrap() error {
	for _, c := range codes {
		if c.name == e.Code {
			return c.err
		}
	}
	return errdefs.ErrUnknown
}

// conn is one end of the socketpair. Each side holds it in its own type,
// Parent or Child, which has only the messages that side sends and the
// ones it expects: a daemon cannot send Ready, a setup face cannot send a
// plan.
type conn struct{ f *os.File }

// Parent is the daemon's end: it sends the plan, Joined and Start, and
// receives Ready, the console and the exec's outcome.
type Parent struct{ c *conn }

// Child is the setup face's end (and, before the setup face runs, the
// clone3 trampoline's, which writes only fail messages: see spawn_linux.c).
type Child struct{ c *conn }

// NewPair returns the daemon's end and the child's end, both CLOEXEC, each
// with a send buffer raised to carry maxMessage where the kernel allows it.
func NewPair() (*Parent, *Child, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	for _, fd := range fds {
		if err := raiseSndbuf(fd); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, nil, err
		}
	}
	return &Parent{&conn{os.NewFile(uintptr(fds[0]), "initsync-parent")}},
		&Child{&conn{os.NewFile(uintptr(fds[1]), "initsync-child")}}, nil
}

// raiseSndbuf asks for a send buffer of twice maxMessage (the kernel doubles
// the value it is given): a largest plan still unread leaves room for Joined.
// SO_SNDBUFFORCE lets the root daemon pass net.core.wmem_max; without
// CAP_NET_ADMIN SO_SNDBUF is clamped to it, and sendLimit reports what that
// leaves. Only queued data is charged, so the size costs nothing idle.
func raiseSndbuf(fd int) error {
	want := maxMessage
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want)
	if err == unix.EPERM {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, want)
	}
	if err != nil {
		return os.NewSyscallError("setsockopt SO_SNDBUF", err)
	}
	return nil
}

// FromFd wraps the setup face's inherited socket.
func FromFd(fd int) *Child { return &Child{&conn{os.NewFile(uintptr(fd), "initsync")}} }

// File is the socket, for passing it to the child.
func (ch *Child) File() *os.File { return ch.c.f }

// Close closes the daemon's end.
func (p *Parent) Close() error { return p.c.f.Close() }

// Close closes the setup face's end.
func (ch *Child) Close() error { return ch.c.f.Close() }

// userNSGo is the packet that lets the trampoline of a new user namespace
// go on (spawn_linux.c: userns_wait) once the daemon wrote its maps. The
// trampoline reads any packet as the go-ahead and EOF as the daemon giving
// up. It is not JSON: the setup face, which speaks JSON, is not running yet.
var userNSGo = []byte("userns-go")

// ReleaseUserNS lets the trampoline of a new user namespace go on: its
// uid_map and gid_map are written.
func (p *Parent) ReleaseUserNS() error {
	if _, err := p.c.f.Write(userNSGo); err != nil {
		return fmt.Errorf("initsync: release the user namespace's trampoline: %w", err)
	}
	return nil
}

// sendLimit is the longest message this end can send: what its send buffer
// really holds, read back at each send (the kernel may have clamped the
// request, and the setup face inherits a socket it did not set up).
func (c *conn) sendLimit() (int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		sndbuf int
		gerr   error
	)
	if err := rc.Control(func(fd uintptr) {
		sndbuf, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, os.NewSyscallError("getsockopt SO_SNDBUF", gerr)
	}
	return min(maxMessage, sndbuf-sndbufReserve), nil
}

// PlanLimit is the size of the largest plan (its JSON encoding) SendPlan
// can send on this socket.
func (p *Parent) PlanLimit() (int, error) {
	l, err := p.c.sendLimit()
	return l - planEnvelope, err
}

func (c *conn) send(m message) error { return c.sendFds(m, nil) }

func (c *conn) sendFds(m message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("initsync: encode %s: %w", m.Kind, err)
	}
	limit, err := c.sendLimit()
	if err != nil {
		return fmt.Errorf("initsync: send %s: %w", m.Kind, err)
	}
	if len(b) > limit {
		if m.Kind == kindPlan {
			return fmt.Errorf("initsync: spec too large: plan of %d bytes, limit %d: %w",
				len(b)-planEnvelope, limit-planEnvelope, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("initsync: %s message of %d bytes, limit %d: %w", m.Kind, len(b), limit, errdefs.ErrInvalidArgument)
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for {
			werr = unix.Sendmsg(int(fd), b, oob, nil, 0)
			if werr != unix.EINTR {
				return werr != unix.EAGAIN
			}
		}
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("initsync: send %s: %w", m.Kind, werr)
	}
	return nil
}

func (c *conn) recv() (message, error) {
	m, fds, err := c.recvFds()
	closeAll(fds)
	if err == nil && len(fds) > 0 {
		return message{}, protocolError("%s message carries %d fds", m.Kind, len(fds))
	}
	return m, err
}

// recvFds is recv for a message that may carry fds (CLOEXEC, the
// caller's to close).
func (c *conn) recvFds() (message, []*os.File, error) {
	b, fds, err := c.readPacket()
	if err != nil {
		return message{}, nil, err
	}
	m, err := decode(b)
	if err != nil {
		closeAll(fds)
		return message{}, nil, err
	}
	return m, fds, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// readPacket returns the next packet, in a buffer of its size, and the fds
// it carried.
func (c *conn) readPacket() ([]byte, []*os.File, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var (
		b    []byte
		fds  []int
		rerr error
		eof  bool
	)
	if err := rc.Read(func(fd uintptr) bool {
		b, fds, eof, rerr = readPacketFd(int(fd))
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, nil, err
	}
	files := make([]*os.File, 0, len(fds))
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "initsync-fd"))
	}
	if rerr != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("initsync: recv: %w", rerr)
	}
	if eof {
		return nil, nil, ErrClosed
	}
	return b, files, nil
}

// maxFds is the most fds one packet may carry; more are a protocol error
// (and closed: the kernel truncates the control data, dropping them).
const maxFds = 1

func readPacketFd(fd int) (b []byte, fds []int, eof bool, err error) {
	resets := 0
	for {
		// MSG_TRUNC makes recv return the packet's real length.
		n, _, err := unix.Recvfrom(fd, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ECONNRESET && resets == 0:
			// A peer that exits with one of our messages unread leaves
			// ECONNRESET, which the kernel reports (once) ahead of the
			// messages the peer sent before: its Fail is still queued.
			resets++
			continue
		case err != nil:
			return nil, nil, false, err
		case n > maxMessage:
			// Consume it: reading into a short buffer drops the rest
			// (and any fds, closed by the kernel with the control data).
			_, _, _ = unix.Recvfrom(fd, make([]byte, 1), 0)
			return nil, nil, false, protocolError("message of %d bytes exceeds %d", n, maxMessage)
		}
		b = make([]byte, n)
		oob := make([]byte, unix.CmsgSpace(maxFds*4))
		got, oobn, rflags, _, err := unix.Recvmsg(fd, b, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, false, err
		}
		fds, ferr := parseRights(oob[:oobn])
		switch {
		case ferr != nil:
			err = ferr
		case rflags&unix.MSG_CTRUNC != 0:
			err = protocolError("message carries more than %d fds", maxFds)
		case rflags&unix.MSG_TRUNC != 0 || got != n:
			err = protocolError("message changed size between peek (%d) and read (%d)", n, got)
		case n == 0 && len(fds) == 0 && hungUp(fd):
			// EOF and an empty packet both read as 0 bytes; only a peer
			// that hung up is EOF.
			return nil, nil, true, nil
		case n == 0:
			err = protocolError("empty message")
		}
		if err != nil {
			for _, f := range fds {
				unix.Close(f)
			}
			return nil, nil, false, err
		}
		return b, fds, false, nil
	}
}

// parseRights returns the fds of SCM_RIGHTS control messages.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, protocolError("control data: %v", err)
	}
	var fds []int
	for _, m := range msgs {
		fs, err := unix.ParseUnixRights(&m)
		if err != nil {
			for _, f := range fds {
				unix.Close(f)
			}
			return nil, protocolError("control data: %v", err)
		}
		fds = append(fds, fs...)
	}
	return fds, nil
}

func hungUp(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || fds[0].Revents&(unix.POLLHUP|unix.POLLRDHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}

// decode parses one packet. It returns a message or an error, never both: a
// Fail is returned as a *ChildError.
func decode(b []byte) (message, error) {
	m, err := decodeObject(b)
	if err != nil {
		return message{}, protocolError("bad message: %v", err)
	}
	switch m.Kind {
	case kindPlan:
		if len(m.Plan) == 0 || m.Plan[0] != '{' || m.Error != "" || m.Code != "" {
			return message{}, protocolError("bad plan message")
		}
	case kindReady, kindStart, kindJoined, kindConsole:
		if m.Plan != nil || m.Error != "" || m.Code != "" {
			return message{}, protocolError("bad %s message: it carries a payload", m.Kind)
		}
	case kindFail:
		if m.Plan != nil {
			return message{}, protocolError("bad fail message: it carries a plan")
		}
		msg := m.Error
		if msg == "" {
			msg = "setup failed (no reason given)"
		}
		return message{}, &ChildError{Msg: msg, Code: m.Code}
	default:
		return message{}, protocolError("unknown message kind %.64q", m.Kind)
	}
	return m, nil
}

// decodeObject reads exactly one JSON object with message's keys, each at
// most once and spelled exactly: encoding/json alone would take "PLAN" for
// "plan", the last of duplicate keys, and ignore data after the object.
func decodeObject(b []byte) (message, error) {
	var m message
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return m, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return m, err
		}
		key, _ := t.(string)
		if seen[key] {
			return m, fmt.Errorf("duplicate key %.64q", key)
		}
		seen[key] = true
		switch key {
		case "kind":
			err = d.Decode(&m.Kind)
		case "plan":
			err = d.Decode(&m.Plan)
		case "error":
			err = d.Decode(&m.Error)
		case "code":
			err = d.Decode(&m.Code)
		default:
			return m, fmt.Errorf("unknown key %.64q", key)
		}
		if err != nil {
			return m, fmt.Errorf("key %s: %w", key, err)
		}
	}
	if t, err := d.Token(); err != nil || t != json.Delim('}') {
		return m, errors.New("unterminated object")
	}
	if _, err := d.Token(); err != io.EOF {
		return m, errors.New("data after the JSON object")
	}
	return m, nil
}

func (c *conn) expect(k kind) (message, error) {
	m, err := c.recv()
	if err != nil {
		return message{}, err
	}
	if m.Kind != k {
		return message{}, protocolError("got %q, want %q", m.Kind, k)
	}
	return m, nil
}

// SendPlan sends the plan (any JSON-encodable value) to the setup face. A
// plan larger than the socket can carry is InvalidArgument, and nothing is
// sent.
func (p *Parent) SendPlan(plan any) error {
	b, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("initsync: encode plan: %w", err)
	}
	return p.c.send(message{Kind: kindPlan, Plan: b})
}

// RecvPlan decodes the plan into v.
func (ch *Child) RecvPlan(v any) error {
	m, err := ch.c.expect(kindPlan)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Plan, v); err != nil {
		return protocolError("decode plan: %v", err)
	}
	return nil
}

// SendJoined tells the setup face it is in its cgroup.
func (p *Parent) SendJoined() error { return p.c.send(message{Kind: kindJoined}) }

// RecvJoined waits for SendJoined.
func (ch *Child) RecvJoined() error { _, err := ch.c.expect(kindJoined); return err }

// Ready tells the daemon that setup is done and the init waits for start.
func (ch *Child) Ready() error { return ch.c.send(message{Kind: kindReady}) }

// RecvReady waits for Ready; a *ChildError carries the setup face's failure.
func (p *Parent) RecvReady() error { _, err := p.c.expect(kindReady); return err }

// SendStart tells the setup face to exec the entrypoint.
func (p *Parent) SendStart() error { return p.c.send(message{Kind: kindStart}) }

// RecvStart waits for SendStart.
func (ch *Child) RecvStart() error { _, err := ch.c.expect(kindStart); return err }

// RecvExec waits for the outcome of the exec: nil when the socket closed
// because exec succeeded, a *ChildError when the setup face reported failure.
func (p *Parent) RecvExec() error {
	m, err := p.c.recv()
	if err == ErrClosed {
		return nil
	}
	if err != nil {
		return err
	}
	return protocolError("unexpected %q after start", m.Kind)
}

// SendConsole hands the pty master to the daemon (it keeps its own copy,
// which the caller closes).
func (ch *Child) SendConsole(master *os.File) error {
	err := ch.c.sendFds(message{Kind: kindConsole}, []int{int(master.Fd())})
	runtime.KeepAlive(master)
	return err
}

// RecvConsole waits for SendConsole and returns the master (CLOEXEC); a
// *ChildError carries the child's failure instead.
func (p *Parent) RecvConsole() (*os.File, error) {
	m, fds, err := p.c.recvFds()
	if err != nil {
		return nil, err
	}
	if m.Kind != kindConsole || len(fds) != 1 {
		closeAll(fds)
		return nil, protocolError("got %q with %d fds, want %q with one", m.Kind, len(fds), kindConsole)
	}
	return fds[0], nil
}

// Fail reports err to the daemon.
func (ch *Child) Fail(err error) error {
	m := message{Kind: kindFail, Error: truncate(err.Error(), maxErrorLen)}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			m.Code = c.name
			break
		}
	}
	return ch.c.send(m)
}

// truncate cuts s to at most n bytes, not inside a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = " [...]"
	cut := n - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}
