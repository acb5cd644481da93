package integration

// Issue 8, point 1: exec. Every test passes with io.containerd.runc.v2 too.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	// How containerd's client sends an exec's process spec.
	typeurl.Register(&specs.Process{}, "types.containerd.io/opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "Process")
}

// execIn runs `ctr task exec --exec-id E ID args...` and returns what ctr reported.
func execIn(t *testing.T, id, execID string, flags []string, args ...string) ctrRun {
	t.Helper()
	a := append([]string{"tasks", "exec", "--exec-id", execID}, flags...)
	return ctrResult(t, append(append(a, id), args...)...)
}

// nsLinks reads a process's namespace links by type.
func nsLinks(t *testing.T, pid int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range []string{"mnt", "net", "ipc", "uts", "pid", "cgroup", "user", "time"} {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, n))
		if err != nil {
			if os.IsNotExist(err) && n == "time" {
				continue
			}
			t.Fatalf("namespaces of %d: %v", pid, err)
		}
		out[n] = l
	}
	return out
}

// otherPid is the one pid of pids that is not init's.
func otherPid(t *testing.T, pids []int, init int) int {
	t.Helper()
	var out []int
	for _, p := range pids {
		if p != init {
			out = append(out, p)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one process besides the init %d, got %v", init, pids)
	}
	return out[0]
}

// TestAPIExecJoinsEverything: an exec runs in every namespace of the init
// (seen from the host, the user and time namespaces included) and in its
// cgroup, sees the container's rootfs, and its exit code reaches ctr.
func TestAPIExecJoinsEverything(t *testing.T) {
	for _, tc := range []runShape{
		{"private namespaces", nil},
		{"host network", []string{"--net-host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newContainerID(t)
			ti := runDetached(t, id, 1, tc.flags, "echo init > /tmp/mark; exec sleep 1000")
			if r := execIn(t, id, "x1", []string{"--detach"}, "sleep", "1000"); r.Code != 0 {
				t.Fatalf("exec --detach: %s", r)
			}
			pids := taskPids(t, id)
			ep := otherPid(t, pids, ti.Pid)
			want, got := nsLinks(t, ti.Pid), nsLinks(t, ep)
			if fmt.Sprint(want) != fmt.Sprint(got) {
				t.Errorf("exec %d namespaces %v, init's %v", ep, got, want)
			}
			// It holds stdio and nothing else: no pidfd (the init's
			// autokill one least of all), no setup socket or plan.
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", ep))
			if err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", ep, fd.Name()))
				if n, _ := strconv.Atoi(fd.Name()); n > 2 || strings.Contains(l, "pidfd") {
					t.Errorf("exec holds fd %s -> %s", fd.Name(), l)
				}
			}
			ic, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", ti.Pid))
			ec, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", ep))
			if string(ic) != string(ec) || len(ic) == 0 {
				t.Errorf("exec cgroup:\n%s\ninit's:\n%s", ec, ic)
			}
			// The container's view: its rootfs, its pid 1, the exit code.
			r := execIn(t, id, "x2", nil, "sh", "-c", "cat /tmp/mark; cat /proc/1/comm; exit 7")
			if r.Code != 7 || r.Stdout != "init\nsleep\n" {
				t.Errorf("want stdout init, sleep and exit 7; got %s", r)
			}
		})
	}
}

// TestAPIExecUserCwd: ctr's --user and --cwd reach the process.
func TestAPIExecUserCwd(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	r := execIn(t, id, "u", []string{"--user", "1000:1001", "--cwd", "/tmp"}, "sh", "-c", "id -u; id -g; pwd")
	if r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	if r.Stdout != "1000\n1001\n/tmp\n" {
		t.Fatalf("want uid 1000, gid 1001, cwd /tmp; got %s", r)
	}
}

// TestAPIExecMissingBinary: a binary that does not exist fails at Start
// with its name in the error, leaves no process, and the id can be used
// again; the container runs on.
func TestAPIExecMissingBinary(t *testing.T) {
	id := newContainerID(t)
	ti := runDetached(t, id, 1, nil, "exec sleep 1000")
	before := containerProcs(t, id)
	r := execIn(t, id, "m", nil, "/no/such/binary", "arg")
	if r.Code == 0 || !strings.Contains(r.Stderr, "/no/such/binary") {
		t.Fatalf("want a failure naming the binary; got %s", r)
	}
	if !strings.Contains(strings.ToLower(r.Stderr), "no such file") {
		t.Errorf("want the reason (no such file or directory) in the error: %s", r)
	}
	if got := containerProcs(t, id); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("failed exec left processes: before %v, after %v\n%s", before, got, psTable(got))
	}
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" || st.Pid != ti.Pid {
		t.Errorf("task after failed exec: %+v, want running pid %d", st, ti.Pid)
	}
	if r := execIn(t, id, "m", nil, "true"); r.Code != 0 {
		t.Errorf("exec id reused after the failed one: %s", r)
	}
}

// TestAPIExecIDs: a taken exec id is AlreadyExists, an unknown one
// NotFound, and exec into a container that is not running fails.
func TestAPIExecIDs(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	if r := execIn(t, id, "dup", []string{"--detach"}, "sleep", "1000"); r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	r := execIn(t, id, "dup", nil, "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Errorf("want AlreadyExists for a taken exec id; got %s", r)
	}
	r = ctrResult(t, "tasks", "kill", "--exec-id", "nope", id)
	if r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("want NotFound for an unknown exec id; got %s", r)
	}
	// The taken one is still the running one.
	if r := ctrResult(t, "tasks", "kill", "--exec-id", "dup", "-s", "KILL", id); r.Code != 0 {
		t.Errorf("kill the exec: %s", r)
	}
	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	r = execIn(t, id, "late", nil, "true")
	if r.Code == 0 {
		t.Errorf("exec into a stopped task succeeded: %s", r)
	}
}

// TestAPIExecConcurrent: 50 execs at once on one container, each with its
// own output and exit code.
func TestAPIExecConcurrent(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	const n = 50
	var wg sync.WaitGroup
	res := make([]ctrRun, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = execIn(t, id, fmt.Sprintf("c%d", i), nil, "sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i%5))
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.Code != i%5 || r.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("exec %d: want stdout %d and exit %d; got %s", i, i, i%5, r)
		}
	}
	if pids := taskPids(t, id); len(pids) != 1 {
		t.Errorf("after the execs the task has %v", pids)
	}
}

type runShape struct {
	name  string
	flags []string // ctr run flags
}

// pidNSShapes: a pid namespace of the container's own, and the host's
// (the test's, joined by path), where nothing dies with the init.
func pidNSShapes() []runShape {
	return []runShape{
		{"own pid namespace", nil},
		{"host pid namespace", []string{"--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", os.Getpid())}},
	}
}

// TestAPIExecInitExitKillsExecs: when the init exits, its execs die too
// (with the pid namespace, or killed by the runtime when it shares the
// host's), each exec's TaskExit is published, and all of them before the
// init's.
func TestAPIExecInitExitKillsExecs(t *testing.T) {
	for _, tc := range pidNSShapes() {
		t.Run(tc.name, func(t *testing.T) {
			id := newContainerID(t)
			ev := subscribe(t, id)
			ti := runDetached(t, id, 1, tc.flags, "exec sleep 1000")
			for _, e := range []string{"a", "b", "c"} {
				if r := execIn(t, id, e, []string{"--detach"}, "sh", "-c", "sleep 1000 & exec sleep 1001"); r.Code != 0 {
					t.Fatalf("exec %s: %s", e, r)
				}
			}
			var pids []int
			cg := containerCgroupsPath(t, id)
			waitFor(t, timeout(30*time.Second), "7 processes", func() bool {
				// Its cgroup's: with the host's pid namespace, the
				// namespace holds every process of the host.
				pids = cgroupProcs(t, cg)
				return len(pids) == 7
			}, func() string { return psTable(pids) })
			mustCtr(t, "tasks", "kill", "-s", "KILL", id) // the init only
			waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
			waitGone(t, pids, "the container's processes")
			ev.waitFor(t, "the init's TaskExit", func(e taskEvent) bool { return e.Topic == "/tasks/exit" && e.Exec == "" })
			evs := ev.events()
			exits := map[string]bool{}
			initExit := -1
			for i, e := range evs {
				if e.Topic != "/tasks/exit" {
					continue
				}
				if e.Exec == "" {
					initExit = i
					if e.Pid != uint32(ti.Pid) || e.Code != 137 {
						t.Errorf("init exit %+v, want pid %d status 137", e, ti.Pid)
					}
					continue
				}
				if initExit >= 0 {
					t.Errorf("exec %s's exit after the init's: %v", e.Exec, ev)
				}
				exits[e.Exec] = true
			}
			if len(exits) != 3 {
				t.Errorf("exec exits %v, want a, b and c: %v", exits, ev)
			}
		})
	}
}

// TestAPIExecEvents: ExecAdded, ExecStarted (with the pid) and TaskExit
// (with the exec id, pid and status), in that order.
func TestAPIExecEvents(t *testing.T) {
	id := newContainerID(t)
	ev := subscribe(t, id)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	if r := execIn(t, id, "ev", nil, "sh", "-c", "exit 5"); r.Code != 5 {
		t.Fatalf("exec: %s", r)
	}
	ev.waitFor(t, "the exec's exit", func(e taskEvent) bool { return e.Topic == "/tasks/exit" && e.Exec == "ev" })
	var got []taskEvent
	for _, e := range ev.events() {
		if e.Exec == "ev" {
			got = append(got, e)
		}
	}
	if len(got) != 3 || got[0].Topic != "/tasks/exec-added" || got[1].Topic != "/tasks/exec-started" || got[2].Topic != "/tasks/exit" {
		t.Fatalf("exec events %v, want exec-added, exec-started, exit", got)
	}
	if got[1].Pid == 0 || got[2].Pid != got[1].Pid || got[2].Code != 5 {
		t.Errorf("exec-started %+v and exit %+v: want the same pid, status 5", got[1], got[2])
	}
}

// TestAPIExecProcessSpec sends the whole process object through
// containerd's tasks API, as its Go client does: env, cwd, user with
// additional gids and umask, capabilities, noNewPrivileges, rlimits,
// oomScoreAdj, and an argument list near the kernel's limit.
func TestAPIExecProcessSpec(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	ctx, tasks := tasksClient(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	umask := uint32(0o027)
	adj := 123
	caps := []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}
	// The kernel's limit is a quarter of the stack rlimit (ARG_MAX) for
	// argv and envp together, at most 128 KiB per string: 14 strings of
	// 127 KiB, with what the exec itself adds, stay just under 2 MiB.
	big := strings.Repeat("a", 127<<10)
	args := []string{"sh", "-c", `n=0; for a; do n=$((n+${#a})); done; echo args $# $n; id -u; id -g; id -G; umask; pwd; echo $FOO; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; echo nofile $(ulimit -Sn) $(ulimit -Hn); echo oom $(cat /proc/self/oom_score_adj)`, "sh"}
	for i := 0; i < 14; i++ {
		args = append(args, big)
	}
	p := &specs.Process{
		Args: args,
		Env:  []string{"PATH=/bin:/usr/bin", "FOO=bar"},
		Cwd:  "/etc",
		User: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 2001}, Umask: &umask},
		// Ambient, or the non-root execve would drop them all.
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps, Ambient: caps,
		},
		NoNewPrivileges: true,
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 512, Soft: 256}},
		OOMScoreAdj:     &adj,
	}
	a, err := typeurl.MarshalAnyToProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tasks.Exec(ctx, &tasksapi.ExecProcessRequest{
		ContainerID: id, ExecID: "spec", Spec: a, Stdout: "file://" + out, Stderr: "file://" + out,
	}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	st, err := tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: "spec"})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	w, err := tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id, ExecID: "spec"})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	d, err := tasks.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "spec"})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	b, _ := os.ReadFile(out)
	if w.ExitStatus != 0 || d.Pid != st.Pid {
		t.Fatalf("exit %d, delete pid %d (start pid %d); output:\n%s", w.ExitStatus, d.Pid, st.Pid, b)
	}
	got := string(b)
	capHex := fmt.Sprintf("%016x", 1<<10|1<<5) // NET_BIND_SERVICE, KILL
	want := []string{
		fmt.Sprintf("args 14 %d\n1000\n1000\n1000 2000 2001\n", 14*len(big)),
		"\n/etc\nbar\n",
		"CapEff:\t" + capHex, "CapBnd:\t" + capHex, "NoNewPrivs:\t1",
	}
	if runtimeName == autokillRT {
		// runc applies these three to the init only: an exec gets the
		// shim's umask and oom_score_adj, and its soft RLIMIT_NOFILE
		// ends up at the hard one.
		want = append(want, "\n0027\n", "nofile 256 512\n", "oom 123\n")
	} else {
		want = append(want, " 512\n")
	}
	for _, want := range want {
		if !strings.Contains(got, want) {
			t.Errorf("exec output lacks %q:\n%s", want, got)
		}
	}
	// Invalid specs are refused at Exec with InvalidArgument.
	for name, bad := range map[string]*specs.Process{
		"no args":         {Cwd: "/"},
		"relative cwd":    {Args: []string{"true"}, Cwd: "tmp"},
		"unknown rlimit":  {Args: []string{"true"}, Cwd: "/", Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOPE"}}},
		"unknown cap":     {Args: []string{"true"}, Cwd: "/", Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NOPE"}}},
		"oom adj too big": {Args: []string{"true"}, Cwd: "/", OOMScoreAdj: func() *int { v := 1001; return &v }()},
	} {
		a, err := typeurl.MarshalAnyToProto(bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tasks.Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: id, ExecID: "bad", Spec: a})
		if c := codeOf(grpcErr(err)); c != "InvalidArgument" {
			// runc's shim refuses some of these only at Start.
			if err == nil {
				_, err = tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: "bad"})
				_, _ = tasks.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "bad"})
			}
			if err == nil {
				t.Errorf("%s: exec accepted and started", name)
			} else if runtimeName == autokillRT {
				t.Errorf("%s: %v (%s), want InvalidArgument at Exec", name, err, c)
			}
		}
	}
}

// TestCrashKillsExecs: the crash guarantee covers execs. SIGKILL of the
// shim leaves no process of the container, execs and what they forked
// included, also when the container shares the host's pid namespace (no
// namespace dies with the init there: the guard must kill them).
func TestCrashKillsExecs(t *testing.T) {
	requireAutokillRuntime(t)
	for _, tc := range pidNSShapes() {
		t.Run(tc.name, func(t *testing.T) {
			id := newContainerID(t)
			runDetached(t, id, 1, tc.flags, "exec sleep 1000")
			for _, e := range []string{"a", "b"} {
				if r := execIn(t, id, e, []string{"--detach"}, "sh", "-c", "sleep 1000 & exec sleep 1001"); r.Code != 0 {
					t.Fatalf("exec %s: %s", e, r)
				}
			}
			cg := containerCgroupsPath(t, id)
			var pids []int
			waitFor(t, timeout(30*time.Second), "5 processes", func() bool {
				pids = cgroupProcs(t, cg)
				return len(pids) == 5
			}, func() string { return psTable(pids) })
			if err := syscall.Kill(shimPid(t, id), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			assertAllGone(t, pids, timeout(crashBound))
		})
	}
}
