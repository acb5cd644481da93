package shim

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const testAddress = "unix:///run/containerd/s/8cb244a719603fe00870d5ce1d8e1f1db43a654cb993d107df1f1ae23ddffa59"

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStartAnswer pins what start prints for each containerd: the protobuf
// result only when stdin carried matching BootstrapParams (2.3+), JSON when
// MAX_SHIM_VERSION is set (1.7, 2.0-2.2), else the plain address (1.6).
func TestStartAnswer(t *testing.T) {
	params := &bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "default", ContainerdTtrpcAddress: "/x.ttrpc"}
	// containerd 1.6-2.2 write the runtime options (an Any) on stdin.
	opts, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/x.toml"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		stdin  []byte
		maxVer string
		want   string // "proto", "json" or "plain"
	}{
		{"2.4: bootstrap params", mustMarshal(t, params), "2", "proto"},
		{"2.3+: params without MAX_SHIM_VERSION", mustMarshal(t, params), "", "proto"},
		{"params for another id", mustMarshal(t, &bootstrap.BootstrapParams{InstanceID: "c2", Namespace: "default"}), "", "plain"},
		{"params for another namespace", mustMarshal(t, &bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "k8s.io"}), "2", "json"},
		{"1.7: options on stdin", mustMarshal(t, opts), "2", "json"},
		{"1.7: empty stdin", nil, "2", "json"},
		{"1.6: options on stdin", mustMarshal(t, opts), "", "plain"},
		{"1.6: empty stdin", nil, "", "plain"},
		// Bytes containerd 1.6.20 wrote for `ctr run --runtime-config-path /tmp/rtcfg.toml`:
		// they decode as BootstrapParams{instance_id: "runtimeoptions.v1.Options"}.
		{"1.6: recorded options", []byte("\x0a\x19runtimeoptions.v1.Options\x12\x11\x12\x0f/tmp/rtcfg.toml"), "", "plain"},
		{"garbage on stdin", []byte("\xff\xff\xff"), "", "plain"},
		{"MAX_SHIM_VERSION=1", nil, "1", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseBootstrapParams(tt.stdin, "c1", "default")
			out := startAnswer(p, tt.maxVer, testAddress)
			switch tt.want {
			case "proto":
				var r bootstrap.BootstrapResult
				if err := proto.Unmarshal(out, &r); err != nil {
					t.Fatal(err)
				}
				if r.Version != 2 || r.Address != testAddress || r.Protocol != "ttrpc" {
					t.Fatalf("result %v", &r)
				}
			case "json":
				var r struct {
					Version  int
					Address  string
					Protocol string
				}
				if err := json.Unmarshal(out, &r); err != nil {
					t.Fatalf("%q: %v", out, err)
				}
				if r.Version != 2 || r.Address != testAddress || r.Protocol != "ttrpc" {
					t.Fatalf("result %+v", r)
				}
			case "plain":
				if string(out) != testAddress {
					t.Fatalf("got %q", out)
				}
			}
		})
	}
}

func TestReadStdin(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		go func() { w.Write([]byte("hello")); w.Close() }()
		if got := readStdin(r); string(got) != "hello" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("dev null", func(t *testing.T) {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got := readStdin(f); got != nil {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("regular file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "in")
		os.WriteFile(path, []byte("abc"), 0o600)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got := readStdin(f); string(got) != "abc" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("writer never closes", func(t *testing.T) {
		old := stdinTimeout
		stdinTimeout = 50 * time.Millisecond
		defer func() { stdinTimeout = old }()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		defer r.Close()
		w.Write([]byte("partial"))
		if got := readStdin(r); got != nil {
			t.Fatalf("got %q", got)
		}
	})
}

func TestGroupID(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{"no annotations", `{"ociVersion":"1.0.2"}`, "c1"},
		{"runc group", `{"annotations":{"io.containerd.runc.v2.group":"g","io.kubernetes.cri.sandbox-id":"s"}}`, "g"},
		{"sandbox id", `{"annotations":{"io.kubernetes.cri.sandbox-id":"s"}}`, "s"},
		{"empty group", `{"annotations":{"io.containerd.runc.v2.group":""}}`, "c1"},
		{"no config.json", "", "c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600)
			}
			got, err := groupID(dir, "c1")
			if err != nil || got != tt.want {
				t.Fatalf("groupID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o600)
	if _, err := groupID(dir, "c1"); err == nil {
		t.Fatal("broken config.json: no error")
	}
}

// TestSocketAddress pins the derivation to containerd's shims':
// sha256("<grpc address>/<namespace>/<group>") under the socket dir.
func TestSocketAddress(t *testing.T) {
	// printf '%s' /run/containerd/containerd.sock/default/abc | sha256sum
	if got := socketAddress(defaultSocketDir, "/run/containerd/containerd.sock", "default", "abc"); got != testAddress {
		t.Fatalf("got %s", got)
	}
	got := socketAddress("/var/run/x/s", "/run/containerd/containerd.sock", "default", "abc")
	if want := "unix:///var/run/x/s/8cb244a719603fe00870d5ce1d8e1f1db43a654cb993d107df1f1ae23ddffa59"; got != want {
		t.Fatalf("got %s", got)
	}
	if socketAddress(defaultSocketDir, "/a", "ns1", "g") == socketAddress(defaultSocketDir, "/a", "ns2", "g") {
		t.Fatal("namespaces share a socket")
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	address := "unix://" + filepath.Join(dir, "s", "sock")

	l, err := listen(address)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(socketPath(address)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st, err)
	}
	// A live daemon answers: share it.
	if _, err := listen(address); !errors.Is(err, errDaemonRunning) {
		t.Fatalf("second listen: %v", err)
	}
	// A dead daemon's socket is replaced.
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(socketPath(address)); err != nil {
		t.Fatal("stale socket gone")
	}
	l2, err := listen(address)
	if err != nil {
		t.Fatalf("listen over stale socket: %v", err)
	}
	defer l2.Close()
	c, err := net.Dial("unix", socketPath(address))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	long := "unix://" + filepath.Join(dir, strings.Repeat("a", socketPathLimit))
	if _, err := listen(long); err == nil {
		t.Fatal("too long path accepted")
	}
}

func TestAddressFile(t *testing.T) {
	dir := t.TempDir()
	if err := writeAddress(dir, testAddress); err != nil {
		t.Fatal(err)
	}
	got, err := readAddress(dir)
	if err != nil || got != testAddress {
		t.Fatalf("got %q %v", got, err)
	}
	// A live daemon's socket stays (it may serve other containers of its
	// group); a dead one's goes.
	ctx := context.Background()
	name := strings.Repeat("ab", sha256.Size)
	sock := filepath.Join(dir, name)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	writeAddress(dir, "unix://"+sock)
	removeStaleSocket(ctx, dir)
	if _, err := os.Stat(sock); err != nil {
		t.Fatal("live socket removed")
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	removeStaleSocket(ctx, dir)
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale socket left: %v", err)
	}
}

// The address file names what the delete face removes: anything that is
// not one of our sockets must survive (it used to be removed, whatever it was).
func TestRemoveStaleSocketOnlyRemovesShimSockets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	hexName := strings.Repeat("cd", sha256.Size)
	victims := map[string]func(p string) error{
		"regular file with a socket's name": func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) },
		"directory with a socket's name":    func(p string) error { return os.Mkdir(p, 0o700) },
		"host file":                         func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) },
	}
	paths := map[string]string{
		"regular file with a socket's name": filepath.Join(dir, "f", hexName),
		"directory with a socket's name":    filepath.Join(dir, "d", hexName),
		"host file":                         filepath.Join(dir, "etc-passwd"),
	}
	for name, mk := range victims {
		t.Run(name, func(t *testing.T) {
			p := paths[name]
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := mk(p); err != nil {
				t.Fatal(err)
			}
			bundle := t.TempDir()
			writeAddress(bundle, "unix://"+p)
			removeStaleSocket(ctx, bundle)
			if _, err := os.Lstat(p); err != nil {
				t.Fatalf("%s removed by the delete face: %v", p, err)
			}
		})
	}
	// A dead socket with a foreign name is not ours either.
	foreign := filepath.Join(dir, "foreign.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: foreign, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	bundle := t.TempDir()
	writeAddress(bundle, "unix://"+foreign)
	removeStaleSocket(ctx, bundle)
	if _, err := os.Lstat(foreign); err != nil {
		t.Fatalf("foreign socket removed: %v", err)
	}
}

func TestCloexecFrom(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	fd, err := unix.Dup(int(w.Fd())) // dup: no CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cloexecFrom(3)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("fd %d flags %#x %v", fd, flags, err)
	}
}

// A socket directory from containerd's BootstrapParams that is not a clean
// absolute path is refused before anything is created: a relative one put
// the socket relative to the start face's cwd (found by FuzzStartStdin).
func TestStartRefusesRelativeSocketDir(t *testing.T) {
	for _, dir := range []string{"0000/../", "rel/dir", "/run/../run/x/"} {
		b, err := proto.Marshal(&bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "default", SocketDir: &dir})
		if err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(t.TempDir(), "stdin")
		if err := os.WriteFile(in, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		bundle := t.TempDir()
		var out strings.Builder
		err = runStart(context.Background(), flags{id: "c1", namespace: "default", bundle: bundle}, f, &out)
		f.Close()
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("socket dir %q: %v, want InvalidArgument", dir, err)
		}
		if ents, _ := os.ReadDir(bundle); len(ents) > 0 {
			t.Errorf("socket dir %q: the bundle got %v", dir, ents)
		}
	}
}
