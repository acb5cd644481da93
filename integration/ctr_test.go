package integration

// Point 1 of the issue: the shim runs real containers for ctr users of every containerd under test,
// and ctr run / task ls / ps / kill / delete behave as they do with io.containerd.runc.v2.
// Every test here passes with AUTOKILL_RUNTIME=io.containerd.runc.v2 (the reference).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runArgs is `run --runtime R` plus the given flags, IMAGE, ID and the command.
func runArgs(flags []string, id string, cmd ...string) []string {
	a := append([]string{"run", "--runtime", runtimeName}, flags...)
	a = append(a, imageRef, id)
	return append(a, cmd...)
}

// runDetached starts `sh -c script` with ctr run -d and waits until ctr task ps lists at least
// minProcs processes (so that everything the script starts before blocking is in place).
func runDetached(t *testing.T, id string, minProcs int, flags []string, script string) taskInfo {
	t.Helper()
	r := ctrResult(t, runArgs(append([]string{"-d"}, flags...), id, "sh", "-c", script)...)
	if r.Code != 0 {
		t.Fatalf("ctr run -d failed: %s", r)
	}
	ti := waitTaskStatus(t, id, "RUNNING", timeout(30*time.Second))
	var pids []int
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("%d processes in task %s", minProcs, id), func() bool {
		pids = taskPids(t, id)
		return len(pids) >= minProcs
	}, func() string { return fmt.Sprintf("ctr task ps: %v", pids) })
	return ti
}

// waitGone waits until none of pids is alive (zombies count as gone: they are reaped by others).
func waitGone(t *testing.T, pids []int, what string) {
	t.Helper()
	waitFor(t, timeout(30*time.Second), what+" to be gone", func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	}, func() string { return "still there:\n" + psTable(pids) })
}

func TestCtrRunRmExitCode(t *testing.T) {
	for _, tc := range []struct {
		script string
		out    string
		code   int
	}{
		{"echo hello; exit 3", "hello\n", 3},
		{"echo hello", "hello\n", 0},
		{"echo out; echo err >&2; exit 255", "out\n", 255},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			id := newContainerID(t)
			r := ctrResult(t, runArgs([]string{"--rm"}, id, "sh", "-c", tc.script)...)
			if r.Code != tc.code || r.Stdout != tc.out {
				t.Fatalf("want stdout %q and exit %d; got %s", tc.out, tc.code, r)
			}
			if tc.code == 255 && !strings.Contains(r.Stderr, "err") {
				t.Errorf("container stderr not relayed: %s", r)
			}
			if containsLine(mustCtr(t, "containers", "ls", "-q"), id) {
				t.Errorf("--rm left container %s behind", id)
			}
		})
	}
}

func TestCtrRunDetachedLsPsKill(t *testing.T) {
	id := newContainerID(t)
	ti := runDetached(t, id, 4, nil, "sleep 1000 & sleep 1000 & sleep 1000 & wait")

	// ctr task ls: RUNNING with the init's host PID.
	if ti.Pid <= 0 || !alive(ti.Pid) {
		t.Fatalf("ctr task ls: pid %d of %s is not a live host process", ti.Pid, id)
	}
	if args := procCmdline(ti.Pid); len(args) < 1 || filepath.Base(args[0]) != "sh" {
		t.Errorf("task pid %d runs %q, want the container's sh", ti.Pid, args)
	}
	// ctr task ps: the init and the three sleeps, all in the container.
	pids := taskPids(t, id)
	if len(pids) != 4 {
		t.Errorf("ctr task ps %s: want 4 processes (sh + 3 sleep), got %v\n%s", id, pids, psTable(pids))
	}
	if !slices.Contains(pids, ti.Pid) {
		t.Errorf("ctr task ps %s: %v does not include the init pid %d", id, pids, ti.Pid)
	}
	procs := containerProcs(t, id)
	for _, p := range pids {
		if !slices.Contains(procs, p) {
			t.Errorf("pid %d from ctr task ps is not in the container's cgroup or pid namespace (%v)", p, procs)
		}
	}
	for _, p := range pids {
		if p == ti.Pid {
			continue
		}
		if args := procCmdline(p); len(args) < 2 || args[0] != "sleep" || args[1] != "1000" {
			t.Errorf("pid %d: cmdline %q, want sleep 1000", p, args)
		}
	}

	// ctr task kill -s KILL: the init dies (137) and takes the whole pid namespace with it.
	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	waitGone(t, procs, "the container's processes")
	if left := cgroupProcs(t, containerCgroupsPath(t, id)); len(left) > 0 {
		t.Errorf("processes left in the container's cgroup:\n%s", psTable(left))
	}
	if st := deleteTask(t, id); st != 137 {
		t.Errorf("exit status after SIGKILL: %d, want 137", st)
	}
	if _, ok := taskStatus(t, id); ok {
		t.Errorf("task %s still listed after ctr task delete", id)
	}
}

func TestCtrTaskKillDefaultSignal(t *testing.T) {
	// The init of a pid namespace only receives signals it handles, so sh traps TERM. ctr task ps
	// listing the sleep proves the trap is installed before the kill.
	id := newContainerID(t)
	runDetached(t, id, 2, nil, `trap "exit 42" TERM; sleep 1000 & wait`)
	mustCtr(t, "tasks", "kill", id) // SIGTERM
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	if st := deleteTask(t, id); st != 42 {
		t.Errorf("exit status after SIGTERM to a trap \"exit 42\": %d, want 42", st)
	}
}

func TestCtrTaskKillSignalByName(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 2, nil, `trap "exit 11" USR1; trap "exit 12" HUP; sleep 1000 & wait`)
	mustCtr(t, "tasks", "kill", "-s", "SIGHUP", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	if st := deleteTask(t, id); st != 12 {
		t.Errorf("exit status after SIGHUP to a trap \"exit 12\": %d, want 12", st)
	}
}

func TestCtrTaskKillAll(t *testing.T) {
	id := newContainerID(t)
	// sh ignores TERM; its children are in the same pid namespace.
	runDetached(t, id, 3, nil, `sleep 1000 & sleep 1000 & wait; sleep 1000`)
	procs := containerProcs(t, id)
	if len(procs) < 3 {
		t.Fatalf("want >= 3 container processes, got:\n%s", psTable(procs))
	}
	mustCtr(t, "tasks", "kill", "--all", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	waitGone(t, procs, "every process of the container")
	if st := deleteTask(t, id); st != 137 {
		t.Errorf("exit status after kill --all -s KILL: %d, want 137", st)
	}
}

func TestCtrTaskKillAllTermReachesChildren(t *testing.T) {
	// --all delivers the signal to every process, not only the init. sh (pid 1) handles TERM and
	// keeps waiting while either sleep lives; it exits 7 only once both sleeps died of the TERM.
	// Were only the init signalled, the task would not stop.
	id := newContainerID(t)
	runDetached(t, id, 3, nil, `trap "true" TERM; sleep 1000 & c1=$!; sleep 1000 & c2=$!; `+
		`while kill -0 $c1 2>/dev/null || kill -0 $c2 2>/dev/null; do wait; done; exit 7`)
	ti, _ := taskStatus(t, id)
	var children []int
	for _, p := range taskPids(t, id) {
		if p != ti.Pid {
			children = append(children, p)
		}
	}
	mustCtr(t, "tasks", "kill", "--all", id) // SIGTERM to all
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	waitGone(t, children, "the sleeps")
	if st := deleteTask(t, id); st != 7 {
		t.Errorf("exit status: %d, want 7 (sh saw both sleeps die, then exited)", st)
	}
}

func TestCtrTaskDelete(t *testing.T) {
	id := newContainerID(t)
	ti := runDetached(t, id, 2, nil, "sleep 1000 & sleep 1000")

	// Deleting a running task fails and leaves it running.
	r := ctrResult(t, "tasks", "delete", id)
	if r.Code == 0 {
		t.Fatalf("ctr task delete of a running task succeeded: %s", r)
	}
	if st, ok := taskStatus(t, id); !ok || st.Status != "RUNNING" || st.Pid != ti.Pid || !alive(ti.Pid) {
		t.Fatalf("after a refused delete: task %+v (listed %v), want RUNNING pid %d", st, ok, ti.Pid)
	}

	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	if st := deleteTask(t, id); st != 137 {
		t.Errorf("exit status %d, want 137", st)
	}
	if _, ok := taskStatus(t, id); ok {
		t.Fatalf("task %s still listed after delete", id)
	}
	// The container stays, without a task; deleting the task again is "not found".
	if !containsLine(mustCtr(t, "containers", "ls", "-q"), id) {
		t.Errorf("container %s vanished with its task", id)
	}
	r = ctrResult(t, "tasks", "delete", id)
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "not found") {
		t.Errorf("second ctr task delete: want an error with \"not found\", got %s", r)
	}
}

func TestCtrUnknownID(t *testing.T) {
	const id = "autokill-no-such-container"
	for _, args := range [][]string{
		{"tasks", "kill", id},
		{"tasks", "kill", "-s", "KILL", "--all", id},
		{"tasks", "ps", id},
		{"tasks", "delete", id},
		{"tasks", "start", id},
	} {
		r := ctrResult(t, args...)
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "not found") {
			t.Errorf("want failure mentioning \"not found\": %s", r)
		}
	}
}

func TestCtrRunEnvCwd(t *testing.T) {
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm", "--env", "FOO=bar baz", "--env", "EMPTY=", "--cwd", "/tmp"}, id,
		"sh", "-c", `echo "FOO=$FOO"; echo "PATH=$PATH"; env | grep -q '^EMPTY=$' && echo EMPTY-set; pwd`)...)
	want := "FOO=bar baz\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nEMPTY-set\n/tmp\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("want stdout %q, exit 0; got %s", want, r)
	}
}

func TestCtrRunDefaults(t *testing.T) {
	// The image's defaults and what ctr's default spec asks for: root, cwd /, own pid namespace
	// (sh is pid 1), own hostname namespace, /proc mounted, /dev populated.
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm"}, id, "sh", "-c",
		`id -u; id -g; pwd; echo pid=$$; test -e /proc/self/status && echo proc; test -c /dev/null && echo devnull; cat /proc/1/cmdline | tr '\0' ' '; echo`)...)
	want := "0\n0\n/\npid=1\nproc\ndevnull\nsh -c " // the rest of /proc/1/cmdline is the script
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, want) {
		t.Fatalf("want stdout starting with %q, exit 0; got %s", want, r)
	}
}

func TestCtrRunReadOnlyRootfs(t *testing.T) {
	script := `touch /newfile 2>&1; echo rc=$?`
	t.Run("read-only", func(t *testing.T) {
		id := newContainerID(t)
		r := ctrResult(t, runArgs([]string{"--rm", "--read-only"}, id, "sh", "-c", script)...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "Read-only file system") || !strings.HasSuffix(r.Stdout, "rc=1\n") {
			t.Fatalf("want touch to fail with EROFS; got %s", r)
		}
	})
	t.Run("writable", func(t *testing.T) {
		id := newContainerID(t)
		r := ctrResult(t, runArgs([]string{"--rm"}, id, "sh", "-c", script)...)
		if r.Code != 0 || r.Stdout != "rc=0\n" {
			t.Fatalf("want touch to work without --read-only; got %s", r)
		}
	})
}

func TestCtrRunBindMounts(t *testing.T) {
	host := t.TempDir()
	roDir, rwDir := filepath.Join(host, "ro"), filepath.Join(host, "rw")
	for _, d := range []string{roDir, rwDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(roDir, "data"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm",
		"--mount", "type=bind,src=" + roDir + ",dst=/mnt/ro,options=rbind:ro",
		"--mount", "type=bind,src=" + rwDir + ",dst=/mnt/rw,options=rbind:rw"}, id,
		"sh", "-c", `cat /mnt/ro/data; touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused; echo from-container > /mnt/rw/out && echo rw-ok`)...)
	want := "from-host\nro-refused\nrw-ok\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("want stdout %q; got %s", want, r)
	}
	b, err := os.ReadFile(filepath.Join(rwDir, "out"))
	if err != nil || string(b) != "from-container\n" {
		t.Errorf("file written through the rw bind mount: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(roDir, "x")); err == nil {
		t.Errorf("a file appeared in the read-only bind mount's source")
	}
}

func TestCtrRunMemoryLimit(t *testing.T) {
	const limit = 64 << 20
	flags := []string{"--memory-limit", strconv.Itoa(limit)}
	t.Run("inside", func(t *testing.T) {
		// ctr's default spec mounts sysfs without cgroups; ask for the cgroup mount explicitly.
		id := newContainerID(t)
		r := ctrResult(t, runArgs(append([]string{"--rm", "--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro"}, flags...), id,
			"sh", "-c", `cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max`)...)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(limit) {
			t.Fatalf("want the container to see its memory limit %d; got %s", limit, r)
		}
	})
	t.Run("host", func(t *testing.T) {
		id := newContainerID(t)
		ti := runDetached(t, id, 1, flags, "sleep 1000")
		cg := containerCgroupsPath(t, id)
		file := filepath.Join("/sys/fs/cgroup/memory", cg, "memory.limit_in_bytes")
		if cgroupV2Only() {
			file = filepath.Join("/sys/fs/cgroup", cg, "memory.max")
		}
		b, err := os.ReadFile(file)
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(limit) {
			t.Fatalf("%s: %q, %v; want %d", file, b, err, limit)
		}
		if procs := readCgroupProcs(t, filepath.Dir(file)); !slices.Contains(procs, ti.Pid) {
			t.Errorf("init pid %d is not in %s/cgroup.procs %v", ti.Pid, filepath.Dir(file), procs)
		}
	})
}

func readCgroupProcs(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
	}
	return pids
}

func TestCtrRunUserHostnameFlags(t *testing.T) {
	// ctr 2.x has --user and --hostname; ctr 1.6 has neither (TestCtrRunSpecFile covers them there).
	if !ctrSupportsFlag(t, "user", "run") || !ctrSupportsFlag(t, "hostname", "run") {
		t.Skipf("ctr %s has no run --user/--hostname", cd.version)
	}
	for _, tc := range []struct{ user, want string }{
		{"65534:65534", "65534 65534 akhost\n"},
		{"nobody", "65534 65534 akhost\n"}, // resolved from the image's /etc/passwd
		{"0", "0 0 akhost\n"},
	} {
		t.Run(strings.ReplaceAll(tc.user, ":", "-"), func(t *testing.T) {
			id := newContainerID(t)
			r := ctrResult(t, runArgs([]string{"--rm", "--user", tc.user, "--hostname", "akhost"}, id,
				"sh", "-c", `echo "$(id -u) $(id -g) $(hostname)"`)...)
			if r.Code != 0 || r.Stdout != tc.want {
				t.Fatalf("want %q; got %s", tc.want, r)
			}
		})
	}
}

// TestCtrRunSpecFile runs a hand-written spec (ctr run --config) on an unpacked rootfs given by
// absolute root.path: user with additional groups, hostname, env, cwd, read-only root.
func TestCtrRunSpecFile(t *testing.T) {
	id := newContainerID(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)

	var spec map[string]any
	out := mustCtr(t, "oci", "spec")
	if err := json.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatalf("ctr oci spec: %v\n%s", err, out)
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	spec["hostname"] = "spec-host"
	proc := spec["process"].(map[string]any)
	proc["user"] = map[string]any{"uid": 65534, "gid": 65534, "additionalGids": []int{1, 2}}
	proc["cwd"] = "/tmp"
	proc["env"] = []string{"PATH=/bin", "FOO=bar"}
	proc["args"] = []string{"sh", "-c", `echo "$(id -u) $(id -g) $(id -G)"; hostname; pwd; echo "$FOO"; touch /f 2>/dev/null || echo ro`}
	spec["linux"].(map[string]any)["cgroupsPath"] = "/" + testNamespace + "/" + id
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	r := ctrResult(t, "run", "--rm", "--runtime", runtimeName, "--config", specFile, id)
	want := "65534 65534 65534 1 2\nspec-host\n/tmp\nbar\nro\n"
	if r.Code != 0 {
		t.Fatalf("ctr run --config: %s", r)
	}
	// runc keeps only additionalGids as supplementary groups; `id -G` lists the gid first either way.
	got := r.Stdout
	if alt := "65534 65534 1 2\nspec-host\n/tmp\nbar\nro\n"; got != want && got != alt {
		t.Fatalf("want %q (or %q); got %s", want, alt, r)
	}
}

// TestCtrBindOverImageSymlinks: CRI binds the sandbox's resolv.conf and hosts onto images where
// those are symlinks (Ubuntu's /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf, which
// does not exist in the image). As with runc, the bind lands on the link's target inside the
// rootfs, created there when missing, and never on the host path an absolute link names.
func TestCtrBindOverImageSymlinks(t *testing.T) {
	id := newContainerID(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	hostDir := t.TempDir() // an absolute link to it must stay inside the rootfs
	for name, target := range map[string]string{
		"etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf",
		"etc/hosts":       hostDir + "/hosts",
	} {
		p := filepath.Join(rootfs, name)
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	src := t.TempDir()
	for name, body := range map[string]string{"resolv.conf": "nameserver 192.0.2.53\n", "hosts": "192.0.2.1 sandbox\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec, _, _ := ctrSpec(t, id, rootfs, []string{"sh", "-c", "cat /etc/resolv.conf /etc/hosts; readlink /etc/resolv.conf"})
	mounts := spec["mounts"].([]any)
	for _, name := range []string{"resolv.conf", "hosts"} {
		mounts = append(mounts, map[string]any{
			"destination": "/etc/" + name, "type": "bind", "source": filepath.Join(src, name),
			"options": []string{"rbind", "rprivate", "ro"},
		})
	}
	spec["mounts"] = mounts
	r := runSpecRm(t, id, spec)
	want := "nameserver 192.0.2.53\n192.0.2.1 sandbox\n../run/systemd/resolve/stub-resolv.conf\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("want %q; got %s", want, r)
	}
	if entries, err := os.ReadDir(hostDir); err != nil || len(entries) != 0 {
		t.Errorf("the host directory an image symlink named was written: %v %v", entries, err)
	}
	// (resolv.conf's target was created in the spec's /run tmpfs, gone with the container.)
	p := filepath.Join(rootfs, hostDir, "hosts")
	if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() {
		t.Errorf("the bind target %s was not created inside the rootfs: %v", p, err)
	}
}
