package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, string, typeurl.Any) {}

// panickyError panics when it is formatted: a panic that happens in the
// errdefs → gRPC conversion, outside the request handler.
type panickyError struct{}

func (panickyError) Error() string { panic("formatting a broken error") }

// serveDaemon runs newDaemonServer with svc on a unix socket in dir and
// returns the socket path.
func serveDaemon(t *testing.T, svc taskapi.TTRPCTaskService, dir string) string {
	t.Helper()
	server, err := newDaemonServer(svc)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(context.Background(), l)
	t.Cleanup(func() { server.Close() })
	return sock
}

func dialTask(t *testing.T, sock string) taskapi.TTRPCTaskService {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return taskapi.NewTTRPCTaskClient(c)
}

// logBuffer captures the global logger's output for the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A request that panics, in its handler or in the error conversion around
// it, is answered with Internal and logged with its stack; the daemon, and
// so every container it serves, lives on and answers the next request.
func TestDaemonServerRecoversPanics(t *testing.T) {
	logs := &logBuffer{}
	out := log.L.Logger.Out
	log.L.Logger.SetOutput(logs)
	t.Cleanup(func() { log.L.Logger.SetOutput(out) })

	create := func(ctx context.Context, cfg process.CreateConfig, pub process.Publisher) (task, error) {
		switch cfg.ID {
		case "nil-map":
			var m map[string]int
			m[cfg.ID] = 1
		case "broken-error":
			return nil, panickyError{}
		}
		return nil, fmt.Errorf("create %s: %w", cfg.ID, errdefs.ErrNotImplemented)
	}
	svc := newService(create, discardPublisher{}, func() {})
	client := dialTask(t, serveDaemon(t, svc, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct{ id, stack string }{
		{"nil-map", "TestDaemonServerRecoversPanics.func"},
		{"broken-error", "panickyError.Error"},
	} {
		_, err := client.Create(ctx, &taskapi.CreateTaskRequest{ID: tc.id, Bundle: "/b"})
		if status.Code(err) != codes.Internal || !errdefs.IsInternal(errgrpc.ToNative(err)) ||
			!strings.Contains(err.Error(), "panic") {
			t.Fatalf("create %s: %v (code %s), want Internal", tc.id, err, status.Code(err))
		}
		if l := logs.String(); !strings.Contains(l, "request panicked") || !strings.Contains(l, tc.stack) {
			t.Errorf("create %s: the log has no stack naming %s:\n%s", tc.id, tc.stack, l)
		}
		// Still serving, and errdefs still become codes.
		_, err = client.State(ctx, &taskapi.StateRequest{ID: "nope"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("state after the panic: %v, want NotFound", err)
		}
		_, err = client.Create(ctx, &taskapi.CreateTaskRequest{ID: "plain", Bundle: "/b"})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("create after the panic: %v, want Unimplemented", err)
		}
	}
}

const peerSocketEnv = "AUTOKILL_TEST_PEER_SOCKET"

// Exit codes of TestPeerHelper.
const (
	peerAnswered = 0
	peerNoDial   = 2
	peerRefused  = 3
)

// TestPeerHelper is not a test: TestDaemonServerRefusesOtherUsers runs the
// test binary as another user with this test selected, to call the daemon.
func TestPeerHelper(t *testing.T) {
	sock := os.Getenv(peerSocketEnv)
	if sock == "" {
		t.Skip("helper process only")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Printf("dial as uid %d: %v\n", os.Geteuid(), err)
		os.Exit(peerNoDial)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = taskapi.NewTTRPCTaskClient(c).State(ctx, &taskapi.StateRequest{ID: "nope"})
	if _, ok := status.FromError(err); ok && err != nil {
		fmt.Printf("answered uid %d: %v\n", os.Geteuid(), err)
		os.Exit(peerAnswered)
	}
	fmt.Printf("refused uid %d: %v\n", os.Geteuid(), err)
	os.Exit(peerRefused)
}

// A peer with another uid or gid is refused at the handshake, like
// containerd's shims do it: file modes alone would let anyone who can reach
// the socket drive the containers. The peer is this test binary run with
// other credentials (SO_PEERCRED takes them from the connecting process).
func TestDaemonServerRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	// A directory and socket the other user can reach: only the
	// handshake may stop it.
	dir, err := os.MkdirTemp("", "autokill-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := newService(func(context.Context, process.CreateConfig, process.Publisher) (task, error) {
		return nil, errdefs.ErrNotImplemented
	}, discardPublisher{}, func() {})
	sock := serveDaemon(t, svc, dir)
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		cred     *syscall.Credential
		wantExit int
	}{
		{"other uid and gid", &syscall.Credential{Uid: 65534, Gid: 65534}, peerRefused},
		{"other uid", &syscall.Credential{Uid: 65534, Gid: uint32(os.Getegid())}, peerRefused},
		{"other gid", &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: 65534}, peerRefused},
		{"same user", nil, peerAnswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// /proc/self/exe: the other user may not be able to walk to the
			// test binary's directory, but may exec the file itself.
			cmd := exec.Command("/proc/self/exe", "-test.run=^TestPeerHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), peerSocketEnv+"="+sock)
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tc.cred}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantExit {
				t.Fatalf("peer exited %d, want %d:\n%s", code, tc.wantExit, out)
			}
			t.Logf("%s", bytes.TrimSpace(out))
		})
	}
	// The refusals did not stop the server.
	if _, err := dialTask(t, sock).State(context.Background(), &taskapi.StateRequest{ID: "x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("state from the same user: %v", err)
	}
}
