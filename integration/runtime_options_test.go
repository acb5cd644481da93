package integration

// Runtime options: what containerd's Go client (task options, a runc
// Options Any) and ctr --runtime-config-path (runtimeoptions.v1 naming our
// own TOML file) send with a task, honoured where they mean something here.
// The TestAPI* ones pass with io.containerd.runc.v2 as well.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

func init() {
	// As containerd's runtime package registers it: the spec is JSON in an Any.
	typeurl.Register(&specs.Spec{}, "types.containerd.io/opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "Spec")
}

func optionsAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// specContainer creates container id (no task) from ctr's default spec on an
// unpacked image rootfs, running args as uid:gid.
func specContainer(t *testing.T, id string, uid, gid int, args ...string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	spec, proc, _ := ctrSpec(t, id, rootfs, args)
	proc["user"] = map[string]any{"uid": uid, "gid": gid}
	mustCtr(t, "containers", "create", "--runtime", runtimeName, "--config", writeSpec(t, spec), id)
}

// optionsContainer creates container id (no task) through containerd's
// containers API with runtime options opts (Container.Runtime.Options: what
// ctr --runtime-config-path and CRI set; containerd passes them to start and
// Create when the task has no options of its own, and takes only runc's
// Options as task options).
func optionsContainer(t *testing.T, id string, opts *anypb.Any, args ...string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	m, _, _ := ctrSpec(t, id, rootfs, args)
	apiContainer(t, id, m, opts)
}

// apiContainer creates container id (no task) with the spec m (a JSON map, as the tests edit it)
// and runtime options opts through containerd's containers API.
func apiContainer(t *testing.T, id string, m map[string]any, opts *anypb.Any) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	ctx, conn := apiClient(t)
	_, err = containersapi.NewContainersClient(conn).Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID:      id,
		Runtime: &containersapi.Container_Runtime{Name: runtimeName, Options: opts},
		Spec:    optionsAny(t, &spec),
	}})
	if err != nil {
		t.Fatalf("create container %s: %v", id, err)
	}
}

// fifoSet is stdio for a task made as containerd's client makes it: fifos
// of mode 0700 in a directory of mode 0700, a reader open on each output and
// a writer on stdin.
type fifoSet struct {
	in, out, err string
	inFd         int
	outFd, errFd int
}

func newFifoSet(t *testing.T) *fifoSet {
	t.Helper()
	dir := t.TempDir()
	s := &fifoSet{in: filepath.Join(dir, "stdin"), out: filepath.Join(dir, "stdout"), err: filepath.Join(dir, "stderr")}
	for _, p := range []string{s.in, s.out, s.err} {
		if err := unix.Mkfifo(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	// O_RDWR: open without waiting for the shim's reader; our writes wait in the pipe.
	if s.inFd, err = unix.Open(s.in, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	if s.outFd, err = unix.Open(s.out, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	if s.errFd, err = unix.Open(s.err, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(s.inFd)
		unix.Close(s.outFd)
		unix.Close(s.errFd)
	})
	return s
}

// read returns what is in the output fifo fd now.
func readFifo(fd int) string {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

// runTask creates (with opts), starts and waits for the task of container id
// on stdio s, and returns its stdout (read until the line END) and stderr.
func runTask(t *testing.T, id string, s *fifoSet, opts *anypb.Any) (stdout, stderr string) {
	t.Helper()
	ctx, tasks := tasksClient(t)
	if _, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{
		ContainerID: id, Stdin: s.in, Stdout: s.out, Stderr: s.err, Options: opts,
	}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := unix.Write(s.inFd, []byte("line-in\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id}); err != nil {
		t.Fatalf("start: %v", err)
	}
	w, err := tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	waitFor(t, timeout(10*time.Second), "the output's last line", func() bool {
		stdout += readFifo(s.outFd)
		return strings.HasSuffix(stdout, "END\n")
	}, func() string { return fmt.Sprintf("stdout so far %q, exit %d", stdout, w.ExitStatus) })
	stderr = readFifo(s.errFd)
	if _, err := tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	return stdout, stderr
}

// TestAPIRuntimeOptionsIoUid: a process that is not root can reopen its own
// stdio (/proc/self/fd/N, /dev/stderr), as runc's init gives it to the
// process's user before the switch. In a user namespace that chown needs an
// owner the namespace maps, and containerd's fifos are host root's: IoUid
// and IoGid (containerd's WithUIDOwner / WithGIDOwner, here the mapped
// root) make it so; IoUid alone does not (gid 0 is not mapped).
func TestAPIRuntimeOptionsIoUid(t *testing.T) {
	script := `id -u
echo reopen-out > /proc/self/fd/1 || echo no-reopen-out
echo reopen-err > /dev/stderr || echo no-reopen-err
head -n1 /proc/self/fd/0 || echo no-reopen-in
echo END`
	const reopened, refused = "1000\nreopen-out\nline-in\nEND\n", "1000\nno-reopen-out\nno-reopen-err\nno-reopen-in\nEND\n"
	for _, tc := range []struct {
		name   string
		userns bool
		opts   *runcopts.Options
		want   string
	}{
		{"host user", false, nil, reopened},
		{"host user with IoUid", false, &runcopts.Options{IoUid: 2000, IoGid: 2000}, reopened},
		{"userns", true, nil, refused},
		{"userns with IoUid and IoGid", true, &runcopts.Options{IoUid: usernsHost, IoGid: usernsHost}, reopened},
		{"userns with IoUid only", true, &runcopts.Options{IoUid: usernsHost}, refused},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			id := newContainerID(t)
			if tc.userns {
				spec := usernsSpec(t, id, usernsRootfs(t), false, "sh", "-c", script)
				spec["process"].(map[string]any)["user"] = map[string]any{"uid": 1000, "gid": 1000}
				mustCtr(t, "containers", "create", "--runtime", runtimeName, "--config", writeSpec(t, spec), id)
			} else {
				specContainer(t, id, 1000, 1000, "sh", "-c", script)
			}
			var opts *anypb.Any
			if tc.opts != nil {
				opts = optionsAny(t, tc.opts)
			}
			s := newFifoSet(t)
			out, errOut := runTask(t, id, s, opts)
			wantErr := "reopen-err"
			if tc.want == refused {
				wantErr = "ermission denied"
			}
			if out != tc.want || !strings.Contains(errOut, wantErr) {
				t.Fatalf("stdout %q, want %q; stderr %q, want it to contain %q", out, tc.want, errOut, wantErr)
			}
		})
	}
}

// cgroupMounts are the mount points of every cgroup hierarchy a ShimCgroup
// lands in: the v1 hierarchies, or the v2 root.
func cgroupMounts(t *testing.T) []string {
	t.Helper()
	if cgroupV2Only() {
		return []string{"/sys/fs/cgroup"}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mount ID, parent, dev, root, mount point, options, optional fields..., "-", type
		l := strings.Fields(sc.Text())
		for i, x := range l {
			if x == "-" && i+1 < len(l) && l[i+1] == "cgroup" && !seen[l[4]] {
				seen[l[4]] = true
				out = append(out, l[4])
			}
		}
	}
	return out
}

// shimCgroupDir makes the cgroup p in every hierarchy and removes it at the
// end, once the shim has left it.
func shimCgroupDir(t *testing.T, p string) {
	t.Helper()
	var made []string
	for _, m := range cgroupMounts(t) {
		d := filepath.Join(m, p)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, d)
		// A new v1 cpuset cgroup has no cpus or mems: nothing can join it
		// (ENOSPC) until it is given its parent's, with runc too.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(m, f)); err == nil && !cgroupV2Only() {
				if err := os.WriteFile(filepath.Join(d, f), b, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			deadline := time.Now().Add(timeout(20 * time.Second))
			for os.Remove(d) != nil && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := os.Stat(d); err == nil {
				b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				t.Errorf("cgroup %s still there, procs %q", d, b)
			}
		}
	})
}

// TestAPIRuntimeOptionsShimCgroup: ShimCgroup (containerd's WithShimCgroup)
// puts the shim daemon into that existing cgroup when it starts; the
// container keeps its own cgroup. A ShimCgroup that does not exist fails
// the task's creation and leaves no shim behind.
func TestAPIRuntimeOptionsShimCgroup(t *testing.T) {
	cg := fmt.Sprintf("/autokill-test-shims-%d", os.Getpid())
	shimCgroupDir(t, cg)
	id := newContainerID(t)
	specContainer(t, id, 0, 0, "sleep", "1000")
	ctx, tasks := tasksClient(t)
	resp, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Options: optionsAny(t, &runcopts.Options{ShimCgroup: cg})})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	shim := shimPid(t, id)
	if got := cgroupOfPid(t, shim, "memory"); got != cg {
		t.Errorf("shim %d is in cgroup %q, want %q", shim, got, cg)
	}
	if got := cgroupOfPid(t, int(resp.Pid), "memory"); got == cg {
		t.Errorf("the container's init %d is in the shim's cgroup %q", resp.Pid, got)
	}

	missing := newContainerID(t)
	specContainer(t, missing, 0, 0, "true")
	_, err = tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: missing, Options: optionsAny(t, &runcopts.Options{ShimCgroup: cg + "-missing"})})
	if err == nil {
		t.Fatalf("create with a ShimCgroup that does not exist: no error")
	}
	t.Logf("missing ShimCgroup: %v", err)
	for _, p := range allProcs() {
		args := procCmdline(p)
		if len(args) > 1 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && argValue(args, "-id") == missing && alive(p) {
			waitFor(t, timeout(10*time.Second), "the refused shim to exit", func() bool { return !alive(p) }, nil)
		}
	}
}

// TestRuntimeOptionsConfigPath: ctr run --runtime-config-path names our own
// TOML file (runtimeoptions.v1 ConfigPath), read by the start face for
// ShimCgroup and by Create (IoUid/IoGid, unknown keys).
func TestRuntimeOptionsConfigPath(t *testing.T) {
	if runtimeName != autokillRT {
		t.Skip("our own options file; ctr sends runc's Options to io.containerd.runc.v2 instead")
	}
	cg := fmt.Sprintf("/autokill-test-shims-cfg-%d", os.Getpid())
	shimCgroupDir(t, cg)
	cfg := filepath.Join(t.TempDir(), "autokill.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("ShimCgroup = %q\nIoUid = 1000\nIoGid = 1000\n", cg)), 0o600); err != nil {
		t.Fatal(err)
	}
	id := newContainerID(t)
	runDetached(t, id, 1, []string{"--runtime-config-path", cfg}, "exec sleep 1000")
	shim := shimPid(t, id)
	if got := cgroupOfPid(t, shim, "memory"); got != cg {
		t.Errorf("shim %d is in cgroup %q, want %q", shim, got, cg)
	}
	// An exec's stdio (ctr's fifos) is its user's too.
	r := ctrResult(t, "tasks", "exec", "--exec-id", "e1", "--user", "1000", id, "sh", "-c", "id -u; echo reopened > /proc/self/fd/1")
	if r.Code != 0 || r.Stdout != "1000\nreopened\n" {
		t.Errorf("exec as 1000 reopening its stdout: %s", r)
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("NoPivotRoot = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id2 := newContainerID(t)
	r = ctrResult(t, runArgs([]string{"--rm", "--runtime-config-path", bad}, id2, "true")...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "unknown key NoPivotRoot") || !strings.Contains(r.Stderr, "invalid argument") {
		t.Errorf("an unknown key in the options file: %s", r)
	}
}

// TestRuntimeOptionsRefused: options this runtime cannot decode fail Create
// with InvalidArgument (a missing ConfigPath NotFound), through containerd's
// API; and no task remains. (SystemdCgroup: systemd_test.go.) containerd
// itself refuses task options of any type but runc's (code Unknown), so
// ours come as the container's runtime options, as CRI and ctr send them.
func TestRuntimeOptionsRefused(t *testing.T) {
	if runtimeName != autokillRT {
		t.Skip("runc's shim takes only its own Options type")
	}
	ctx, tasks := tasksClient(t)
	for name, tc := range map[string]struct {
		a    *anypb.Any
		task bool // as task options (runc's type only), else the container's runtime options
		want codes.Code
		msg  string
	}{
		"unknown type":   {optionsAny(t, &types.Mount{Type: "bind"}), false, codes.InvalidArgument, "containerd.types.Mount"},
		"unknown key":    {optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("IoUid = 1\nBogus = 2\n")}), false, codes.InvalidArgument, "unknown key Bogus"},
		"foreign type":   {optionsAny(t, &runtimeoptions.Options{TypeUrl: "io.containerd.runc.v1.Options"}), false, codes.InvalidArgument, "TypeUrl"},
		"missing file":   {optionsAny(t, &runtimeoptions.Options{ConfigPath: "/nonexistent/autokill.toml"}), false, codes.NotFound, "ConfigPath"},
		"bad ShimCgroup": {optionsAny(t, &runcopts.Options{ShimCgroup: "/a/../b"}), true, codes.InvalidArgument, "ShimCgroup"},
	} {
		t.Run(strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
			id := newContainerID(t)
			var taskOpts *anypb.Any
			if tc.task {
				mustCtr(t, "containers", "create", "--runtime", runtimeName, imageRef, id, "true")
				taskOpts = tc.a
			} else {
				optionsContainer(t, id, tc.a, "true")
			}
			_, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Options: taskOpts})
			if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("create: %v; want %s naming %q", err, tc.want, tc.msg)
			}
			if _, ok := taskStatus(t, id); ok {
				t.Errorf("a task of %s is listed after the refused create", id)
			}
		})
	}
}

// TestRuntimeOptionsWarnings: options of runc's that mean nothing here are
// accepted and named in a warning of the shim log (containerd's log).
func TestRuntimeOptionsWarnings(t *testing.T) {
	if runtimeName != autokillRT {
		t.Skip("our shim's log")
	}
	offset := cd.logSize()
	id := newContainerID(t)
	specContainer(t, id, 0, 0, "true")
	ctx, tasks := tasksClient(t)
	if _, err := tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Options: optionsAny(t, &runcopts.Options{
		NoPivotRoot: true, BinaryName: "/usr/bin/crun", Root: "/run/crun", NoNewKeyring: true,
	})}); err != nil {
		t.Fatalf("create: %v", err)
	}
	for _, o := range []string{"NoPivotRoot", "BinaryName", "Root"} {
		waitFor(t, timeout(10*time.Second), "a warning about "+o, func() bool {
			log := cd.logSince(offset, 1<<20)
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "level=warning") && strings.Contains(l, "option="+o) {
					return true
				}
			}
			return false
		}, func() string { return cd.logSince(offset, 4000) })
	}
	if strings.Contains(cd.logSince(offset, 1<<20), "option=NoNewKeyring") {
		t.Errorf("NoNewKeyring is what this runtime does: no warning expected")
	}
}
