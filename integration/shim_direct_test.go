package integration

// Tests that drive the shim over ttrpc the way containerd does, without
// containerd in between: the start handshake, the task API's error codes,
// event order, and what bad input leaves behind.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"
)

const directNamespace = "autokill-direct"

// eventSink plays containerd's ttrpc events service.
type eventSink struct {
	mu     sync.Mutex
	topics map[string][]string // container id → topics in arrival order
	addr   string
}

func (s *eventSink) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	// The envelope's event is an Any of a task event; every task event
	// has container_id as field 1, so one small decoder serves them all.
	id := containerIDOf(r.Envelope.GetEvent().GetValue())
	s.mu.Lock()
	s.topics[id] = append(s.topics[id], r.Envelope.Topic)
	s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// containerIDOf reads protobuf field 1 (a string) of an encoded task event.
func containerIDOf(b []byte) string {
	if len(b) < 2 || b[0] != 0x0a {
		return ""
	}
	n, i := 0, 1
	for shift := 0; i < len(b); i++ {
		n |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i] < 0x80 {
			i++
			break
		}
	}
	if i+n > len(b) {
		return ""
	}
	return string(b[i : i+n])
}

func (s *eventSink) of(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.topics[id]...)
}

func (s *eventSink) waitFor(t *testing.T, id string, want []string) {
	t.Helper()
	deadline := time.Now().Add(timeout(10 * time.Second))
	for {
		got := s.of(id)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) || len(got) > len(want) {
			t.Fatalf("events for %s = %v, want %v", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newEventSink(t *testing.T) *eventSink {
	t.Helper()
	dir, err := os.MkdirTemp("", "ak-sink-")
	if err != nil {
		t.Fatal(err)
	}
	s := &eventSink{topics: map[string][]string{}, addr: filepath.Join(dir, "ttrpc.sock")}
	l, err := net.Listen("unix", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(srv, s)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() {
		srv.Close()
		os.RemoveAll(dir)
	})
	return s
}

// directShim is one shim daemon started with the start face.
type directShim struct {
	task   taskapi.TTRPCTaskService
	client *ttrpc.Client
	pid    int
	events *eventSink
}

func startDirectShim(t *testing.T, id, bundle string) *directShim {
	t.Helper()
	return startDirectShimBinary(t, shimPath, id, bundle)
}

func startDirectShimBinary(t *testing.T, binary, id, bundle string) *directShim {
	t.Helper()
	if shimPath == "" {
		t.Skip("AUTOKILL_SHIM not set: these tests drive our shim directly")
	}
	sink := newEventSink(t)
	cmd := exec.Command(binary, "-namespace", directNamespace, "-address", "/run/autokill-none/containerd.sock",
		"-publish-binary", "/bin/true", "-id", id, "start")
	cmd.Dir = bundle
	cmd.Env = []string{"TTRPC_ADDRESS=" + sink.addr, "GRPC_ADDRESS=/run/autokill-none/containerd.sock", "NAMESPACE=" + directNamespace, "PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shim start: %v\n%s", err, stderr.String())
	}
	addr := strings.TrimSpace(string(out))
	if !strings.HasPrefix(addr, "unix://") {
		t.Fatalf("start printed %q, want a plain unix:// address (containerd 1.6 form)", addr)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(addr, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	s := &directShim{task: taskapi.NewTTRPCTaskClient(client), client: client, events: sink}
	ctx := nsCtx(t)
	resp, err := s.task.Connect(ctx, &taskapi.ConnectRequest{ID: id})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	s.pid = int(resp.ShimPid)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(withNamespace(context.Background(), directNamespace), 10*time.Second)
		defer cancel()
		_, _ = s.task.Shutdown(sctx, &taskapi.ShutdownRequest{ID: id, Now: true})
		client.Close()
		// The daemon exits on shutdown; make sure of it.
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	})
	return s
}

func nsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout(30*time.Second))
	t.Cleanup(cancel)
	return withNamespace(ctx, directNamespace)
}

// withNamespace sets the namespace header containerd's clients send.
func withNamespace(ctx context.Context, ns string) context.Context {
	md := ttrpc.MD{}
	md.Set("containerd-namespace-ttrpc", ns)
	return ttrpc.WithMetadata(ctx, md)
}

// bundle builds a busybox rootfs and a spec in a temp dir.
type bundle struct {
	dir  string
	spec *specs.Spec
}

func newBundle(t *testing.T, id string, args ...string) *bundle {
	t.Helper()
	dir, err := os.MkdirTemp("", "ak-bundle-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("needs busybox-static on the host: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "true", "cat", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if len(args) == 0 {
		args = []string{"sh", "-c", "exit 0"}
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args, Cwd: "/", Env: []string{"PATH=/bin"},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
			},
		},
		Hostname: id,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + directNamespace + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace},
			},
		},
	}
	return &bundle{dir: dir, spec: s}
}

func (b *bundle) write(t *testing.T) {
	t.Helper()
	data, err := json.Marshal(b.spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// leftovers lists what a container could have left on the host.
func leftovers(t *testing.T, b *bundle, id string) []string {
	t.Helper()
	var out []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, b.dir) {
			out = append(out, "mount: "+l)
		}
	}
	cgRel := filepath.Join(directNamespace, id)
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgRel)
	if m, _ := filepath.Glob("/sys/fs/cgroup/" + cgRel); len(m) > 0 {
		matches = append(matches, m...)
	}
	for _, m := range matches {
		out = append(out, "cgroup: "+m)
	}
	return out
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// childrenOf lists the container processes a daemon still has as children:
// its crash guard (one per daemon, see internal/guard) is not one of them.
func childrenOf(pid int) []int {
	var out []int
	for _, n := range allChildrenOf(pid) {
		if args := procCmdline(n); len(args) > 1 && args[1] == "__autokill_guard" {
			continue
		}
		out = append(out, n)
	}
	return out
}

func allChildrenOf(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	// Children of every thread: the spawner runs on its own thread.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, tk := range tasks {
		if tk.Name() == strconv.Itoa(pid) {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
	}
	return out
}

func codeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errdefs.IsInvalidArgument(err):
		return "InvalidArgument"
	case errdefs.IsNotFound(err):
		return "NotFound"
	case errdefs.IsFailedPrecondition(err):
		return "FailedPrecondition"
	case errdefs.IsAlreadyExists(err):
		return "AlreadyExists"
	case errdefs.IsNotImplemented(err):
		return "NotImplemented"
	}
	return "Unknown"
}

func grpcErr(err error) error { return errgrpc.ToNative(err) }

// runGood proves the shim still serves: a healthy container in the same
// daemon runs to completion with the right status and events.
func runGood(t *testing.T, s *directShim, id string, status uint32) {
	t.Helper()
	b := newBundle(t, id, "sh", "-c", fmt.Sprintf("exit %d", status))
	b.write(t)
	ctx := nsCtx(t)
	if _, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir}); err != nil {
		t.Fatalf("create good container: %v", err)
	}
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatalf("start good container: %v", err)
	}
	w, err := s.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if w.ExitStatus != status {
		t.Fatalf("exit status %d, want %d", w.ExitStatus, status)
	}
	if _, err := s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	s.events.waitFor(t, id, []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"})
	if l := leftovers(t, b, id); len(l) > 0 {
		t.Fatalf("good container left: %v", l)
	}
}

func TestDirectBadInput(t *testing.T) {
	host, err := os.MkdirTemp("", "ak-host-target-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(host)

	cases := []struct {
		name   string
		mutate func(t *testing.T, b *bundle)
		code   string // expected errdefs class of the Create error
	}{
		{"unparsable config.json", func(t *testing.T, b *bundle) {
			os.WriteFile(filepath.Join(b.dir, "config.json"), []byte("{not json"), 0o644)
		}, "InvalidArgument"},
		{"missing rootfs", func(t *testing.T, b *bundle) {
			os.RemoveAll(filepath.Join(b.dir, "rootfs"))
			b.write(t)
		}, "InvalidArgument"},
		{"entrypoint does not exist", func(t *testing.T, b *bundle) {
			b.spec.Process.Args = []string{"/no/such/entrypoint"}
			b.write(t)
		}, "NotFound"},
		{"unknown namespace type", func(t *testing.T, b *bundle) {
			b.spec.Linux.Namespaces = append(b.spec.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
			b.write(t)
		}, "InvalidArgument"},
		// A symlink out of the rootfs is followed inside it (as runc does); one
		// into the container's procfs must not take a mount there.
		{"mount target is a symlink into procfs", func(t *testing.T, b *bundle) {
			if err := os.Symlink("../proc/sys/kernel", filepath.Join(b.dir, "rootfs", "evil")); err != nil {
				t.Fatal(err)
			}
			b.spec.Mounts = append(b.spec.Mounts, specs.Mount{Destination: "/evil", Type: "tmpfs", Source: "tmpfs"})
			b.write(t)
		}, "InvalidArgument"},
	}

	first := newBundle(t, "direct-bad-0")
	first.write(t)
	s := startDirectShim(t, "direct-bad-0", first.dir)
	// One good container first: what a daemon opens once, at its first
	// container (the crash guard's socket and pidfd), is not a leak.
	runGood(t, s, "direct-bad-warm", 0)
	baseFds := fdCount(t, s.pid)

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("direct-bad-%d", i+1)
			b := newBundle(t, id)
			tc.mutate(t, b)
			ctx := nsCtx(t)
			_, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir})
			if err == nil {
				_, err = s.task.Start(ctx, &taskapi.StartRequest{ID: id})
			}
			err = grpcErr(err)
			if err == nil {
				t.Fatalf("create+start succeeded; want a %s error", tc.code)
			}
			t.Logf("error: %v", err)
			if got := codeOf(err); got != tc.code {
				t.Errorf("error class %s, want %s: %v", got, tc.code, err)
			}
			// The failed id is not kept: a retry is NotFound for State.
			if _, err := s.task.State(ctx, &taskapi.StateRequest{ID: id}); codeOf(grpcErr(err)) != "NotFound" {
				_, _ = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
				t.Errorf("state after failed create: %v, want NotFound", err)
			}
			if l := leftovers(t, b, id); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
			ents, _ := os.ReadDir(host)
			if len(ents) > 0 {
				t.Errorf("host directory %s was written to through the rootfs: %v", host, ents)
			}
			if kids := childrenOf(s.pid); len(kids) > 0 {
				t.Errorf("shim still has children %v", kids)
			}
		})
	}
	// Failures must not leak descriptors in the daemon (give its poller a
	// moment to settle: Go may hold one transient fd).
	deadline := time.Now().Add(timeout(5 * time.Second))
	for fdCount(t, s.pid) > baseFds && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := fdCount(t, s.pid); n > baseFds {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(s.pid) + "/fd")
		var links []string
		for _, e := range ents {
			l, _ := os.Readlink("/proc/" + strconv.Itoa(s.pid) + "/fd/" + e.Name())
			links = append(links, e.Name()+"→"+l)
		}
		t.Errorf("shim fds grew from %d to %d: %v", baseFds, n, links)
	}
	runGood(t, s, "direct-good", 3)
}

func TestDirectTaskAPICodes(t *testing.T) {
	b := newBundle(t, "direct-api", "sleep", "1000")
	b.write(t)
	s := startDirectShim(t, "direct-api", b.dir)
	ctx := nsCtx(t)
	check := func(what string, err error, want string) {
		t.Helper()
		if got := codeOf(grpcErr(err)); got != want {
			t.Errorf("%s: %s (%v), want %s", what, got, err, want)
		}
	}
	_, err := s.task.State(ctx, &taskapi.StateRequest{ID: "nope"})
	check("State unknown id", err, "NotFound")
	_, err = s.task.Kill(ctx, &taskapi.KillRequest{ID: "nope", Signal: 9})
	check("Kill unknown id", err, "NotFound")
	_, err = s.task.Start(ctx, &taskapi.StartRequest{ID: "nope"})
	check("Start unknown id", err, "NotFound")

	_, err = s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-api", Bundle: b.dir})
	check("Create", err, "ok")
	st, err := s.task.State(ctx, &taskapi.StateRequest{ID: "direct-api"})
	check("State", err, "ok")
	if st.GetStatus().String() != "CREATED" {
		t.Errorf("status %v, want CREATED", st.GetStatus())
	}
	_, err = s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-api", Bundle: b.dir})
	check("Create duplicate", err, "AlreadyExists")
	_, err = s.task.Pause(ctx, &taskapi.PauseRequest{ID: "direct-api"})
	check("Pause created", err, "FailedPrecondition")
	_, err = s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-api"})
	check("Start", err, "ok")
	_, err = s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-api"})
	check("Start twice", err, "FailedPrecondition")
	_, err = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-api"})
	check("Delete running", err, "FailedPrecondition")
	// pid 1 of a pid namespace ignores signals it has no handler for, so
	// SIGKILL is the signal death to check: 128+9.
	_, err = s.task.Kill(ctx, &taskapi.KillRequest{ID: "direct-api", Signal: uint32(syscall.SIGKILL)})
	check("Kill", err, "ok")
	w, err := s.task.Wait(ctx, &taskapi.WaitRequest{ID: "direct-api"})
	check("Wait", err, "ok")
	if w.GetExitStatus() != 137 {
		t.Errorf("exit status %d, want 137 (SIGKILL)", w.GetExitStatus())
	}
	_, err = s.task.Kill(ctx, &taskapi.KillRequest{ID: "direct-api", Signal: 9})
	check("Kill stopped", err, "NotFound")
	_, err = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-api"})
	check("Delete", err, "ok")
	_, err = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-api"})
	check("Delete twice", err, "NotFound")
	s.events.waitFor(t, "direct-api", []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"})
	if l := leftovers(t, b, "direct-api"); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// The setup face runs the shim binary inside the container; it must be
// impossible to open it for writing from there (CVE-2019-5736).
func TestCVE_2019_5736ShimBinaryNotWritable(t *testing.T) {
	b := newBundle(t, "direct-exe")
	b.write(t)
	// A private copy of the shim: once its daemon is gone nothing executes
	// it, so only the read-only mount can refuse the write (ETXTBSY can't).
	data, err := os.ReadFile(shimPath)
	if err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(t.TempDir(), "containerd-shim-autokill-v1")
	if err := os.WriteFile(binary, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startDirectShimBinary(t, binary, "direct-exe", b.dir)
	ctx := nsCtx(t)
	resp, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-exe", Bundle: b.dir})
	if err != nil {
		t.Fatal(err)
	}
	// The link reads "/" (the root of a detached mount): compare inodes.
	exeSt, err1 := os.Stat(fmt.Sprintf("/proc/%d/exe", resp.Pid))
	binSt, err2 := os.Stat(binary)
	if err1 != nil || err2 != nil || !os.SameFile(exeSt, binSt) {
		t.Fatalf("init %d between Create and Start is not the setup face (%v, %v)", resp.Pid, err1, err2)
	}
	// Between Create and Start the init is the setup face: the shim binary.
	exe := fmt.Sprintf("/proc/%d/exe", resp.Pid)
	f, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
		t.Fatalf("opened %s (the shim binary, as the container sees it) for writing", exe)
	}
	// While it runs the kernel answers ETXTBSY before it looks at the mount.
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.ETXTBSY) {
		t.Fatalf("open %s for writing: %v, want EROFS or ETXTBSY", exe, err)
	}
	// The CVE's route: keep an O_PATH handle, wait for the process to go,
	// then reopen the handle for writing. Only a read-only mount stops it.
	p, err := os.OpenFile(exe, unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := s.task.Delete(ctx, &taskapi.DeleteRequest{ID: "direct-exe"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, _ = s.task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "direct-exe"})
	waitFor(t, timeout(10*time.Second), "the shim daemon to exit", func() bool {
		return !alive(s.pid)
	}, nil)
	// A dying multithreaded daemon shows as a zombie while its other
	// threads still map the binary: ETXTBSY until they are gone.
	var w *os.File
	deadline := time.Now().Add(timeout(10 * time.Second))
	for {
		w, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", p.Fd()), os.O_WRONLY, 0)
		if !errors.Is(err, syscall.ETXTBSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		w.Close()
		t.Fatal("reopened the shim binary for writing through an O_PATH handle on the setup face's exe")
	}
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("reopen through O_PATH fd: %v, want EROFS", err)
	}
}

// Resources land in the container's cgroup, v1 (this host) or v2 (the VM,
// where the init is created in it with CLONE_INTO_CGROUP).
func TestDirectCgroupLimits(t *testing.T) {
	const id = "direct-cgroup"
	b := newBundle(t, id, "sleep", "1000")
	limit, quota, period, pids := int64(64<<20), int64(50000), uint64(100000), int64(32)
	b.spec.Linux.Resources = &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	b.write(t)
	s := startDirectShim(t, id, b.dir)
	ctx := nsCtx(t)
	resp, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9})
		s.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		if l := leftovers(t, b, id); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	}()
	rel := "/" + directNamespace + "/" + id
	read := func(p string) string {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	want := map[string]string{}
	var procs string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		d := "/sys/fs/cgroup" + rel
		want[d+"/memory.max"] = strconv.FormatInt(limit, 10)
		want[d+"/cpu.max"] = "50000 100000"
		want[d+"/pids.max"] = "32"
		procs = d + "/cgroup.procs"
	} else {
		want["/sys/fs/cgroup/memory"+rel+"/memory.limit_in_bytes"] = strconv.FormatInt(limit, 10)
		want["/sys/fs/cgroup/cpu"+rel+"/cpu.cfs_quota_us"] = "50000"
		want["/sys/fs/cgroup/cpu"+rel+"/cpu.cfs_period_us"] = "100000"
		want["/sys/fs/cgroup/pids"+rel+"/pids.max"] = "32"
		procs = "/sys/fs/cgroup/pids" + rel + "/cgroup.procs"
	}
	for p, w := range want {
		if got := read(p); got != w {
			t.Errorf("%s = %q, want %q", p, got, w)
		}
	}
	// Already at Create, before Start: the setup face is in the cgroup.
	if got := read(procs); !strings.Contains("\n"+got+"\n", fmt.Sprintf("\n%d\n", resp.Pid)) {
		t.Errorf("init %d not in %s: %q", resp.Pid, procs, got)
	}
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
}

// Namespaces joined by path: B joins A's network, ipc, uts and cgroup
// namespaces (setns in the clone3 child) and its pid namespace (the
// spawner thread joins it before clone3).
func TestDirectJoinNamespaces(t *testing.T) {
	a := newBundle(t, "direct-join-a", "sleep", "1000")
	a.spec.Linux.Namespaces = append(a.spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	a.write(t)
	s := startDirectShim(t, "direct-join-a", a.dir)
	ctx := nsCtx(t)
	ra, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-join-a", Bundle: a.dir})
	if err != nil {
		t.Fatal(err)
	}
	stop := func(id string) {
		s.task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9})
		s.task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
	}
	defer stop("direct-join-a")
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-join-a"}); err != nil {
		t.Fatal(err)
	}
	joined := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace, specs.PIDNamespace}
	files := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.CgroupNamespace: "cgroup", specs.PIDNamespace: "pid"}
	b := newBundle(t, "direct-join-b", "sleep", "1000")
	b.spec.Hostname = ""
	b.spec.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	for _, ns := range joined {
		b.spec.Linux.Namespaces = append(b.spec.Linux.Namespaces, specs.LinuxNamespace{Type: ns, Path: fmt.Sprintf("/proc/%d/ns/%s", ra.Pid, files[ns])})
	}
	b.write(t)
	rb, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "direct-join-b", Bundle: b.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stop("direct-join-b")
	if _, err := s.task.Start(ctx, &taskapi.StartRequest{ID: "direct-join-b"}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range joined {
		la, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", ra.Pid, files[ns]))
		lb, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", rb.Pid, files[ns]))
		if la == "" || la != lb {
			t.Errorf("%s namespace: A %q, B %q", ns, la, lb)
		}
	}
	// The mount namespace is B's own.
	ma, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", ra.Pid))
	mb, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", rb.Pid))
	if ma == mb {
		t.Errorf("B shares A's mount namespace %s", ma)
	}
	// Every shim thread, the spawner included, is back in the shim's pid
	// namespace for its children.
	self, _ := os.Readlink("/proc/self/ns/pid")
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		own, _ := os.Readlink(fmt.Sprintf("/proc/%d/task/%s/ns/pid_for_children", s.pid, tk.Name()))
		if own != self {
			t.Errorf("shim thread %s: pid_for_children is %s after joining, want %s", tk.Name(), own, self)
		}
	}
}
