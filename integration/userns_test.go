package integration

// User namespaces (issue 8 point 9): linux.uidMappings/gidMappings, id-mapped
// binds and rootfs, setuid binaries inside, and the crash guarantee for a
// user-namespaced container. The TestAPI ones pass with runc too.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The mapping every test uses: container 0..65535 is host 100000..165535.
const (
	usernsHost = 100000
	usernsMap  = "0:100000:65536"
)

var usernsMapping = []map[string]any{{"containerID": 0, "hostID": usernsHost, "size": 65536}}

// usernsHostDir is a host directory the container's root may write to:
// world-writable, on a path everyone may search (t.TempDir is 0700).
func usernsHostDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "autokill-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func fileOwner(t *testing.T, p string) (uid, gid uint32) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return s.Uid, s.Gid
}

// TestAPIUserNSCtrRunUidmap: `ctr run --uidmap/--gidmap` (1.6 and 2.x): root
// inside, the maps as given, and a file written into a writable bind of a
// host directory belongs to host uid 100000.
func TestAPIUserNSCtrRunUidmap(t *testing.T) {
	id := newContainerID(t)
	host := usernsHostDir(t)
	r := ctrResult(t, runArgs([]string{"--rm", "--uidmap", usernsMap, "--gidmap", usernsMap,
		"--mount", "type=bind,src=" + host + ",dst=/data,options=rbind:rw"}, id,
		"sh", "-c", `id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /data/f; ls -ln /dev/null; cat /sys/kernel/uevent_seqnum >/dev/null && echo sys-ok; echo ok`)...)
	if r.Code != 0 {
		t.Fatalf("ctr run --uidmap: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 7 || lines[0] != "0" || lines[1] != "0" || lines[6] != "ok" || lines[5] != "sys-ok" {
		t.Fatalf("want uid 0, gid 0, two maps, /dev/null, sys-ok, ok; got %s", r)
	}
	for i, what := range []string{"uid_map", "gid_map"} {
		if f := strings.Fields(lines[2+i]); len(f) != 3 || f[0] != "0" || f[1] != strconv.Itoa(usernsHost) || f[2] != "65536" {
			t.Errorf("%s inside = %q, want 0 %d 65536", what, lines[2+i], usernsHost)
		}
	}
	// The host's /dev/null, bound (mknod is not possible in a user
	// namespace): its owner, host root, is unmapped and shows as 65534.
	if f := strings.Fields(lines[4]); len(f) < 5 || !strings.HasPrefix(f[0], "crw-rw-rw-") || f[2] != "65534" || f[4] != "1," {
		t.Errorf("/dev/null inside: %q, want the host's 1:3 owned by the overflow uid", lines[4])
	}
	if uid, gid := fileOwner(t, filepath.Join(host, "f")); uid != usernsHost || gid != usernsHost {
		t.Errorf("file created by the container's root: host owner %d:%d, want %d:%d", uid, gid, usernsHost, usernsHost)
	}
}

// TestAPIUserNSInitCredentials: seen from the host, the running init is
// host uid 100000 in a user namespace other than the host's.
func TestAPIUserNSInitCredentials(t *testing.T) {
	id := newContainerID(t)
	ti := runDetached(t, id, 1, []string{"--uidmap", usernsMap, "--gidmap", usernsMap}, "exec sleep 1000")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ti.Pid))
	if err != nil {
		t.Fatal(err)
	}
	uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindStringSubmatch(string(status))
	if uid == nil || uid[1] != "100000" || uid[2] != "100000" {
		t.Errorf("init's Uid line: %q, want host uid %d", uid, usernsHost)
	}
	own, _ := os.Readlink("/proc/self/ns/user")
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", ti.Pid))
	if err != nil || theirs == own {
		t.Errorf("init's user namespace %q (%v), the host's %q: want a new one", theirs, err, own)
	}
	m, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", ti.Pid))
	if f := strings.Fields(string(m)); len(f) != 3 || f[1] != "100000" {
		t.Errorf("uid_map from the host: %q", m)
	}
}

// usernsRootfs is an unpacked image owned by the mapped root, as
// containerd's remapped snapshots are, with /bin/suid: a static setuid-root
// program that prints its effective uid.
func usernsRootfs(t *testing.T) string {
	t.Helper()
	// Not /tmp: the VM tier mounts it nosuid, which no setuid bit survives.
	base, err := os.MkdirTemp("/var/tmp", "autokill-userns-root-")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(base, &st); err != nil || st.Flags&0x2 != 0 { // ST_NOSUID
		t.Fatalf("%s: nosuid or unknown (%v): the setuid test needs a suid filesystem", base, err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(base, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extractImageRootfs(t, rootfs)
	src := filepath.Join(base, "suid.c")
	prog := `#include <stdio.h>
#include <unistd.h>
int main(void) { printf("ruid=%d euid=%d\n", (int)getuid(), (int)geteuid()); return 0; }
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	// gcc is a build dependency of the test images (hack/build-image.sh).
	if out, err := exec.Command("gcc", "-static", "-O1", "-o", filepath.Join(rootfs, "bin", "suid"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static: %v\n%s", err, out)
	}
	err = filepath.Walk(rootfs, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, usernsHost, usernsHost)
	})
	if err != nil {
		t.Fatal(err)
	}
	// After the chown, which clears the setuid bit.
	if err := os.Chmod(filepath.Join(rootfs, "bin", "suid"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// usernsSpec is ctr's default spec with a new user namespace, the given
// root and args.
func usernsSpec(t *testing.T, id, rootfs string, readonly bool, args ...string) map[string]any {
	t.Helper()
	spec, proc, linux := ctrSpec(t, id, rootfs, args)
	spec["root"] = map[string]any{"path": rootfs, "readonly": readonly}
	proc["env"] = []string{"PATH=/bin:/usr/bin"}
	linux["uidMappings"] = usernsMapping
	linux["gidMappings"] = usernsMapping
	linux["namespaces"] = append(linux["namespaces"].([]any), map[string]any{"type": "user"})
	return spec
}

// TestAPIUserNSSetuidReadonlyRootfs: a spec with mappings on a read-only
// and on a writable rootfs; a setuid-root binary of the image, run by uid
// 1000, gets euid 0 (root of the namespace: host 100000).
func TestAPIUserNSSetuidReadonlyRootfs(t *testing.T) {
	rootfs := usernsRootfs(t)
	for _, ro := range []bool{true, false} {
		t.Run(fmt.Sprintf("readonly=%v", ro), func(t *testing.T) {
			id := newContainerID(t)
			spec := usernsSpec(t, id, rootfs, ro, "sh", "-c",
				`id -u; /bin/suid; ls -ln /bin/suid; if touch /tmp/w; then echo rw; else echo ro; fi`)
			proc := spec["process"].(map[string]any)
			proc["user"] = map[string]any{"uid": 1000, "gid": 1000}
			// ctr's default; setuid needs it off.
			proc["noNewPrivileges"] = false
			r := runSpecRm(t, id, spec)
			if r.Code != 0 {
				t.Fatalf("ctr run --config: %s", r)
			}
			lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
			want := "rw"
			if ro {
				want = "ro"
			}
			if len(lines) != 4 || lines[0] != "1000" || lines[1] != "ruid=1000 euid=0" || lines[3] != want {
				t.Fatalf("want 1000, ruid=1000 euid=0, the listing, %s; got %s", want, r)
			}
			// Owned by the namespace's root and setuid, as the host has it.
			if f := strings.Fields(lines[2]); len(f) < 4 || f[0] != "-rwsr-xr-x" || f[2] != "0" || f[3] != "0" {
				t.Errorf("/bin/suid inside: %q, want -rwsr-xr-x 0 0", lines[2])
			}
		})
	}
}

// runcHasIDMap says whether runc (the reference) knows id-mapped mounts
// (1.2+); Debian 12's 1.1.5 does not.
func runcHasIDMap(t *testing.T) bool {
	out, err := exec.Command("runc", "--version").Output()
	if err != nil {
		t.Fatalf("runc --version: %v", err)
	}
	m := regexp.MustCompile(`runc version (\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("runc --version: %q", out)
	}
	maj, _ := strconv.Atoi(string(m[1]))
	min, _ := strconv.Atoi(string(m[2]))
	return maj > 1 || (maj == 1 && min >= 2)
}

// TestAPIUserNSIdmappedBind: a bind with "idmap" (runtime-spec 1.1 mount
// mappings) shows host root's files as the container's root's and writes
// the container root's files as host root's; a plain writable bind next to
// it writes them as host 100000.
func TestAPIUserNSIdmappedBind(t *testing.T) {
	if runtimeName != autokillRT && !runcHasIDMap(t) {
		t.Skip("the reference runc is older than 1.2: no id-mapped mounts")
	}
	rootfs := usernsRootfs(t)
	idm := usernsHostDir(t) // owned by host root
	plain := usernsHostDir(t)
	if err := os.WriteFile(filepath.Join(idm, "hostfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := newContainerID(t)
	spec := usernsSpec(t, id, rootfs, false, "sh", "-c",
		`stat -c '%u %g' /idm/hostfile; stat -c '%u' /plain; touch /idm/new /plain/new && echo ok`)
	spec["mounts"] = append(spec["mounts"].([]any),
		map[string]any{"destination": "/idm", "type": "bind", "source": idm, "options": []string{"rbind", "rw", "idmap"},
			"uidMappings": usernsMapping, "gidMappings": usernsMapping},
		map[string]any{"destination": "/plain", "type": "bind", "source": plain, "options": []string{"rbind", "rw"}})
	r := runSpecRm(t, id, spec)
	if r.Code != 0 {
		t.Fatalf("ctr run --config: %s", r)
	}
	// /plain is host root's (0777): unmapped inside, the overflow uid.
	if want := "0 0\n65534\nok\n"; r.Stdout != want {
		t.Fatalf("want %q; got %s", want, r)
	}
	if uid, gid := fileOwner(t, filepath.Join(idm, "new")); uid != 0 || gid != 0 {
		t.Errorf("file created through the id-mapped bind: host owner %d:%d, want 0:0", uid, gid)
	}
	if uid, _ := fileOwner(t, filepath.Join(plain, "new")); uid != usernsHost {
		t.Errorf("file created through the plain bind: host owner %d, want %d", uid, usernsHost)
	}
	// Nothing staged for the id-mapped bind stays mounted on the host.
	if m := bundleMounted(t, id); len(m) > 0 {
		t.Errorf("mounts left under the bundle: %v", m)
	}
}

// TestAPIUserNSRemapLabels: `ctr run --remap-labels` (containerd 2.x): the
// overlay snapshotter hands over the rootfs with uidmap=/gidmap= options
// (id-mapped lowerdirs) instead of a chowned copy.
func TestAPIUserNSRemapLabels(t *testing.T) {
	if strings.HasPrefix(cd.version, "1.") {
		t.Skipf("containerd %s's overlay snapshotter has no remap-ids", cd.version)
	}
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm", "--remap-labels", "--uidmap", usernsMap, "--gidmap", usernsMap}, id,
		"sh", "-c", `id -u; stat -c '%u %g' /bin /etc/passwd; touch /new && stat -c %u /new`)...)
	if r.Code != 0 {
		t.Fatalf("ctr run --remap-labels: %s", r)
	}
	if want := "0\n0 0\n0 0\n0\n"; r.Stdout != want {
		t.Fatalf("want %q (the image's root-owned files as the namespace's root's); got %s", want, r)
	}
}

// TestUserNSCrashShimKilled: the crash guarantee for a user-namespaced
// container: SIGKILL the shim, nothing of the container survives.
func TestUserNSCrashShimKilled(t *testing.T) {
	requireAutokillRuntime(t)
	id := newContainerID(t)
	runDetached(t, id, 3, []string{"--uidmap", usernsMap, "--gidmap", usernsMap}, "sleep 1000 & sleep 1000 & wait")
	pids := containerProcs(t, id)
	if len(pids) < 3 {
		t.Fatalf("container processes %v, want at least 3", pids)
	}
	if err := syscall.Kill(shimPid(t, id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assertAllGone(t, pids, timeout(crashBound))
	waitFor(t, timeout(30*time.Second), "task to leave the RUNNING state", func() bool {
		st, ok := taskStatus(t, id)
		return !ok || st.Status != "RUNNING"
	}, func() string { return mustCtr(t, "tasks", "ls") })
}

// usernsSandbox runs a container in a user namespace of its own, whose
// namespaces the join tests enter by path (the pod's sandbox).
func usernsSandbox(t *testing.T) taskInfo {
	t.Helper()
	return runDetached(t, newContainerID(t), 1, []string{"--uidmap", usernsMap, "--gidmap", usernsMap}, "exec sleep 1000")
}

// joinSpec is a spec for a container that joins the user namespace (and
// the pid namespace) of the running process pid by path, with the mappings
// CRI passes along, and creates its own mount, ipc, uts and network
// namespaces, which must then belong to that user namespace (its /sys
// mounts).
func joinSpec(t *testing.T, id, rootfs string, pid int, mapping []map[string]any, newPid bool, args ...string) map[string]any {
	spec := usernsSpec(t, id, rootfs, false, args...)
	linux := spec["linux"].(map[string]any)
	linux["uidMappings"], linux["gidMappings"] = mapping, mapping
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		switch n.(map[string]any)["type"] {
		case "user":
		case "pid":
			if !newPid {
				ns = append(ns, map[string]any{"type": "pid", "path": fmt.Sprintf("/proc/%d/ns/pid", pid)})
			} else {
				ns = append(ns, n)
			}
		default:
			ns = append(ns, n)
		}
	}
	linux["namespaces"] = append(ns, map[string]any{"type": "user", "path": fmt.Sprintf("/proc/%d/ns/user", pid)})
	return spec
}

// TestAPIUserNSJoinByPath: a second container joins the first one's user
// and pid namespaces by path (CRI's shape for a user-namespaced pod that
// shares its pid namespace), with the mappings given too.
func TestAPIUserNSJoinByPath(t *testing.T) {
	rootfs := usernsRootfs(t)
	ti := usernsSandbox(t)
	id := newContainerID(t)
	r := runSpecRm(t, id, joinSpec(t, id, rootfs, ti.Pid, usernsMapping, false, "sh", "-c",
		`id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; [ -n "$(cat /sys/kernel/uevent_seqnum)" ] && echo sys-ok`))
	if r.Code != 0 {
		t.Fatalf("ctr run --config (join user namespace): %s", r)
	}
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", ti.Pid))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 4 || lines[0] != "0" || lines[2] != want || lines[3] != "sys-ok" {
		t.Fatalf("want 0, the map, %s, sys-ok; got %s", want, r)
	}
	if f := strings.Fields(lines[1]); len(f) != 3 || f[1] != strconv.Itoa(usernsHost) {
		t.Errorf("uid_map %q", lines[1])
	}
}

// TestUserNSJoinWrongMappings: mappings that are not the joined
// namespace's fail Create (runc 1.1 does not check them).
func TestUserNSJoinWrongMappings(t *testing.T) {
	requireAutokillRuntime(t)
	rootfs := usernsRootfs(t)
	ti := usernsSandbox(t)
	id := newContainerID(t)
	wrong := []map[string]any{{"containerID": 0, "hostID": 300000, "size": 65536}}
	r := runSpecRm(t, id, joinSpec(t, id, rootfs, ti.Pid, wrong, false, "true"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "the spec says") {
		t.Fatalf("want a refusal naming the maps; got %s", r)
	}
}

// TestAPIUserNSJoinNewPidNS: a container joins a user namespace by path
// and has a pid namespace of its own, CRI's shape for the app containers of
// a user-namespaced pod: it is pid 1 of a pid namespace owned by the joined
// user namespace (its root mounts /proc), root there, and its mount, ipc,
// uts and network namespaces belong to that user namespace too.
func TestAPIUserNSJoinNewPidNS(t *testing.T) {
	rootfs := usernsRootfs(t)
	ti := usernsSandbox(t)
	id := newContainerID(t)
	r := runSpecRm(t, id, joinSpec(t, id, rootfs, ti.Pid, usernsMapping, true, "sh", "-c",
		`echo $$; id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/self/ns/pid; ls /proc | grep -c '^[0-9]'; [ -n "$(cat /sys/kernel/uevent_seqnum)" ] && echo sys-ok`))
	if r.Code != 0 {
		t.Fatalf("ctr run --config (join user namespace, new pid namespace): %s", r)
	}
	sandbox := nsLinks(t, ti.Pid)
	wantUser, sandboxPid := sandbox["user"], sandbox["pid"]
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 7 || lines[0] != "1" || lines[1] != "0" || lines[3] != wantUser || lines[6] != "sys-ok" {
		t.Fatalf("want pid 1, uid 0, the map, %s, a pid namespace, a few pids, sys-ok; got %s", wantUser, r)
	}
	if f := strings.Fields(lines[2]); len(f) != 3 || f[1] != strconv.Itoa(usernsHost) {
		t.Errorf("uid_map %q", lines[2])
	}
	if lines[4] == sandboxPid {
		t.Errorf("pid namespace %s is the joined container's: want one of its own", lines[4])
	}
	// Its own /proc shows its own pid namespace: sh and the one ls.
	if n, err := strconv.Atoi(lines[5]); err != nil || n > 3 {
		t.Errorf("/proc lists %q pids: not a /proc of the container's own pid namespace", lines[5])
	}
}

// TestAPIUserNSJoinNewPidNSExec: an exec into such a container enters its
// user and pid namespaces (not only the joined user namespace's first
// container's): it is root there and sees the container's pid 1.
func TestAPIUserNSJoinNewPidNSExec(t *testing.T) {
	rootfs := usernsRootfs(t)
	ti := usernsSandbox(t)
	id := newContainerID(t)
	runSpecDetached(t, id, joinSpec(t, id, rootfs, ti.Pid, usernsMapping, true, "sh", "-c", "exec sleep 1000"), 1)
	st, ok := taskStatus(t, id)
	if !ok {
		t.Fatalf("task %s not listed", id)
	}
	wantUser, wantPid := nsLinks(t, ti.Pid)["user"], nsLinks(t, st.Pid)["pid"]
	r := execIn(t, id, "e1", nil, "sh", "-c", `id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/pid; cat /proc/1/comm`)
	if r.Code != 0 {
		t.Fatalf("ctr task exec: %s", r)
	}
	if got := strings.Fields(r.Stdout); !slices.Equal(got, []string{"0", wantUser, wantPid, "sleep"}) {
		t.Fatalf("exec: got %q, want [0 %s %s sleep]", got, wantUser, wantPid)
	}
	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
}

// TestAPIUserNSBindBelowPrivateDir: the bind sources of a user-namespaced container may lie below a
// directory its root (a mapped host uid) cannot search, as CRI's sandbox /dev/shm does below its
// 0700 state directory: the runtime reaches them with the host's credentials. Nothing staged for
// that stays mounted on the host.
func TestAPIUserNSBindBelowPrivateDir(t *testing.T) {
	rootfs := usernsRootfs(t)
	private := t.TempDir() // 0700, host root's
	if err := os.Mkdir(filepath.Join(private, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, body := range map[string]string{"dir/f": "in a dir\n", "file": "a file\n"} {
		if err := os.WriteFile(filepath.Join(private, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	id := newContainerID(t)
	spec := usernsSpec(t, id, rootfs, false, "sh", "-c", "cat /vol/f /etc/x")
	spec["mounts"] = append(spec["mounts"].([]any),
		map[string]any{"destination": "/vol", "type": "bind", "source": filepath.Join(private, "dir"), "options": []string{"rbind", "ro"}},
		map[string]any{"destination": "/etc/x", "type": "bind", "source": filepath.Join(private, "file"), "options": []string{"bind", "ro"}})
	r := runSpecRm(t, id, spec)
	if want := "in a dir\na file\n"; r.Code != 0 || r.Stdout != want {
		t.Fatalf("want %q; got %s", want, r)
	}
	if m := bundleMounted(t, id); len(m) > 0 {
		t.Errorf("mounts left under the bundle: %v", m)
	}
}
