package integration

// Issue 8 point 8: OCI hooks, through ctr, with our shim and with io.containerd.runc.v2 (TestAPI:
// the reference runs them too). The hooks are /bin/sh scripts the test writes; the host's shell
// runs the ones that resolve in the runtime namespace (all but startContainer), the image's the
// startContainer one (it resolves in the container, after pivot_root).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// recordHook records, under $2/$1, what the hook got and where it ran: its stdin (the state),
// argv, env, mount namespace and open fds; and appends $1 to $2/order.
const recordHook = `#!/bin/sh
d="$2/$1"
mkdir -p "$d"
cat > "$d/state"
echo "$1" >> "$2/order"
printf '%s\n' "$@" > "$d/args"
env > "$d/env"
readlink /proc/self/ns/mnt > "$d/mntns"
ls -l /proc/self/fd > "$d/fds" 2>&1
`

// hookDir is a host directory for the hooks and what they record, bound into the container at
// /hookout (rw) so that startContainer and the entrypoint can write there too.
func hookDir(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func hook(path string, args []string, timeout int) map[string]any {
	h := map[string]any{"path": path, "args": args, "env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOOKVAR=" + args[1]}}
	if timeout > 0 {
		h["timeout"] = timeout
	}
	return h
}

// hookSpec is apiSpec with dir bound at /hookout and the given hooks.
func hookSpec(t *testing.T, id, dir string, args []string, hooks map[string][]map[string]any) map[string]any {
	return apiSpec(t, id, args, func(spec, proc, linux map[string]any) {
		spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
			"destination": "/hookout", "type": "bind", "source": dir, "options": []string{"rbind", "rw"},
		})
		spec["hooks"] = hooks
	})
}

func readHookFile(t *testing.T, dir, phase, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, phase, name))
	if err != nil {
		t.Fatalf("%s hook did not record %s: %v", phase, name, err)
	}
	return strings.TrimSpace(string(b))
}

// TestAPIHooks: every hook runs once, in order, where the runtime spec says, with the state JSON
// (status and pid as the spec says for its namespace), its args and exactly its env, and no fd of
// the runtime's but its stdio.
func TestAPIHooks(t *testing.T) {
	id := newContainerID(t)
	dir := hookDir(t, map[string]string{"hook.sh": recordHook})
	host := filepath.Join(dir, "hook.sh")
	phases := []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
	hooks := map[string][]map[string]any{}
	for _, ph := range phases {
		path, out := host, dir
		if ph == "startContainer" {
			path, out = "/hookout/hook.sh", "/hookout" // resolved in the container
		}
		hooks[ph] = []map[string]any{hook(path, []string{"hook", ph, out}, 10)}
	}
	spec := hookSpec(t, id, dir, []string{"sh", "-c", "readlink /proc/self/ns/mnt > /hookout/container-mntns; echo ran >> /hookout/order; echo ran"}, hooks)
	spec["annotations"] = map[string]string{"hooks.test/key": "value"}
	r := runSpecRm(t, id, spec)
	if r.Code != 0 || !strings.Contains(r.Stdout, "ran") {
		t.Fatalf("the container did not run: %s", r)
	}

	order := strings.Fields(readFileT(t, filepath.Join(dir, "order")))
	pos := map[string]int{}
	for i, ph := range order {
		if _, dup := pos[ph]; dup {
			t.Fatalf("%s ran twice: %v", ph, order)
		}
		pos[ph] = i
	}
	for _, ph := range append(phases, "ran") {
		if _, ok := pos[ph]; !ok {
			t.Fatalf("%s did not run: order %v", ph, order)
		}
	}
	// poststart races the entrypoint; everything else is ordered.
	ordered := [][2]string{
		{"prestart", "createRuntime"}, {"createRuntime", "createContainer"}, {"createContainer", "startContainer"},
		{"startContainer", "ran"}, {"ran", "poststop"}, {"poststart", "poststop"},
	}
	if runtimeName == autokillRT {
		// Ours runs poststart once the setup face has exec'd, so after
		// startContainer; runc's `runc start` runs it as soon as the exec
		// fifo is opened, which races its init's startContainer hooks.
		ordered = append(ordered, [2]string{"startContainer", "poststart"})
	}
	for _, before := range ordered {
		if pos[before[0]] > pos[before[1]] {
			t.Errorf("%s ran after %s: %v", before[0], before[1], order)
		}
	}

	selfMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	ctrMnt := readFileT(t, filepath.Join(dir, "container-mntns"))
	if ctrMnt == selfMnt {
		t.Fatalf("the container shares the host's mount namespace %s", selfMnt)
	}
	wantStatus := map[string]specs.ContainerState{
		"prestart": specs.StateCreating, "createRuntime": specs.StateCreating, "createContainer": specs.StateCreating,
		"startContainer": specs.StateCreated, "poststart": specs.StateRunning, "poststop": specs.StateStopped,
	}
	var hostPid int
	for _, ph := range phases {
		inContainer := ph == "createContainer" || ph == "startContainer"
		mnt := readHookFile(t, dir, ph, "mntns")
		switch {
		case inContainer && mnt != ctrMnt:
			t.Errorf("%s ran in mount namespace %s, not the container's %s", ph, mnt, ctrMnt)
		case !inContainer && mnt != selfMnt:
			t.Errorf("%s ran in mount namespace %s, not the runtime's %s", ph, mnt, selfMnt)
		}
		var st specs.State
		raw := readHookFile(t, dir, ph, "state")
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Errorf("%s: state on stdin is not JSON: %v: %q", ph, err, raw)
			continue
		}
		status := wantStatus[ph]
		if ph == "poststart" && runtimeName != autokillRT && st.Status == specs.StateCreated {
			// runc 1.1 hands poststart the state it read before start
			// ("created"); the runtime spec's lifecycle has it running.
			status = st.Status
		}
		if st.ID != id || st.Status != status || !filepath.IsAbs(st.Bundle) || st.Version == "" ||
			st.Annotations["hooks.test/key"] != "value" {
			t.Errorf("%s: state %+v: want id %s, status %s, an absolute bundle, a version, the annotation", ph, st, id, status)
		}
		// The pid as seen where the hook runs: 1 in the container's new pid namespace, the
		// host's pid of the init outside (the same for every runtime-namespace hook).
		switch {
		case inContainer && st.Pid != 1:
			t.Errorf("%s: state pid %d, want 1 (the init, seen from its pid namespace)", ph, st.Pid)
		case ph == "poststop" && st.Pid == 0 && runtimeName != autokillRT:
			// The pid is optional once stopped (runtime.md, "state"); runc
			// leaves it out, we keep the init's.
		case !inContainer && (st.Pid <= 1 || hostPid != 0 && st.Pid != hostPid):
			t.Errorf("%s: state pid %d, want the init's host pid (%d)", ph, st.Pid, hostPid)
		case !inContainer:
			hostPid = st.Pid
		}
		if args := readHookFile(t, dir, ph, "args"); !strings.HasPrefix(args, ph+"\n") {
			t.Errorf("%s: args %q, want the spec's", ph, args)
		}
		env := readHookFile(t, dir, ph, "env")
		if !containsLine(env, "HOOKVAR="+ph) {
			t.Errorf("%s: env lacks the spec's HOOKVAR:\n%s", ph, env)
		}
		for _, leaked := range []string{"TTRPC_ADDRESS", "GRPC_ADDRESS", "NAMESPACE=", "GOMAXPROCS"} {
			if strings.Contains(env, leaked) {
				t.Errorf("%s: the runtime's environment (%s) reached the hook:\n%s", ph, leaked, env)
			}
		}
		// Our fds (autokill pidfds, sockets, the initsync socket) never reach a hook. runc's
		// createContainer hooks inherit its init's sync socket and exec.fifo: checked for ours only.
		fds := readHookFile(t, dir, ph, "fds")
		if runtimeName == autokillRT && (strings.Contains(fds, "pidfd") || strings.Contains(fds, "socket:")) {
			t.Errorf("%s: the hook inherited a runtime fd:\n%s", ph, fds)
		}
	}
}

func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// assertNothingLeft: after a failed create or start, no process of the container, no cgroup, no
// mount of its bundle and no bundle directory stay behind, and no task is listed.
func assertNothingLeft(t *testing.T, id, cgroupsPath string) {
	t.Helper()
	waitFor(t, timeout(20*time.Second), "the container's processes, mounts and bundle to go", func() bool {
		_, listed := taskStatus(t, id)
		_, err := os.Stat(cd.bundleDir(id))
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		return !listed && len(cgroupProcs(t, cgroupsPath)) == 0 && os.IsNotExist(err) &&
			!strings.Contains(string(mi), "/"+id+"/")
	}, func() string {
		_, listed := taskStatus(t, id)
		_, err := os.Stat(cd.bundleDir(id))
		return fmt.Sprintf("task listed %v, cgroup procs %v, bundle stat: %v", listed, cgroupProcs(t, cgroupsPath), err)
	})
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"} {
		if _, err := os.Stat(filepath.Join(root, cgroupsPath)); err == nil {
			t.Errorf("cgroup %s is still there under %s", cgroupsPath, root)
		}
	}
}

// TestAPIHookFailures: a failing prestart, createRuntime or createContainer hook fails create, a
// failing startContainer hook fails start, a hook past its timeout is killed and fails its step;
// the hook's stderr is in the error and nothing of the container stays behind.
func TestAPIHookFailures(t *testing.T) {
	const fail = "#!/bin/sh\necho \"hook $1 says no-$1-xyzzy\" >&2\nexit 7\n"
	const slow = "#!/bin/sh\necho $$ > \"$2/slow.pid\"\necho slow hook started >&2\nexec sleep 60\n"
	for _, tc := range []struct {
		phase, script string
		timeout       int
		want          string
	}{
		{"prestart", fail, 0, "no-prestart-xyzzy"},
		{"createRuntime", fail, 0, "no-createRuntime-xyzzy"},
		{"createContainer", fail, 0, "no-createContainer-xyzzy"},
		{"startContainer", fail, 0, "no-startContainer-xyzzy"},
		{"createRuntime", slow, 1, "timeout"},
	} {
		name := tc.phase
		if tc.timeout > 0 {
			name += "-timeout"
		}
		t.Run(name, func(t *testing.T) {
			id := newContainerID(t)
			dir := hookDir(t, map[string]string{"hook.sh": tc.script})
			path, out := filepath.Join(dir, "hook.sh"), dir
			if tc.phase == "startContainer" {
				path, out = "/hookout/hook.sh", "/hookout"
			}
			hooks := map[string][]map[string]any{tc.phase: {hook(path, []string{"hook", tc.phase, out}, tc.timeout)}}
			start := time.Now()
			r := runSpecRm(t, id, hookSpec(t, id, dir, []string{"sh", "-c", "echo ran"}, hooks))
			took := time.Since(start)
			if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
				t.Fatalf("the container ran despite the failing %s hook: %s", tc.phase, r)
			}
			if !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(tc.want)) {
				t.Errorf("the error does not carry %q: %s", tc.want, r)
			}
			if tc.timeout > 0 {
				if took > timeout(40*time.Second) {
					t.Errorf("create took %v with a hook timeout of %ds", took, tc.timeout)
				}
				pid, err := strconv.Atoi(readFileT(t, filepath.Join(dir, "slow.pid")))
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, timeout(10*time.Second), "the timed-out hook to be killed", func() bool { return !alive(pid) }, nil)
			}
			assertNothingLeft(t, id, "/"+testNamespace+"/"+id)
		})
	}
}

// TestAPIPoststopHookFailureNotFatal: a failing poststop hook is logged; the container still
// runs and is deleted.
func TestAPIPoststopHookFailureNotFatal(t *testing.T) {
	id := newContainerID(t)
	dir := hookDir(t, map[string]string{"hook.sh": "#!/bin/sh\ncat >/dev/null\necho ran > \"$2/poststop-ran\"\necho poststop fails >&2\nexit 1\n"})
	hooks := map[string][]map[string]any{"poststop": {hook(filepath.Join(dir, "hook.sh"), []string{"hook", "poststop", dir}, 0)}}
	r := runSpecRm(t, id, hookSpec(t, id, dir, []string{"sh", "-c", "echo ran"}, hooks))
	if !strings.Contains(r.Stdout, "ran") {
		t.Fatalf("the container did not run: %s", r)
	}
	if r.Code != 0 {
		t.Errorf("a failing poststop hook failed the run: %s", r)
	}
	if got := readFileT(t, filepath.Join(dir, "poststop-ran")); got != "ran" {
		t.Fatalf("the poststop hook did not run: %q", got)
	}
	assertNothingLeft(t, id, "/"+testNamespace+"/"+id)
}
