package spec

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mountopt"
)

// fuzzSeedEdits are variations of the ctr fixture, one per kind of case the
// table tests cover, so the fuzzer starts from every branch of NewPlan.
var fuzzSeedEdits = []func(*specs.Spec){
	func(s *specs.Spec) { s.Root = &specs.Root{Path: "rootfs/../r/", Readonly: true} },
	func(s *specs.Spec) {
		s.Linux.Namespaces = []specs.LinuxNamespace{
			{Type: "mount"}, {Type: "network", Path: "/var/run/netns/cni-1"}, {Type: "pid", Path: "/proc/42/ns/pid"},
			{Type: "ipc", Path: "/proc/42/ns/ipc"}, {Type: "uts"}, {Type: "cgroup"},
		}
	},
	func(s *specs.Spec) {
		s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount", Path: "/proc/1/ns/mnt"}}
	},
	func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "user"}, specs.LinuxNamespace{Type: "pid"})
	},
	func(s *specs.Spec) {
		s.Hostname, s.Domainname = "box", "example.org"
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000",
			"fs.mqueue.msg_max": "20", "net/ipv4/conf/eth0.100/rp_filter": "2", "net/../../etc": "1"}
	},
	func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/hosts", Options: []string{"rbind", "rprivate", "ro"}},
			specs.Mount{Destination: "/data/", Type: "none", Source: "vol", Options: []string{"bind", "nosuid", "rslave"}},
			specs.Mount{Destination: "/proc/sys", Type: "bind", Source: "/x", Options: []string{"rbind"}},
			specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "mode=1777", "rro"}},
		)
	},
	func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind"}})
		s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "p"}}
	},
	func(s *specs.Spec) {
		mode := os.FileMode(0o600)
		uid := uint32(5)
		s.Linux.Devices = []specs.LinuxDevice{
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid, GID: &uid},
			{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/pipe", Type: "p"},
			{Path: "/dev/../etc/x", Type: "b", Major: 8},
		}
	},
	func(s *specs.Spec) {
		umask, adj := uint32(0o077), -998
		s.Process.Cwd = "/home/user/"
		s.Process.User = specs.User{UID: 1000, GID: 1000, Umask: &umask, AdditionalGids: []uint32{4, 5}}
		s.Process.OOMScoreAdj = &adj
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"}, Permitted: []string{"CAP_NET_ADMIN"},
			Inheritable: []string{"CAP_NET_ADMIN"}, Ambient: []string{"CAP_NET_ADMIN"}, Effective: []string{"CAP_KILL"},
		}
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 20, Hard: 10})
	},
	func(s *specs.Spec) {
		limit, shares, quota := int64(1<<30), uint64(512), int64(50000)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swappiness: &shares}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: &shares, Quota: &quota, Cpus: "0-1", Mems: "0"}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
		s.Linux.Resources.Devices[1].Access = "rwx"
	},
	func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared"; s.Hooks = &specs.Hooks{} },
	func(s *specs.Spec) { s.Linux.CgroupsPath = "/a/../../b" },
	func(s *specs.Spec) { s.Linux.CgroupsPath = "system.slice:containerd:abc" },
	func(s *specs.Spec) { s.Linux.CgroupsPath = "" },
	func(s *specs.Spec) { s.Process.Args = []string{""}; s.Process.Env = append(s.Process.Env, "NOEQUALS") },
	func(s *specs.Spec) { s.Process.Terminal = true },
	func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO"} },
	func(s *specs.Spec) { s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "proc/x", "/proc/../etc") },
	func(s *specs.Spec) { s.Version = "2.0.0" },
	func(s *specs.Spec) { s.Linux = nil },
}

// FuzzLoadNewPlan feeds config.json bytes to Load and NewPlan, as the daemon
// does with a bundle it is given. Properties:
//   - every error is InvalidArgument and comes without a plan;
//   - an accepted plan keeps the promises the setup face relies on (clean
//     absolute paths, no mount namespace joined, proc only at /proc, ...);
//   - NewPlan is deterministic;
//   - the plan crosses initsync (a real socketpair) unchanged, or is refused
//     there as InvalidArgument for its size.
func FuzzLoadNewPlan(f *testing.F) {
	var base []byte
	for _, name := range []string{"ctr-run-containerd-1.6.json", "ctr-run-containerd-2.4.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		base = b
	}
	for _, edit := range fuzzSeedEdits {
		var s specs.Spec
		if err := json.Unmarshal(base, &s); err != nil {
			f.Fatal(err)
		}
		edit(&s)
		b, err := json.Marshal(&s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{"namespaces":[{"type":"mount"}]}}`))

	dir := f.TempDir()
	parent, child, err := initsync.NewPair()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { parent.Close(); child.Close() })

	f.Fuzz(func(t *testing.T, config []byte) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(dir)
		if err != nil {
			if s != nil || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Load: %v (spec %v), want InvalidArgument and no spec", err, s != nil)
			}
			return
		}
		p, err := NewPlan(bundle, s)
		if err != nil {
			if p != nil || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("NewPlan: %v (plan %v), want InvalidArgument and no plan", err, p != nil)
			}
			return
		}
		if p == nil {
			t.Fatal("NewPlan returned neither a plan nor an error")
		}
		checkPlan(t, p)

		s2, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if p2, err := NewPlan(bundle, s2); err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("NewPlan is not deterministic: %v\n%+v\n%+v", err, p, p2)
		}

		if err := parent.SendPlan(p); err != nil {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "spec too large") {
				t.Fatalf("SendPlan: %v", err)
			}
			return
		}
		var back Plan
		if err := child.RecvPlan(&back); err != nil {
			t.Fatalf("RecvPlan: %v", err)
		}
		if !reflect.DeepEqual(&back, p) {
			t.Fatalf("initsync changed the plan:\nsent %+v\ngot  %+v", *p, back)
		}
	})
}

// checkPlan asserts what the setup face takes for granted in a plan.
func checkPlan(t *testing.T, p *Plan) {
	t.Helper()
	clean := func(what, s string) {
		if !path.IsAbs(s) || path.Clean(s) != s {
			t.Fatalf("%s %q is not a clean absolute path", what, s)
		}
	}
	clean("root", p.Root)
	if p.Root == "/" {
		t.Fatal("root is the host's /")
	}
	ns := p.Namespaces
	if ns.Create&unix.CLONE_NEWCGROUP != 0 {
		t.Fatal("CLONE_NEWCGROUP in Namespaces.Create")
	}
	if ns.Create&unix.CLONE_NEWNS == 0 {
		t.Fatal("no new mount namespace")
	}
	for _, j := range ns.Join {
		clean("namespace path", j.Path)
		if j.Type == specs.MountNamespace || j.Flag != nsFlags[j.Type] || j.Flag == 0 {
			t.Fatalf("join %+v", j)
		}
	}
	if c := p.CgroupsPath; c != "" && c != "/" {
		for _, e := range strings.Split(strings.TrimPrefix(c, "/"), "/") {
			if e == "" || e == "." || e == ".." {
				t.Fatalf("cgroupsPath %q has a %q component", c, e)
			}
		}
	}
	for _, m := range p.Mounts {
		clean("mount destination", m.Destination)
		if m.Destination == "/" {
			t.Fatal("mount over /")
		}
		if m.IsBind() {
			clean("bind source", m.Source)
			if m.Flags&unix.MS_BIND == 0 || m.Data != "" {
				t.Fatalf("bind mount %+v", m)
			}
		}
		if m.Type == "proc" && m.Destination != "/proc" {
			t.Fatalf("proc at %q", m.Destination)
		}
		if !m.IsBind() && m.Type != "proc" && isUnder(m.Destination, "/proc") {
			t.Fatalf("%s over %q", m.Type, m.Destination)
		}
		if !m.IsBind() && !fsTypes[m.Type] {
			t.Fatalf("mount type %q", m.Type)
		}
	}
	for _, d := range p.Devices {
		clean("device path", d.Path)
		if !strings.HasPrefix(d.Path, "/dev/") {
			t.Fatalf("device %q outside /dev", d.Path)
		}
	}
	for _, sc := range p.Sysctl {
		if sc.Path == "" || path.IsAbs(sc.Path) || path.Clean(sc.Path) != sc.Path || isUnder("/"+sc.Path, "/..") ||
			strings.HasPrefix(sc.Path, "../") {
			t.Fatalf("sysctl path %q", sc.Path)
		}
	}
	for _, l := range [][]string{p.MaskedPaths, p.ReadonlyPaths} {
		for _, s := range l {
			clean("masked/readonly path", s)
		}
	}
	pr := p.Process
	if len(pr.Args) == 0 || pr.Args[0] == "" {
		t.Fatal("no entrypoint")
	}
	clean("cwd", pr.Cwd)
	if a := p.OOMScoreAdj; a != nil && (*a < -1000 || *a > 1000) {
		t.Fatalf("oomScoreAdj %d", *a)
	}
	if c := pr.Capabilities; c != nil && (c.Effective&^c.Permitted != 0 || c.Ambient&^(c.Permitted&c.Inheritable) != 0) {
		t.Fatalf("capabilities %+v", c)
	}
	for _, r := range pr.Rlimits {
		if r.Soft > r.Hard {
			t.Fatalf("rlimit %+v", r)
		}
	}
}

// FuzzParseMountOptions checks the spec's option parser against the rootfs
// one (internal/mount): on options both know they must agree, so a spec
// mount and a rootfs mount with the same options get the same flags.
func FuzzParseMountOptions(f *testing.F) {
	for _, o := range []string{"", "ro\nrw", "rbind\nrprivate\nslave", "mode=755\nstrictatime\nsize=65536k",
		"noatime\natime\nnosymfollow\ndefaults", "ridmap", "nosuid,dev", "ro\x00", "\n\n"} {
		f.Add(o)
	}
	f.Fuzz(func(t *testing.T, in string) {
		opts := strings.Split(in, "\n")
		mo, err := ParseMountOptions(opts)
		flags, prop, data := mo.Flags, mo.Propagation, mo.Data
		if err != nil {
			if flags != 0 || prop != nil || data != "" || mo.RecSet != 0 || mo.RecClr != 0 {
				t.Fatalf("error %v with results %+v", err, mo)
			}
			return
		}
		if mo.RecSet&mo.RecClr&^unix.MOUNT_ATTR__ATIME != 0 {
			t.Fatalf("recursive attributes both set and cleared: %+v", mo)
		}
		var rest []string
		for _, o := range opts {
			if opt, ok := mountopt.Options[o]; !ok || opt.Kind == mountopt.FlagOption {
				rest = append(rest, o)
			}
		}
		mflags, mdata := mountopt.ParseOptions(rest)
		if uint64(mflags) != flags || mdata != data {
			t.Fatalf("spec parser %#x %q, rootfs parser %#x %q", flags, data, mflags, mdata)
		}
		if len(prop) > len(opts) {
			t.Fatalf("%d propagation flags from %d options", len(prop), len(opts))
		}
	})
}
