package setup

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
)

// TestMain lets the test binary be the setup face: the root tests exec
// os.Args[0] with argv[1] == initsync.InitArg, exactly as the daemon execs the shim.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == initsync.InitArg {
		Main()
	}
	if name := os.Getenv(testFaceEnv); name != "" {
		runTestFace(name)
	}
	os.Exit(m.Run())
}

func TestParseProcCgroup(t *testing.T) {
	in := "12:pids:/default/c1\n4:cpu,cpuacct:/default/c1\n1:name=systemd:/user.slice\n0::/default/c1\n"
	got, err := parseProcCgroup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pids": "/default/c1", "cpu,cpuacct": "/default/c1", "name=systemd": "/user.slice", "": "/default/c1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
	if _, err := parseProcCgroup(strings.NewReader("garbage\n")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestV1Controllers(t *testing.T) {
	for in, want := range map[string][]string{
		"rw,cpu,cpuacct":                 {"cpu", "cpuacct"},
		"rw,xattr,name=systemd":          {"name=systemd"},
		"rw,memory":                      {"memory"},
		"ro,cpuset,clone_children":       {"cpuset"},
		"rw,release_agent=/x,net_cls,ne": {"net_cls", "ne"},
	} {
		if got := v1Controllers(in); !reflect.DeepEqual(got, want) {
			t.Errorf("v1Controllers(%q) = %v, want %v", in, got, want)
		}
	}
	self := map[string]string{"cpu,cpuacct": "/a", "name=systemd": "/b", "": "/c"}
	if k, ok := hierarchyKey(self, []string{"cpuacct", "cpu"}); !ok || k != "cpu,cpuacct" {
		t.Errorf("hierarchyKey = %q %v", k, ok)
	}
	if _, ok := hierarchyKey(self, []string{"cpu"}); ok {
		t.Error("cpu alone matched cpu,cpuacct")
	}
}

func TestOwnDir(t *testing.T) {
	l := &cgroupLayout{self: map[string]string{"memory": "/default/c1", "": "/default/c1"}}
	for _, tc := range []struct {
		h    hierarchy
		want string
	}{
		{hierarchy{key: "memory", mountpoint: "/sys/fs/cgroup/memory", root: "/"}, "/sys/fs/cgroup/memory/default/c1"},
		{hierarchy{key: "memory", mountpoint: "/sys/fs/cgroup/memory", root: "/default"}, "/sys/fs/cgroup/memory/c1"},
		{hierarchy{key: "", mountpoint: "/sys/fs/cgroup", root: "/"}, "/sys/fs/cgroup/default/c1"},
		{hierarchy{key: "memory", mountpoint: "/m", root: "/other"}, ""},
		{hierarchy{key: "pids", mountpoint: "/m", root: "/"}, ""},
	} {
		got, err := l.ownDir(&tc.h)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("ownDir(%+v) = %q, %v; want %q", tc.h, got, err, tc.want)
		}
	}
}

// TestMountAttrs pins the semantics of the MS_BIND|MS_REMOUNT that
// mount_setattr replaced: requested flags are set, nothing else is cleared
// (so a bind keeps its source's nosuid/nodev/ro), atime is replaced only
// when asked for.
func TestMountAttrs(t *testing.T) {
	for _, tc := range []struct {
		flags    uint64
		set, clr uint64
	}{
		{unix.MS_BIND | unix.MS_REC, 0, 0},
		{unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID, unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID, 0},
		{unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOSYMFOLLOW, unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOSYMFOLLOW, 0},
		{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME | unix.MOUNT_ATTR_NODIRATIME},
		{unix.MS_RELATIME, unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME | unix.MOUNT_ATTR_NODIRATIME},
		{unix.MS_STRICTATIME | unix.MS_NOATIME, unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME | unix.MOUNT_ATTR_NODIRATIME},
		{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME, unix.MOUNT_ATTR__ATIME},
	} {
		a := mountAttrs(tc.flags)
		if a.Attr_set != tc.set || a.Attr_clr != tc.clr || a.Propagation != 0 {
			t.Errorf("mountAttrs(%#x) = set %#x clr %#x, want set %#x clr %#x", tc.flags, a.Attr_set, a.Attr_clr, tc.set, tc.clr)
		}
	}
	if got := newMountAttrs(unix.MS_NOSUID | unix.MS_RDONLY); got != unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_RELATIME {
		t.Errorf("newMountAttrs = %#x", got)
	}
	if got := newMountAttrs(unix.MS_STRICTATIME); got != unix.MOUNT_ATTR_STRICTATIME {
		t.Errorf("newMountAttrs(strictatime) = %#x", got)
	}
}

func TestFsOptions(t *testing.T) {
	var got []string
	for _, o := range fsOptions(unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_SYNCHRONOUS, "newinstance,mode=0620,gid=5,,x=") {
		if o.Value == nil {
			got = append(got, o.Key)
		} else {
			got = append(got, o.Key+"="+*o.Value)
		}
	}
	want := []string{"ro", "sync", "newinstance", "mode=0620", "gid=5", "x="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fsOptions = %q, want %q", got, want)
	}
}

func TestKernelFSTarget(t *testing.T) {
	const proc, sys, ext4 = unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, 0xef53
	for _, tc := range []struct {
		dest, typ string
		magic     int64
		ok        bool
	}{
		{"/etc/hosts", "bind", ext4, true},
		{"/proc", "proc", proc, true},         // a second procfs on /proc
		{"/proc/cpuinfo", "bind", proc, true}, // lxcfs-style
		{"/proc/sys/crypto/fips_enabled", "bind", proc, true},
		{"/proc/net/dev", "bind", proc, false},   // /proc/net is a symlink: never itself
		{"/proc/self/attr", "bind", proc, false}, // CVE-2019-16884
		{"/proc/1", "bind", proc, false},
		{"/data", "bind", proc, false}, // data -> proc/1
		{"/proc/cpuinfo", "tmpfs", proc, false},
		{"/proc/sys", "tmpfs", proc, false},
		{"/sys", "sysfs", sys, true},
		{"/sys/fs/cgroup", "tmpfs", sys, true},
		{"/sys/fs/cgroup", "cgroup2", sys, true},
		{"/sys/fs/cgroup", "bind", sys, true},
		{"/sys/devices/system/cpu/online", "bind", sys, true},
		{"/sys/kernel", "bind", sys, false},
		{"/sys/fs/cgroup", "proc", sys, false},
		{"/sys", "bind", sys, false},
		{"/dev/console", "bind", proc, false}, // CVE-2025-52565
	} {
		err := kernelFSTarget(tc.dest, tc.typ, tc.magic)
		if (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("kernelFSTarget(%q, %q, %#x) = %v", tc.dest, tc.typ, tc.magic, err)
		}
	}
}

func TestCapsMask(t *testing.T) {
	if capsMask(40) != 1<<41-1 || capsMask(63) != ^uint64(0) || capsMask(0) != 1 {
		t.Error("capsMask")
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	other := filepath.Join(dir, "other")
	for _, d := range []string{bin, other, filepath.Join(bin, "adir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bin, "app"), 0o755)
	write(filepath.Join(other, "app"), 0o755)
	write(filepath.Join(bin, "data"), 0o644)
	env := []string{"HOME=/", "PATH=" + bin + ":" + other}

	if p, err := lookPath("app", env); err != nil || p != filepath.Join(bin, "app") {
		t.Errorf("app: %q %v", p, err)
	}
	if p, err := lookPath(filepath.Join(other, "app"), env); err != nil || p != filepath.Join(other, "app") {
		t.Errorf("absolute: %q %v", p, err)
	}
	_, err := lookPath("nosuchcmd", env)
	if err == nil || err.Error() != `exec: "nosuchcmd": executable file not found in $PATH` {
		t.Errorf("nosuchcmd: %v", err)
	}
	if _, err := lookPath("adir", env); err == nil {
		t.Error("a directory was found as an executable")
	}
	if os.Geteuid() != 0 { // root may execute nothing that has no x bit either, but DAC is bypassed for reads only
		if _, err := lookPath("data", env); err == nil {
			t.Error("a non-executable file was found")
		}
	} else if _, err := lookPath("data", env); err == nil {
		t.Error("a file without any x bit was found (root)")
	}
	if _, err := lookPath("app", []string{"HOME=/"}); err == nil {
		t.Error("found without PATH")
	}
	if v, ok := envPath([]string{"PATH=/a", "X=1", "PATH=/b"}); !ok || v != "/b" {
		t.Errorf("envPath = %q %v", v, ok)
	}
}
