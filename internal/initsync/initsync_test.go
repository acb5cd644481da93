package initsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestProtocol(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	type plan struct{ Hostname string }
	go func() {
		var p plan
		if err := child.RecvPlan(&p); err != nil || p.Hostname != "box" {
			child.Fail(fmt.Errorf("bad plan %+v %v", p, err))
			return
		}
		if err := child.RecvJoined(); err != nil {
			child.Fail(err)
			return
		}
		child.Ready()
		if child.RecvStart() != nil {
			return
		}
		child.Close() // what a successful exec looks like
	}()
	if err := parent.SendPlan(plan{Hostname: "box"}); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendJoined(); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvReady(); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendStart(); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvExec(); err != nil {
		t.Fatalf("exec: %v", err)
	}
}

func TestFailCarriesCode(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	child.Fail(fmt.Errorf("mount /evil: %w", errdefs.ErrInvalidArgument))
	err = parent.RecvReady()
	var ce *ChildError
	if !errors.As(err, &ce) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v (%T), want an InvalidArgument ChildError", err, err)
	}
}

func TestEOFBeforeReady(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Close()
	if err := parent.RecvReady(); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

// A setup face that fails before it reads Joined exits with that message
// unread; its Fail must still reach the daemon (not ECONNRESET).
func TestFailAfterUnreadMessage(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Fail(fmt.Errorf("mount /evil: %w", errdefs.ErrInvalidArgument))
	if err := parent.SendJoined(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	if err := parent.RecvReady(); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v, want the child's InvalidArgument failure", err)
	}
}

// rawFd runs fn on the socket of c.
func rawFd(t *testing.T, c *conn, fn func(fd int)) {
	t.Helper()
	rc, err := c.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// planOfSize is a JSON object whose encoding is exactly n bytes.
func planOfSize(t *testing.T, n int) json.RawMessage {
	t.Helper()
	const frame = `{"x":""}`
	if n < len(frame) {
		t.Fatalf("plan of %d bytes is too small", n)
	}
	return json.RawMessage(`{"x":"` + strings.Repeat("a", n-len(frame)) + `"}`)
}

// The largest plan the socket carries reaches the setup face whole; one byte
// more is InvalidArgument at SendPlan and nothing is written (before: a
// late, unclassified EMSGSIZE for any plan beyond the default SO_SNDBUF).
func TestPlanSizeLimit(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	limit, err := parent.PlanLimit()
	if err != nil {
		t.Fatal(err)
	}
	// A root daemon gets SO_SNDBUFFORCE: the full maxMessage, well past the
	// default wmem (212992), whatever net.core.wmem_max says.
	if os.Geteuid() == 0 && limit != maxMessage-planEnvelope {
		t.Errorf("plan limit as root = %d, want %d", limit, maxMessage-planEnvelope)
	}
	got := make(chan error, 1)
	go func() {
		var p map[string]string
		if err := child.RecvPlan(&p); err != nil {
			got <- err
			return
		}
		if len(p["x"]) != limit-len(`{"x":""}`) {
			got <- fmt.Errorf("received a plan of %d bytes", len(p["x"]))
			return
		}
		got <- child.RecvJoined()
	}()
	if err := parent.SendPlan(planOfSize(t, limit)); err != nil {
		t.Fatalf("plan of %d bytes (the limit): %v", limit, err)
	}
	err = parent.SendPlan(planOfSize(t, limit+1))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(),
		fmt.Sprintf("spec too large: plan of %d bytes, limit %d", limit+1, limit)) {
		t.Fatalf("plan of %d bytes: got %v, want InvalidArgument \"spec too large\"", limit+1, err)
	}
	// Nothing of the refused plan was sent: the next message is Joined.
	if err := parent.SendJoined(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("setup face: %v", err)
	}
}

// The limit is the kernel's, not a guess: with a smaller send buffer the
// longest message it reports is sent, and one byte more is EMSGSIZE.
func TestSendLimitIsTheSockets(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	rawFd(t, parent.c, func(fd int) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 32<<10); err != nil {
			t.Fatal(err)
		}
	})
	limit, err := parent.PlanLimit()
	if err != nil {
		t.Fatal(err)
	}
	if limit >= maxMessage-planEnvelope || limit < 32<<10 {
		t.Fatalf("plan limit %d with a 64 KiB send buffer", limit)
	}
	if err := parent.SendPlan(planOfSize(t, limit)); err != nil {
		t.Fatalf("plan of %d bytes (the limit): %v", limit, err)
	}
	var p map[string]string
	if err := child.RecvPlan(&p); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendPlan(planOfSize(t, limit+1)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("plan over the limit: %v", err)
	}
	rawFd(t, parent.c, func(fd int) {
		if _, err := unix.Write(fd, make([]byte, limit+planEnvelope+1)); err != unix.EMSGSIZE {
			t.Errorf("write of limit+1 bytes: %v, want EMSGSIZE: the limit is not the socket's", err)
		}
	})
}

// Every Create receives four messages: each must cost its own size, not a
// maxMessage buffer.
func TestRecvAllocatesMessageSize(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	const rounds = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range rounds {
		if err := parent.SendJoined(); err != nil {
			t.Fatal(err)
		}
		if err := child.RecvJoined(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / rounds; per > 8<<10 {
		t.Errorf("a Joined message allocates %d bytes to send and receive", per)
	}
}

// A hostile peer's packets are Internal errors, never half-decoded
// messages, and the connection goes on with the next packet.
func TestRecvRejectsBadPackets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		packet string
	}{
		{"not json", "{nope"},
		{"unknown kind", `{"kind":"shell"}`},
		{"no kind", `{}`},
		{"null", `null`},
		{"unknown field", `{"kind":"ready","extra":1}`},
		{"trailing data", `{"kind":"ready"}{"kind":"ready"}`},
		{"ready with a plan", `{"kind":"ready","plan":{}}`},
		{"ready with an error", `{"kind":"ready","error":"x"}`},
		{"fail with a plan", `{"kind":"fail","plan":{},"error":"x"}`},
		{"empty packet", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, child, err := NewPair()
			if err != nil {
				t.Fatal(err)
			}
			defer parent.Close()
			defer child.Close()
			rawFd(t, child.c, func(fd int) {
				if _, err := unix.Write(fd, []byte(tc.packet)); err != nil {
					t.Fatal(err)
				}
			})
			if err := parent.RecvReady(); !errdefs.IsInternal(err) {
				t.Fatalf("RecvReady: %v, want Internal", err)
			}
			if err := child.Ready(); err != nil {
				t.Fatal(err)
			}
			if err := parent.RecvReady(); err != nil {
				t.Fatalf("the next message: %v", err)
			}
		})
	}
	// An empty packet is not the EOF of a successful exec.
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	rawFd(t, child.c, func(fd int) {
		if _, err := unix.Write(fd, nil); err != nil {
			t.Fatal(err)
		}
	})
	if err := parent.RecvExec(); err == nil {
		t.Fatal("RecvExec took an empty packet for a successful exec")
	}
}

func TestRecvRejectsOversizedPacket(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	big := make([]byte, maxMessage+1)
	rawFd(t, child.c, func(fd int) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*maxMessage); err == unix.EPERM {
			t.Skip("needs CAP_NET_ADMIN (SO_SNDBUFFORCE) to send more than net.core.wmem_max")
		} else if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(fd, big); err != nil {
			t.Fatal(err)
		}
	})
	if err := parent.RecvReady(); !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("RecvReady: %v, want Internal", err)
	}
	if err := child.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvReady(); err != nil {
		t.Fatalf("the next message: %v", err)
	}
}

// A failure naming many long paths is still reported, cut short.
func TestFailTruncatesLongError(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	long := strings.Repeat("é", maxMessage)
	if err := child.Fail(fmt.Errorf("mount %s: %w", long, errdefs.ErrInvalidArgument)); err != nil {
		t.Fatal(err)
	}
	err = parent.RecvReady()
	if !errdefs.IsInvalidArgument(err) || len(err.Error()) > maxErrorLen || !utf8.ValidString(err.Error()) ||
		!strings.HasPrefix(err.Error(), "mount é") {
		t.Fatalf("got %d bytes, class invalid=%v", len(err.Error()), errdefs.IsInvalidArgument(err))
	}
}

func TestChildErrorWithoutKnownCodeIsUnknown(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	rawFd(t, child.c, func(fd int) {
		if _, err := unix.Write(fd, []byte(`{"kind":"fail","error":"x","code":"martian"}`)); err != nil {
			t.Fatal(err)
		}
	})
	var ce *ChildError
	if err := parent.RecvReady(); !errors.As(err, &ce) || !errdefs.IsUnknown(err) {
		t.Fatalf("got %v", err)
	}
}

// TestConsoleFd: the console message carries exactly one fd, received
// CLOEXEC; any other message with an fd is a protocol error and the fd is
// not kept.
func TestConsoleFd(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := child.SendConsole(w); err != nil {
		t.Fatal(err)
	}
	got, err := parent.RecvConsole()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	flags, err := unix.FcntlInt(got.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("received fd flags %#x %v, want CLOEXEC", flags, err)
	}
	if _, err := got.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("the received fd is not the pipe: %q %v", b, err)
	}
	// An fd on a message that carries none.
	if err := child.c.sendFds(message{Kind: kindReady}, []int{int(w.Fd())}); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvReady(); err == nil || !strings.Contains(err.Error(), "fds") {
		t.Fatalf("ready with an fd: %v, want a protocol error", err)
	}
	// Console without its fd, and a failure in its place.
	if err := child.c.send(message{Kind: kindConsole}); err != nil {
		t.Fatal(err)
	}
	if _, err := parent.RecvConsole(); err == nil {
		t.Fatal("console without an fd accepted")
	}
	if err := child.Fail(errors.New("no ptmx")); err != nil {
		t.Fatal(err)
	}
	if _, err := parent.RecvConsole(); err == nil || !strings.Contains(err.Error(), "no ptmx") {
		t.Fatalf("failure in place of the console: %v", err)
	}
}
