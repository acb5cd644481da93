package integration

// Issue 8 point 10: the remaining spec fields containerd can produce, through ctr, with our shim and
// with io.containerd.runc.v2 (the TestAPI prefix: CI runs these against the reference too).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// apiSpec is `ctr oci spec` (its device rules deny everything, as containerd's default spec does)
// on a fresh copy of the image's rootfs, running args, in the cgroup /<ns>/<id>, changed by edit.
func apiSpec(t *testing.T, id string, args []string, edit func(spec, proc, linux map[string]any)) map[string]any {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	spec, proc, linux := ctrSpec(t, id, rootfs, args)
	if edit != nil {
		edit(spec, proc, linux)
	}
	return spec
}

// runSpecFields creates the container from the spec, checks that the fields (dotted paths, e.g.
// "process.scheduler") reached containerd's stored spec, then starts the task and waits for it.
// containerd 1.6's ctr decodes --config with a runtime-spec older than some fields and drops them
// silently: the test is skipped there, naming the client, since no runtime can see such a field.
func runSpecFields(t *testing.T, id string, spec map[string]any, fields ...string) ctrRun {
	t.Helper()
	if r := ctrResult(t, "containers", "create", "--runtime", runtimeName, "--config", writeSpec(t, spec), id); r.Code != 0 {
		t.Fatalf("ctr containers create: %s", r)
	}
	stored := containerSpec(t, id)
	for _, field := range fields {
		var v any = stored
		for _, k := range strings.Split(field, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if v == nil {
			t.Skipf("containerd %s's client dropped %s from the spec before any runtime could see it", cd.serverVersion(), field)
		}
	}
	return ctrResult(t, "tasks", "start", id)
}

// needRuncFor skips a test whose field the reference runc predates (it silently ignores
// process.scheduler, ioPriority and linux.personality, and refuses the time namespace, before
// runc 1.2). Only for the reference runtime: with ours the test always runs.
func needRuncFor(t *testing.T, what string, major, minor int) {
	t.Helper()
	if runtimeName == autokillRT {
		return
	}
	out, err := exec.Command("runc", "--version").Output()
	if err != nil {
		t.Fatalf("runc --version: %v", err)
	}
	// "runc version 1.1.5+ds1"
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	var maj, min int
	if len(f) < 3 {
		t.Fatalf("runc --version: %q", out)
	}
	if _, err := fmt.Sscanf(f[2], "%d.%d", &maj, &min); err != nil {
		t.Fatalf("runc --version: %q: %v", out, err)
	}
	if maj < major || maj == major && min < minor {
		t.Skipf("the reference runc %s predates %s (runc %d.%d)", f[2], what, major, minor)
	}
}

// TestAPIRecursiveReadonlyBind: an rbind of a directory with a mount inside it. With "ro" only the
// top mount is read-only and the nested one stays writable; with "rro" (mount_setattr
// AT_RECURSIVE) the nested one is read-only too.
func TestAPIRecursiveReadonlyBind(t *testing.T) {
	host := t.TempDir()
	sub := filepath.Join(host, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("nested tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	const script = `touch /mnt/top 2>/dev/null && echo top-rw || echo top-ro; touch /mnt/sub/nested 2>/dev/null && echo sub-rw || echo sub-ro`
	for _, tc := range []struct{ opts, want string }{
		{"rbind:ro", "top-ro\nsub-rw\n"},
		{"rbind:rro", "top-ro\nsub-ro\n"},
		{"rbind:ro:rro", "top-ro\nsub-ro\n"},
	} {
		t.Run(strings.ReplaceAll(tc.opts, ":", "-"), func(t *testing.T) {
			os.Remove(filepath.Join(sub, "nested"))
			id := newContainerID(t)
			r := ctrResult(t, runArgs([]string{"--rm", "--mount", "type=bind,src=" + host + ",dst=/mnt,options=" + tc.opts}, id,
				"sh", "-c", script)...)
			if r.Code != 0 || r.Stdout != tc.want {
				t.Fatalf("want stdout %q; got %s", tc.want, r)
			}
			if _, err := os.Stat(filepath.Join(host, "top")); err == nil {
				t.Errorf("a file appeared in the read-only bind's source")
			}
		})
	}
}

// TestAPIDeviceDefaultsUnderDenyAll: ctr oci spec's device rules are a bare deny-all; the default
// devices stay usable (a shell's background job opens /dev/null), as runc's allow list makes them,
// while a device outside that list is still refused by the device cgroup.
func TestAPIDeviceDefaultsUnderDenyAll(t *testing.T) {
	id := newContainerID(t)
	script := `sleep 0.1 & wait && echo bg-ok
head -c 1 /dev/zero | od -An -tx1 | tr -d ' \n'; echo
echo x > /dev/full 2>/dev/null || echo full-enospc
test -c /dev/tty && echo tty-node
mknod /tmp/mem c 1 1 && { head -c 1 /tmp/mem >/dev/null 2>&1 && echo mem-readable || echo mem-denied; }`
	spec := apiSpec(t, id, []string{"sh", "-c", script}, func(spec, proc, linux map[string]any) {
		res, _ := linux["resources"].(map[string]any)
		devs, _ := res["devices"].([]any)
		if len(devs) != 1 || devs[0].(map[string]any)["allow"] != false {
			t.Fatalf("ctr oci spec's device rules are not a bare deny-all: %v", res)
		}
	})
	r := runSpecRm(t, id, spec)
	want := "bg-ok\n00\nfull-enospc\ntty-node\nmem-denied\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("want stdout %q; got %s", want, r)
	}
}

// TestAPIProcessAttrs: process.scheduler, process.ioPriority and linux.personality, read back from
// inside the container (/proc/self/stat's nice and policy, busybox ionice, uname -m and
// /proc/self/personality).
func TestAPIProcessAttrs(t *testing.T) {
	needRuncFor(t, "process.scheduler, process.ioPriority and linux.personality", 1, 2)
	id := newContainerID(t)
	script := `cat /proc/self/stat; ionice -p $$; uname -m; cat /proc/self/personality`
	spec := apiSpec(t, id, []string{"sh", "-c", script}, func(spec, proc, linux map[string]any) {
		proc["scheduler"] = map[string]any{"policy": "SCHED_BATCH", "nice": 7}
		proc["ioPriority"] = map[string]any{"class": "IOPRIO_CLASS_BE", "priority": 6}
		linux["personality"] = map[string]any{"domain": "LINUX32"}
	})
	r := runSpecFields(t, id, spec, "process.scheduler", "process.ioPriority", "linux.personality")
	if r.Code != 0 {
		t.Fatalf("ctr run: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines; got %s", r)
	}
	// Fields after the command name (which is in parentheses): field 19 is nice, 41 the policy.
	stat := lines[0]
	fields := strings.Fields(stat[strings.LastIndex(stat, ")")+1:])
	if len(fields) < 39 {
		t.Fatalf("/proc/self/stat: %q", stat)
	}
	nice, policy := fields[19-3], fields[41-3]
	if nice != "7" || policy != strconv.Itoa(unix.SCHED_BATCH) {
		t.Errorf("nice %s, policy %s; want 7 and %d (SCHED_BATCH)\n%s", nice, policy, unix.SCHED_BATCH, r)
	}
	if got := lines[1]; !strings.Contains(got, "best-effort") || !strings.Contains(got, "6") {
		t.Errorf("ionice: %q, want best-effort prio 6", got)
	}
	if got := lines[2]; got != "i686" {
		t.Errorf("uname -m under LINUX32: %q, want i686", got)
	}
	if got := lines[3]; got != "00000008" {
		t.Errorf("/proc/self/personality: %q, want 00000008 (PER_LINUX32)", got)
	}
}

// TestAPITimeNamespace: a new time namespace with boottime and monotonic offsets. The container's
// /proc/uptime (boottime) is ten days ahead of the host's, and its timens_offsets show both.
func TestAPITimeNamespace(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		t.Skipf("no time namespaces in this kernel: %v", err)
	}
	needRuncFor(t, "time namespaces", 1, 2)
	id := newContainerID(t)
	const tenDays = 10 * 86400
	spec := apiSpec(t, id, []string{"sh", "-c", "cat /proc/uptime /proc/self/timens_offsets"}, func(spec, proc, linux map[string]any) {
		linux["namespaces"] = append(linux["namespaces"].([]any), map[string]any{"type": "time"})
		linux["timeOffsets"] = map[string]any{
			"boottime":  map[string]any{"secs": tenDays},
			"monotonic": map[string]any{"secs": 3600, "nanosecs": 5},
		}
	})
	r := runSpecFields(t, id, spec, "linux.timeOffsets")
	if r.Code != 0 {
		t.Fatalf("ctr run: %s", r)
	}
	host, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	uptime := func(s string) float64 {
		f, _ := strconv.ParseFloat(strings.Fields(s)[0], 64)
		return f
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines; got %s", r)
	}
	if d := uptime(lines[0]) - uptime(string(host)); d < tenDays-60 || d > tenDays+60 {
		t.Errorf("container uptime %s, host %s: not ten days ahead", lines[0], host)
	}
	offsets := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == 3 {
			offsets[f[0]] = f[1] + " " + f[2]
		}
	}
	if offsets["boottime"] != strconv.Itoa(tenDays)+" 0" || offsets["monotonic"] != "3600 5" {
		t.Errorf("timens_offsets %v", offsets)
	}
}

// TestAPIRefusedFieldsThroughCtr: fields this host cannot honour (Intel RDT without resctrl,
// SELinux labels with SELinux off) fail Create with an error naming them, never run silently.
func TestAPIRefusedFieldsThroughCtr(t *testing.T) {
	if _, err := os.Stat("/sys/fs/resctrl/schemata"); err == nil {
		t.Skip("resctrl is mounted: intelRdt could be honoured here")
	}
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		t.Skip("SELinux is on: labels could be honoured here")
	}
	for _, tc := range []struct {
		name, want string
		edit       func(spec, proc, linux map[string]any)
	}{
		{"intelRdt", "intelrdt", func(spec, proc, linux map[string]any) {
			linux["intelRdt"] = map[string]any{"closID": "ak", "l3CacheSchema": "L3:0=f"}
		}},
		{"selinuxLabel", "selinux", func(spec, proc, linux map[string]any) {
			proc["selinuxLabel"] = "system_u:system_r:container_t:s0:c1,c2"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newContainerID(t)
			r := runSpecRm(t, id, apiSpec(t, id, []string{"sh", "-c", "echo ran"}, tc.edit))
			if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
				t.Fatalf("the container ran: %s", r)
			}
			if !strings.Contains(strings.ToLower(r.Stderr), tc.want) {
				t.Errorf("error does not name %s: %s", tc.want, r)
			}
			if runtimeName == autokillRT && !strings.Contains(r.Stderr, "invalid argument") && !strings.Contains(r.Stderr, "not implemented") {
				t.Errorf("error class is neither InvalidArgument nor NotImplemented: %s", r)
			}
		})
	}
}

// TestAPISysctlInHostNetnsRefused: a spec that joins the host's network namespace by path and sets
// a net.* sysctl is refused: the write would change the host. The value is the host's own, so
// nothing changes even if a runtime let it through.
func TestAPISysctlInHostNetnsRefused(t *testing.T) {
	const key = "net.ipv4.ip_forward"
	cur, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	id := newContainerID(t)
	spec := apiSpec(t, id, []string{"sh", "-c", "echo ran"}, func(spec, proc, linux map[string]any) {
		// The test's own network namespace is containerd's and the shim's: the host's.
		setNamespace(linux, "network", fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
		linux["sysctl"] = map[string]any{key: strings.TrimSpace(string(cur))}
	})
	r := runSpecRm(t, id, spec)
	if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
		t.Fatalf("the container ran: %s", r)
	}
	if !strings.Contains(r.Stderr, key) || !strings.Contains(r.Stderr, "host") {
		t.Errorf("error does not name the sysctl and the host namespace: %s", r)
	}
}

// TestAPITimeNamespaceJoined: a time namespace joined by path (the test's own, the host's) is
// entered like the others; the container sees the host's clocks, without offsets.
func TestAPITimeNamespaceJoined(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		t.Skipf("no time namespaces in this kernel: %v", err)
	}
	needRuncFor(t, "time namespaces", 1, 2)
	id := newContainerID(t)
	spec := apiSpec(t, id, []string{"sh", "-c", "cat /proc/self/timens_offsets; readlink /proc/self/ns/time"}, func(spec, proc, linux map[string]any) {
		linux["namespaces"] = append(linux["namespaces"].([]any), map[string]any{"type": "time", "path": fmt.Sprintf("/proc/%d/ns/time", os.Getpid())})
	})
	r := runSpecRm(t, id, spec)
	own, err := os.Readlink("/proc/self/ns/time")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 0 || !strings.HasSuffix(strings.TrimSpace(r.Stdout), own) || !strings.Contains(r.Stdout, "monotonic") {
		t.Fatalf("want the test's time namespace %s; got %s", own, r)
	}
}
