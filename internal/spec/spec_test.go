package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const bundle = "/run/containerd/io.containerd.runtime.v2.task/default/test"

// fixture loads a spec that containerd's `ctr run` generated.
func fixture(t *testing.T, name string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{}
	if err := json.Unmarshal(b, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func TestCtrRunSpecs(t *testing.T) {
	for _, name := range []string{"ctr-run-containerd-1.6.json", "ctr-run-containerd-2.4.json"} {
		t.Run(name, func(t *testing.T) {
			p, err := NewPlan(bundle, fixture(t, name))
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			wantNS := Namespaces{Create: unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNS | unix.CLONE_NEWNET}
			if !reflect.DeepEqual(p.Namespaces, wantNS) {
				t.Errorf("Namespaces = %+v, want %+v", p.Namespaces, wantNS)
			}
			if p.Root != bundle+"/rootfs" || p.RootReadonly {
				t.Errorf("Root = %q readonly=%v", p.Root, p.RootReadonly)
			}
			if p.CgroupsPath != "/default/test" {
				t.Errorf("CgroupsPath = %q", p.CgroupsPath)
			}
			if p.RootPropagation != unix.MS_SLAVE|unix.MS_REC {
				t.Errorf("RootPropagation = %#x", p.RootPropagation)
			}
			// The spec's 10 rules, then runc's default allow list.
			if n := len(defaultDeviceRules()); len(p.Resources.Devices) != 10+n || p.Resources.Devices[0].Allow ||
				!reflect.DeepEqual(p.Resources.Devices[10:], defaultDeviceRules()) {
				t.Errorf("device rules = %+v", p.Resources.Devices)
			}
			if !p.SetupDev || len(p.Devices) != len(DefaultDevices()) {
				t.Errorf("SetupDev=%v Devices=%+v", p.SetupDev, p.Devices)
			}
			if len(p.Mounts) != 7 {
				t.Fatalf("mounts = %+v", p.Mounts)
			}
			pts := p.Mounts[2]
			if pts.Type != "devpts" || pts.Flags != unix.MS_NOSUID|unix.MS_NOEXEC ||
				pts.Data != "newinstance,ptmxmode=0666,mode=0620,gid=5" {
				t.Errorf("devpts mount = %+v", pts)
			}
			if sys := p.Mounts[5]; sys.Flags != unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV|unix.MS_RDONLY {
				t.Errorf("sysfs mount = %+v", sys)
			}
			pr := p.Process
			if pr.Cwd != "/" || !pr.NoNewPrivileges || pr.UID != 0 || !reflect.DeepEqual(pr.AdditionalGids, []uint32{0, 10}) {
				t.Errorf("process = %+v", pr)
			}
			wantCaps := uint64(0)
			for _, c := range []uint{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
				unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETFCAP,
				unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE} {
				wantCaps |= 1 << c
			}
			if c := pr.Capabilities; c == nil || c.Bounding != wantCaps || c.Effective != wantCaps ||
				c.Permitted != wantCaps || c.Inheritable != 0 || c.Ambient != 0 {
				t.Errorf("caps = %+v, want %#x", pr.Capabilities, wantCaps)
			}
			if want := []Rlimit{{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 1024, 1024}}; !reflect.DeepEqual(pr.Rlimits, want) {
				t.Errorf("rlimits = %+v", pr.Rlimits)
			}
			if len(p.MaskedPaths) < 10 || len(p.ReadonlyPaths) != 5 {
				t.Errorf("masked=%v readonly=%v", p.MaskedPaths, p.ReadonlyPaths)
			}
			// The plan crosses initsync as JSON: it must survive the trip.
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var back Plan
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&back, p) {
				t.Errorf("JSON round trip changed the plan:\n%+v\n%+v", back, *p)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "config.json: missing") {
		t.Errorf("missing config.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("bad config.json: %v", err)
	}
	b, _ := os.ReadFile("testdata/ctr-run-containerd-2.4.json")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Load(dir); err != nil || s.Process.Args[0] != "sh" {
		t.Errorf("Load = %v, %v", s, err)
	}
}

func TestValidPlans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*specs.Spec)
		check func(*testing.T, *Plan)
	}{
		{"apparmor profile trimmed", func(s *specs.Spec) { s.Process.ApparmorProfile = " cri-containerd.apparmor.d\n" },
			func(t *testing.T, p *Plan) {
				if p.Process.ApparmorProfile != "cri-containerd.apparmor.d" {
					t.Errorf("profile %q", p.Process.ApparmorProfile)
				}
				if err := CheckAppArmor(&p.Process, true); err != nil {
					t.Errorf("with AppArmor on: %v", err)
				}
				err := CheckAppArmor(&p.Process, false)
				if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "process.apparmorProfile") {
					t.Errorf("with AppArmor off: %v", err)
				}
			}},
		{"relative and absolute root", func(s *specs.Spec) { s.Root = &specs.Root{Path: "/srv/root/", Readonly: true} },
			func(t *testing.T, p *Plan) {
				if p.Root != "/srv/root" || !p.RootReadonly {
					t.Errorf("root %q %v", p.Root, p.RootReadonly)
				}
			}},
		{"join namespaces and cgroupns", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{
				{Type: "mount"}, {Type: "network", Path: "/var/run/netns/cni-1"}, {Type: "pid", Path: "/proc/42/ns/pid"},
				{Type: "ipc", Path: "/proc/42/ns/ipc"}, {Type: "uts"}, {Type: "cgroup"},
			}
		}, func(t *testing.T, p *Plan) {
			want := Namespaces{
				Create: unix.CLONE_NEWNS | unix.CLONE_NEWUTS,
				Join: []Join{
					{specs.NetworkNamespace, "/var/run/netns/cni-1", unix.CLONE_NEWNET},
					{specs.PIDNamespace, "/proc/42/ns/pid", unix.CLONE_NEWPID},
					{specs.IPCNamespace, "/proc/42/ns/ipc", unix.CLONE_NEWIPC},
				},
				NewCgroupNS: true,
			}
			if !reflect.DeepEqual(p.Namespaces, want) {
				t.Errorf("got %+v", p.Namespaces)
			}
			if p.Namespaces.Create&unix.CLONE_NEWCGROUP != 0 {
				t.Error("CLONE_NEWCGROUP in Create")
			}
		}},
		{"joined cgroup ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "cgroup", Path: "/proc/1/ns/cgroup"})
		}, func(t *testing.T, p *Plan) {
			if p.Namespaces.NewCgroupNS || len(p.Namespaces.Join) != 1 || p.Namespaces.Join[0].Flag != unix.CLONE_NEWCGROUP {
				t.Errorf("got %+v", p.Namespaces)
			}
		}},
		{"hostname sysctl", func(s *specs.Spec) {
			s.Hostname, s.Domainname = "box", "example.org"
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000",
				"fs.mqueue.msg_max": "20", "net/ipv4/conf/eth0.100/rp_filter": "2"}
		}, func(t *testing.T, p *Plan) {
			want := []Sysctl{
				{"fs.mqueue.msg_max", "fs/mqueue/msg_max", "20"},
				{"kernel.shmmax", "kernel/shmmax", "1000"},
				{"net.ipv4.ip_forward", "net/ipv4/ip_forward", "1"},
				{"net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0.100/rp_filter", "2"},
			}
			if !reflect.DeepEqual(p.Sysctl, want) || p.Hostname != "box" || p.Domainname != "example.org" {
				t.Errorf("got %+v %q %q", p.Sysctl, p.Hostname, p.Domainname)
			}
		}},
		{"bind mounts", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/hosts", Options: []string{"rbind", "rprivate", "ro"}},
				specs.Mount{Destination: "/data/", Type: "none", Source: "vol", Options: []string{"bind", "nosuid", "rslave"}},
				specs.Mount{Destination: "/x", Type: "bind", Source: "/x"},
				specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
			)
		}, func(t *testing.T, p *Plan) {
			ms := p.Mounts[len(p.Mounts)-4:]
			want := []Mount{
				{Type: "bind", Source: "/var/lib/hosts", Destination: "/etc/hosts", Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, Propagation: []uint64{unix.MS_PRIVATE | unix.MS_REC}},
				{Type: "bind", Source: bundle + "/vol", Destination: "/data", Flags: unix.MS_BIND | unix.MS_NOSUID, Propagation: []uint64{unix.MS_SLAVE | unix.MS_REC}},
				{Type: "bind", Source: "/x", Destination: "/x", Flags: unix.MS_BIND},
				{Type: "cgroup", Source: "cgroup", Destination: "/sys/fs/cgroup", Flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
			}
			if !reflect.DeepEqual(ms, want) {
				t.Errorf("got  %+v\nwant %+v", ms, want)
			}
		}},
		{"dev bind: no device setup", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind"}})
		}, func(t *testing.T, p *Plan) {
			if p.SetupDev {
				t.Error("SetupDev with /dev bound")
			}
		}},
		{"devices override defaults", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{
				{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: ptr(os.FileMode(0o600)), UID: ptr(uint32(5)), GID: ptr(uint32(6))},
				{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
				{Path: "/dev/pipe", Type: "p"},
			}
		}, func(t *testing.T, p *Plan) {
			if p.Devices[0] != (Device{"/dev/null", "c", 1, 3, 0o600, 5, 6}) || len(p.Devices) != 8 ||
				p.Devices[6] != (Device{"/dev/fuse", "c", 10, 229, 0o666, 0, 0}) {
				t.Errorf("got %+v", p.Devices)
			}
		}},
		{"process", func(s *specs.Spec) {
			s.Process.Cwd = "/home/user/"
			s.Process.User = specs.User{UID: 1000, GID: 1000, Umask: ptr(uint32(0o077))}
			s.Process.OOMScoreAdj = ptr(-998)
			s.Process.NoNewPrivileges = false
			s.Process.Capabilities = &specs.LinuxCapabilities{
				Bounding: []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"}, Permitted: []string{"CAP_NET_ADMIN"},
				Inheritable: []string{"CAP_NET_ADMIN"}, Ambient: []string{"CAP_NET_ADMIN"},
			}
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 0, Hard: 10})
		}, func(t *testing.T, p *Plan) {
			pr := p.Process
			if pr.Cwd != "/home/user" || pr.UID != 1000 || *pr.Umask != 0o077 || pr.NoNewPrivileges || *p.OOMScoreAdj != -998 {
				t.Errorf("got %+v", pr)
			}
			na := uint64(1) << unix.CAP_NET_ADMIN
			if *pr.Capabilities != (Capabilities{Bounding: na | 1<<unix.CAP_SYS_ADMIN, Permitted: na, Inheritable: na, Ambient: na}) {
				t.Errorf("caps %+v", pr.Capabilities)
			}
			if len(pr.Rlimits) != 2 || pr.Rlimits[1].Resource != unix.RLIMIT_CORE {
				t.Errorf("rlimits %+v", pr.Rlimits)
			}
		}},
		{"no capabilities", func(s *specs.Spec) { s.Process.Capabilities = nil }, func(t *testing.T, p *Plan) {
			if p.Process.Capabilities != nil {
				t.Error("capabilities should stay nil")
			}
		}},
		{"resources", func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(1 << 30)), Reservation: ptr(int64(1 << 20)), Swap: ptr(int64(1 << 31))}
			s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Cpus: "0-1", Mems: "0"}
			s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(100))}
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{} // empty: fine
			s.Linux.Resources.Network = &specs.LinuxNetwork{}
		}, func(t *testing.T, p *Plan) {
			r := p.Resources
			if *r.Memory.Limit != 1<<30 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0-1" || *r.Pids.Limit != 100 || r.BlockIO != nil {
				t.Errorf("got %+v", r)
			}
		}},
		{"rootfs propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }, func(t *testing.T, p *Plan) {
			if p.RootPropagation != unix.MS_SHARED|unix.MS_REC {
				t.Errorf("got %#x", p.RootPropagation)
			}
		}},
		{"empty hooks", func(s *specs.Spec) { s.Hooks = &specs.Hooks{} }, nil},
		{"time namespace with offsets", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time"})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: -5, Nanosecs: 7}, "boottime": {Secs: 86400}}
		}, func(t *testing.T, p *Plan) {
			if !p.Namespaces.NewTimeNS || p.Namespaces.Create&unix.CLONE_NEWTIME != 0 {
				t.Errorf("namespaces %+v: want NewTimeNS and no CLONE_NEWTIME for clone3", p.Namespaces)
			}
			want := []TimeOffset{{"boottime", 86400, 0}, {"monotonic", -5, 7}}
			if !reflect.DeepEqual(p.TimeOffsets, want) {
				t.Errorf("offsets %+v", p.TimeOffsets)
			}
		}},
		{"join time namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time", Path: "/proc/42/ns/time"})
		}, func(t *testing.T, p *Plan) {
			if p.Namespaces.NewTimeNS || len(p.Namespaces.Join) != 1 || p.Namespaces.Join[0].Flag != unix.CLONE_NEWTIME {
				t.Errorf("namespaces %+v", p.Namespaces)
			}
		}},
		{"scheduler, ioPriority, personality", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_RR", Priority: 7, Flags: []specs.LinuxSchedulerFlag{"SCHED_FLAG_RESET_ON_FORK"}}
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_IDLE", Priority: 0}
			s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX32"}
		}, func(t *testing.T, p *Plan) {
			want := &Scheduler{Policy: unix.SCHED_RR, Priority: 7, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
			if !reflect.DeepEqual(p.Process.Scheduler, want) {
				t.Errorf("scheduler %+v", p.Process.Scheduler)
			}
			if p.Process.IOPriority == nil || *p.Process.IOPriority != 3<<13 {
				t.Errorf("ioPriority %v", p.Process.IOPriority)
			}
			if p.Personality == nil || *p.Personality != 8 {
				t.Errorf("personality %v", p.Personality)
			}
		}},
		{"deadline scheduler", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_DEADLINE", Runtime: 10000, Deadline: 20000}
		}, func(t *testing.T, p *Plan) {
			if sc := p.Process.Scheduler; sc.Policy != unix.SCHED_DEADLINE || sc.Runtime != 10000 || sc.Deadline != 20000 {
				t.Errorf("scheduler %+v", sc)
			}
		}},
		{"rro bind", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/x", Options: []string{"rbind", "rro", "rnosuid"}})
		}, func(t *testing.T, p *Plan) {
			m := p.Mounts[len(p.Mounts)-1]
			if m.RecSet != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID || m.RecClr != 0 || m.Flags != unix.MS_BIND|unix.MS_REC {
				t.Errorf("mount %+v", m)
			}
		}},
		{"deny-all device rules get runc's defaults", func(s *specs.Spec) {
			s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		}, func(t *testing.T, p *Plan) {
			if d := p.Resources.Devices; len(d) != 1+len(defaultDeviceRules()) || d[0].Allow {
				t.Errorf("rules %+v", d)
			}
		}},
		{"no device rules stay none", func(s *specs.Spec) { s.Linux.Resources.Devices = nil }, func(t *testing.T, p *Plan) {
			if len(p.Resources.Devices) != 0 {
				t.Errorf("rules %+v", p.Resources.Devices)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t, "ctr-run-containerd-2.4.json")
			tc.edit(s)
			p, err := NewPlan(bundle, s)
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestInvalidPlans(t *testing.T) {
	const unsup = "is not supported by io.containerd.autokill.v1 yet"
	for _, tc := range []struct {
		name string
		edit func(*specs.Spec)
		want string // substrings of the error, "|" separated
	}{
		{"version", func(s *specs.Spec) { s.Version = "2.0.0" }, "ociVersion"},
		{"no process", func(s *specs.Spec) { s.Process = nil }, "process: missing"},
		{"no linux", func(s *specs.Spec) { s.Linux = nil }, "linux: missing"},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root.path: missing"},
		{"root is /", func(s *specs.Spec) { s.Root.Path = "/" }, "root.path"},
		{"relative hook", func(s *specs.Spec) { s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "x"}}} }, `hooks.poststop[0].path: "x" is not absolute`},
		{"zero hook timeout", func(s *specs.Spec) {
			zero := 0
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/x"}, {Path: "/y", Timeout: &zero}}}
		}, "hooks.createRuntime[1].timeout: 0 is not greater than zero"},
		{"windows", func(s *specs.Spec) { s.Windows = &specs.Windows{} }, "windows " + unsup},
		{"unknown ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "foo"})
		}, `linux.namespaces[5]: unknown namespace type "foo"`},
		{"user ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "user"})
		}, `linux.uidMappings: missing`},
		{"time offsets of a joined time ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time", Path: "/proc/1/ns/time"})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}}
		}, "linux.timeOffsets: needs a new time namespace"},
		{"time offsets clock", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time"})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"realtime": {Secs: 1}}
		}, `linux.timeOffsets["realtime"]`},
		{"time offsets nanosecs", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "time"})
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Nanosecs: 1e9}}
		}, `linux.timeOffsets["boottime"].nanosecs`},
		{"duplicate ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "pid", Path: "/proc/1/ns/pid"})
		}, `linux.namespaces[5]: duplicate namespace type "pid"`},
		{"relative ns path", func(s *specs.Spec) { s.Linux.Namespaces[4].Path = "netns/x" }, "linux.namespaces[4].path"},
		{"join mount ns", func(s *specs.Spec) { s.Linux.Namespaces[3].Path = "/proc/1/ns/mnt" }, "linux.namespaces[3].path|private mount namespace"},
		{"no mount ns", func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:3] }, "linux.namespaces: no mount namespace"},
		{"uid mappings", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
		}, "linux.uidMappings/gidMappings: mappings without a user namespace"},
		{"mount label", func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" }, "linux.mountLabel"},
		{"intelRdt", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} }, "linux.intelRdt " + unsup},
		{"personality domain", func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: "BSD"} }, "linux.personality.domain"},
		{"personality flags", func(s *specs.Spec) {
			s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX", Flags: []specs.LinuxPersonalityFlag{"ADDR_NO_RANDOMIZE"}}
		}, "linux.personality.flags"},
		{"time offsets without time ns", func(s *specs.Spec) {
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}}
		}, "linux.timeOffsets: needs a new time namespace"},
		{"systemd cgroup", func(s *specs.Spec) { s.Linux.CgroupsPath = "system.slice:containerd:a/b" }, "not allowed in a systemd unit name"},
		{"cgroup dotdot", func(s *specs.Spec) { s.Linux.CgroupsPath = "/a/../../b" }, "linux.cgroupsPath"},
		{"hugepages", func(s *specs.Spec) {
			s.Linux.Resources.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}
		}, "linux.resources.hugepageLimits " + unsup},
		{"blkio", func(s *specs.Spec) { s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: ptr(uint16(10))} }, "linux.resources.blockIO " + unsup},
		{"rdma", func(s *specs.Spec) { s.Linux.Resources.Rdma = map[string]specs.LinuxRdma{"mlx": {}} }, "linux.resources.rdma " + unsup},
		{"net cls", func(s *specs.Spec) { s.Linux.Resources.Network = &specs.LinuxNetwork{ClassID: ptr(uint32(1))} }, "linux.resources.network " + unsup},
		{"unified", func(s *specs.Spec) { s.Linux.Resources.Unified = map[string]string{"memory.high": "1"} }, "linux.resources.unified " + unsup},
		{"swappiness", func(s *specs.Spec) { s.Linux.Resources.Memory = &specs.LinuxMemory{Swappiness: ptr(uint64(1))} }, "linux.resources.memory.swappiness " + unsup},
		{"cpu burst", func(s *specs.Spec) { s.Linux.Resources.CPU = &specs.LinuxCPU{Burst: ptr(uint64(1))} }, "linux.resources.cpu.burst " + unsup},
		{"device rule type", func(s *specs.Spec) { s.Linux.Resources.Devices[1].Type = "x" }, "linux.resources.devices[1].type"},
		{"device rule access", func(s *specs.Spec) { s.Linux.Resources.Devices[1].Access = "rwx" }, "linux.resources.devices[1].access"},
		{"rootfs propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "sideways" }, "linux.rootfsPropagation"},
		{"hostname without uts", func(s *specs.Spec) {
			s.Hostname = "x"
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount"}}
		}, "hostname: setting the hostname needs a uts namespace"},
		{"domainname without uts", func(s *specs.Spec) {
			s.Domainname = "x"
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount"}}
		}, "domainname"},
		{"net sysctl without netns", func(s *specs.Spec) {
			s.Linux.Namespaces = s.Linux.Namespaces[:4]
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
		}, `linux.sysctl["net.ipv4.ip_forward"]: needs a network namespace`},
		{"ipc sysctl without ipcns", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount"}, {Type: "network"}}
			s.Linux.Sysctl = map[string]string{"fs.mqueue.queues_max": "1"}
		}, `linux.sysctl["fs.mqueue.queues_max"]: needs a ipc namespace`},
		{"host sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.overcommit_memory": "1"} }, `linux.sysctl["vm.overcommit_memory"]`},
		{"kernel sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.pid_max": "1"} }, `linux.sysctl["kernel.pid_max"]`},
		{"hostname sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.hostname": "x"} }, "hostname/domainname fields"},
		{"sysctl escape", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net/../../etc": "1"} }, "not a sysctl name"},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "process.args: missing"},
		{"empty arg0", func(s *specs.Spec) { s.Process.Args = []string{""} }, "process.args: missing"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "home" }, `process.cwd: "home" is not an absolute path`},
		{"empty cwd", func(s *specs.Spec) { s.Process.Cwd = "" }, "process.cwd"},
		{"bad env", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "NOEQUALS") }, "process.env[1]"},

		{"apparmor blank", func(s *specs.Spec) { s.Process.ApparmorProfile = " \t " }, "process.apparmorProfile: \" \\t \" is blank"},
		{"apparmor NUL", func(s *specs.Spec) { s.Process.ApparmorProfile = "a\x00b" }, "process.apparmorProfile: \"a\\x00b\" contains a control character"},
		{"apparmor newline", func(s *specs.Spec) { s.Process.ApparmorProfile = "a\nexec b" }, "process.apparmorProfile: \"a\\nexec b\" contains a control character"},
		{"apparmor too long", func(s *specs.Spec) { s.Process.ApparmorProfile = strings.Repeat("p", 4092) }, "process.apparmorProfile: a name of 4092 bytes"},
		{"selinux", func(s *specs.Spec) { s.Process.SelinuxLabel = "x" }, "process.selinuxLabel " + unsup},
		{"scheduler policy", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_ISO"} }, "process.scheduler.policy"},
		{"scheduler fifo priority", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_FIFO"} }, "process.scheduler.priority"},
		{"scheduler other priority", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_OTHER", Priority: 5}
		}, "process.scheduler.priority"},
		{"scheduler nice", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_BATCH", Nice: 20} }, "process.scheduler.nice"},
		{"scheduler flag", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_OTHER", Flags: []specs.LinuxSchedulerFlag{"SCHED_FLAG_UTIL_CLAMP_MIN"}}
		}, "process.scheduler.flags[0]"},
		{"scheduler deadline", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_DEADLINE", Runtime: 2000, Deadline: 1000}
		}, "SCHED_DEADLINE needs"},
		{"scheduler runtime without deadline", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_RR", Priority: 1, Runtime: 2000}
		}, "for SCHED_DEADLINE only"},
		{"ioprio class", func(s *specs.Spec) { s.Process.IOPriority = &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_NONE"} }, "process.ioPriority.class"},
		{"ioprio priority", func(s *specs.Spec) {
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_BE", Priority: 8}
		}, "process.ioPriority.priority"},
		{"affinity", func(s *specs.Spec) { s.Process.ExecCPUAffinity = &specs.CPUAffinity{Initial: "0"} }, "process.execCPUAffinity " + unsup},
		{"rlimit type", func(s *specs.Spec) { s.Process.Rlimits[0].Type = "RLIMIT_FOO" }, `process.rlimits[0].type: unknown rlimit type "RLIMIT_FOO"`},
		{"rlimit dup", func(s *specs.Spec) { s.Process.Rlimits = append(s.Process.Rlimits, s.Process.Rlimits[0]) }, "process.rlimits[1].type: duplicate"},
		{"rlimit soft>hard", func(s *specs.Spec) { s.Process.Rlimits[0].Soft = 2048 }, "process.rlimits[0]: soft limit"},
		{"cap name", func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_FLY")
		}, `process.capabilities.bounding[14]: unknown capability "CAP_FLY"`},
		{"cap effective not permitted", func(s *specs.Spec) {
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
		}, "process.capabilities.effective: CAP_SYS_ADMIN not in the permitted set"},
		{"ambient not inheritable", func(s *specs.Spec) { s.Process.Capabilities.Ambient = []string{"CAP_KILL"} }, "process.capabilities.ambient"},
		{"oom score", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-1001) }, "process.oomScoreAdj"},
		{"umask", func(s *specs.Spec) { s.Process.User.Umask = ptr(uint32(0o1777)) }, "process.user.umask"},
		{"mount relative dest", func(s *specs.Spec) { s.Mounts[1].Destination = "dev" }, `mounts[1].destination: "dev" is not an absolute path`},
		{"mount over /", func(s *specs.Spec) { s.Mounts[1].Destination = "/" }, "mounts[1].destination"},
		{"mount type unknown", func(s *specs.Spec) { s.Mounts[6].Type = "ext4" }, `mounts[6].type "ext4" ` + unsup},
		{"mount type missing", func(s *specs.Spec) { s.Mounts[6].Type = "" }, "mounts[6].type: missing"},
		{"mount idmap", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/x", Options: []string{"rbind", "idmap"}})
		}, `mounts[7].options: "idmap" without uidMappings/gidMappings`},
		{"mount mand", func(s *specs.Spec) { s.Mounts[6].Options = append(s.Mounts[6].Options, "mand") }, `mounts[6].options: option "mand"`},
		{"mount uidmappings", func(s *specs.Spec) {
			s.Mounts[6].UIDMappings = []specs.LinuxIDMapping{{Size: 1}}
		}, `mounts[6]: id-mapped tmpfs mounts (only bind mounts can be id-mapped)`},
		{"bind without source", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Options: []string{"rbind"}})
		}, "mounts[7].source: missing"},
		{"bind with data", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Source: "/y", Options: []string{"rbind", "mode=755"}})
		}, "mounts[7].options"},
		{"bind typed tmpfs", func(s *specs.Spec) { s.Mounts[6].Options = append(s.Mounts[6].Options, "bind") }, "mounts[6].type"},
		{"proc elsewhere", func(s *specs.Spec) { s.Mounts[0].Destination = "/other" }, "mounts[0].destination: proc can only be mounted at /proc"},
		{"tmpfs in proc", func(s *specs.Spec) { s.Mounts[6].Destination = "/proc/sys" }, "mounts[6].destination: cannot mount tmpfs"},
		{"device path", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/etc/x", Type: "c"}} }, "linux.devices[0].path"},
		{"device type", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}} }, "linux.devices[0].type"},
		{"device dup", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}
		}, "linux.devices[1].path: duplicate"},
		{"device mode", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "c", FileMode: ptr(os.FileMode(0o20000666))}}
		}, "linux.devices[0].fileMode"},
		{"devices with bound /dev", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind"}})
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "p"}}
		}, "linux.devices: cannot create devices"},
		{"masked relative", func(s *specs.Spec) { s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "proc/x") }, "linux.maskedPaths[12]"},
		{"readonly relative", func(s *specs.Spec) { s.Linux.ReadonlyPaths[0] = "x" }, "linux.readonlyPaths[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t, "ctr-run-containerd-2.4.json")
			tc.edit(s)
			p, err := NewPlan(bundle, s)
			if err == nil {
				t.Fatalf("NewPlan accepted the spec: %+v", p)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %q does not wrap ErrInvalidArgument", err)
			}
			for _, w := range strings.Split(tc.want, "|") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uint64
		prop  []uint64
		data  string
	}{
		{nil, 0, nil, ""},
		{[]string{"ro", "rw"}, 0, nil, ""},
		{[]string{"rw", "ro", "nosuid", "nodev", "noexec", "relatime"}, unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, nil, ""},
		{[]string{"nosuid", "suid", "exec", "dev"}, 0, nil, ""},
		{[]string{"rbind", "rprivate", "slave"}, unix.MS_BIND | unix.MS_REC, []uint64{unix.MS_PRIVATE | unix.MS_REC, unix.MS_SLAVE}, ""},
		{[]string{"mode=755", "strictatime", "size=65536k"}, unix.MS_STRICTATIME, nil, "mode=755,size=65536k"},
		{[]string{"noatime", "atime", "nosymfollow", "defaults"}, unix.MS_NOSYMFOLLOW, nil, ""},
	} {
		o, err := ParseMountOptions(tc.opts)
		if err != nil || o.Flags != tc.flags || !reflect.DeepEqual(o.Propagation, tc.prop) || o.Data != tc.data {
			t.Errorf("ParseMountOptions(%q) = %+v %v, want %#x %v %q", tc.opts, o, err, tc.flags, tc.prop, tc.data)
		}
	}
	for _, tc := range []struct {
		opts     []string
		set, clr uint64
	}{
		{[]string{"rbind", "rro"}, unix.MOUNT_ATTR_RDONLY, 0},
		{[]string{"rro", "rrw"}, 0, unix.MOUNT_ATTR_RDONLY},
		{[]string{"rnosuid", "rnodev", "rnoexec", "rsuid"}, unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC, unix.MOUNT_ATTR_NOSUID},
		{[]string{"rnoatime"}, unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnoatime", "rstrictatime"}, unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnoatime", "ratime", "rnodiratime"}, unix.MOUNT_ATTR_RELATIME | unix.MOUNT_ATTR_NODIRATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnosymfollow"}, unix.MOUNT_ATTR_NOSYMFOLLOW, 0},
	} {
		o, err := ParseMountOptions(tc.opts)
		if err != nil || o.RecSet != tc.set || o.RecClr != tc.clr || o.Flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
			t.Errorf("ParseMountOptions(%q) = %+v %v, want set %#x clear %#x", tc.opts, o, err, tc.set, tc.clr)
		}
	}
	for _, refused := range []string{"ridmap", "idmap", "mand", "nomand", "remount", "tmpcopyup"} {
		if _, err := ParseMountOptions([]string{refused}); err == nil {
			t.Errorf("%s accepted", refused)
		}
	}
}

func TestCapabilityTable(t *testing.T) {
	if len(capabilityNumbers) != unix.CAP_LAST_CAP+1 {
		t.Errorf("table has %d capabilities, x/sys knows %d", len(capabilityNumbers), unix.CAP_LAST_CAP+1)
	}
	seen := map[uint]string{}
	for name, n := range capabilityNumbers {
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s are both %d", name, other, n)
		}
		seen[n] = name
	}
	if n, ok := CapabilityNumber("CAP_SYS_ADMIN"); !ok || n != 21 {
		t.Errorf("CAP_SYS_ADMIN = %d %v", n, ok)
	}
}

func TestHooksPlan(t *testing.T) {
	s := fixture(t, "ctr-run-containerd-2.4.json")
	five := 5
	s.Hooks = &specs.Hooks{
		CreateRuntime:  []specs.Hook{{Path: "/bin/a", Args: []string{"a", "x"}, Env: []string{"K=V"}, Timeout: &five}},
		StartContainer: []specs.Hook{{Path: "/bin/b"}},
	}
	p, err := NewPlan(bundle, s)
	if err != nil {
		t.Fatal(err)
	}
	want := Hooks{
		CreateRuntime:  []Hook{{Path: "/bin/a", Args: []string{"a", "x"}, Env: []string{"K=V"}, Timeout: 5}},
		StartContainer: []Hook{{Path: "/bin/b"}},
		State:          &specs.State{Version: specs.Version, Bundle: bundle, Annotations: s.Annotations},
	}
	if !reflect.DeepEqual(p.Hooks, want) || !p.Hooks.Any() {
		t.Fatalf("hooks = %+v, want %+v", p.Hooks, want)
	}
}
