package setup

// Regression tests for runc's mount-class container breakouts, each named
// after its CVE: the hostile image or bundle is built for real, the setup
// face runs in real namespaces, and the attack must fail with a clear
// InvalidArgument (or, where success is the safe outcome, the mask or
// read-only mount must really be in place). CVE-2019-5736 is the
// integration test TestCVE_2019_5736ShimBinaryNotWritable.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// wantRefused fails unless the setup face refused the container with
// InvalidArgument and a message containing each of words.
func wantRefused(t *testing.T, out string, err error, words ...string) {
	t.Helper()
	var ce *initsync.ChildError
	if !errors.As(err, &ce) {
		t.Fatalf("setup error = %v, want a refusal from the setup face\ncontainer output:\n%s", err, out)
	}
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("setup error class %q, want invalid-argument: %v", ce.Code, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("setup error %q does not say %q", err, w)
		}
	}
	t.Logf("refused: %v", err)
}

// hostDir is a host directory standing for a volume; untouched fails the
// test if anything was created in or mounted on it.
func hostDir(t *testing.T) string {
	t.Helper()
	return t.TempDir()
}

func untouched(t *testing.T, dir string) {
	t.Helper()
	emptyDir(t, dir)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), dir) {
		t.Errorf("%s is a mount point on the host", dir)
	}
}

func planOf(t *testing.T, b string, s *specs.Spec) *spec.Plan {
	t.Helper()
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// procSysMode prints "procsys=ro" or "procsys=rw" (the mount at /proc/sys),
// and "keys=" with the device of /proc/keys (1,3 when masked).
const procSysMode = `awk '$5=="/proc/sys"{print "procsys=" substr($6,1,2)}' /proc/self/mountinfo; ls -ln /proc/keys 2>/dev/null | awk '{print "keys=" $5 $6}'`

// TestCVE_2019_16884: a volume mounted over /proc/self/attr hides the LSM
// interface (runc then wrote the AppArmor profile into the volume). Any
// mount whose target lies on procfs, outside the lxcfs list, is refused,
// whatever its source.
func TestCVE_2019_16884(t *testing.T) {
	needRoot(t)
	for _, dest := range []string{"/proc/self/attr", "/proc/1/attr", "/proc/sys/kernel"} {
		t.Run(strings.ReplaceAll(dest[1:], "/", "_"), func(t *testing.T) {
			vol := hostDir(t)
			b, _ := bundle(t, nil)
			s := ctrSpec(t)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: vol, Options: []string{"rbind"}})
			s.Process.Args = []string{"sh", "-c", procSysMode}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "procfs", dest)
			untouched(t, vol)
		})
	}
}

// TestCVE_2019_19921: the image makes a volume's destination a symlink to
// /proc, so the volume lands on /proc (checked by its unresolved path, it
// looked harmless). The resolved target is on procfs: refused.
func TestCVE_2019_19921(t *testing.T) {
	needRoot(t)
	for _, link := range []string{"proc", "./bin/../proc", "/proc"} {
		t.Run(strings.ReplaceAll(link, "/", "_"), func(t *testing.T) {
			vol := hostDir(t)
			b, _ := bundle(t, func(rootfs string) {
				if err := os.Symlink(link, filepath.Join(rootfs, "evil")); err != nil {
					t.Fatal(err)
				}
			})
			s := ctrSpec(t)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/evil", Type: "bind", Source: vol, Options: []string{"rbind"}})
			s.Process.Args = []string{"sh", "-c", procSysMode}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "/evil")
			untouched(t, vol)
		})
	}
}

// TestCVE_2023_27561: 2019-19921 again, the symlink coming from a volume
// rather than the image: a first volume holds "p -> ../proc", a second
// one is mounted at /vol/p.
func TestCVE_2023_27561(t *testing.T) {
	needRoot(t)
	vol, vol2 := hostDir(t), hostDir(t)
	if err := os.Symlink("../proc", filepath.Join(vol, "p")); err != nil {
		t.Fatal(err)
	}
	b, _ := bundle(t, nil)
	s := ctrSpec(t)
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind"}},
		specs.Mount{Destination: "/vol/p", Type: "bind", Source: vol2, Options: []string{"rbind"}})
	s.Process.Args = []string{"sh", "-c", procSysMode}
	out, err := runSetup(t, planOf(t, b, s))
	wantRefused(t, out, err, "procfs", "/vol/p")
	untouched(t, vol2)
	if l, err := os.Readlink(filepath.Join(vol, "p")); err != nil || l != "../proc" {
		t.Errorf("the volume's symlink changed: %q %v", l, err)
	}
}

// TestCVE_2023_28642: the image's /proc is a symlink into a volume, so
// procfs would be mounted inside the volume, where no mask or read-only
// path reaches it. procfs and sysfs take no symlink on their path.
func TestCVE_2023_28642(t *testing.T) {
	needRoot(t)
	for _, dir := range []string{"proc", "sys"} {
		t.Run(dir, func(t *testing.T) {
			vol := hostDir(t)
			b, _ := bundle(t, func(rootfs string) {
				os.Remove(filepath.Join(rootfs, dir))
				if err := os.Symlink("vol", filepath.Join(rootfs, dir)); err != nil {
					t.Fatal(err)
				}
			})
			s := ctrSpec(t)
			// The volume first, as a hostile bundle orders it.
			s.Mounts = append([]specs.Mount{{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind"}}}, s.Mounts...)
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "symlink", "/"+dir)
			untouched(t, vol)
		})
	}
}

// TestCVE_2024_21626: a process.cwd through /proc/self/fd/N reaches
// whatever an fd open in the setup face points at; runc leaked a host
// directory fd that way and the container started in the host's
// filesystem. Here the "leaked" fd is a host directory given as stdin.
// Magic links are refused for the cwd; the container keeps only fds 0-2.
func TestCVE_2024_21626(t *testing.T) {
	needRoot(t)
	for _, cwd := range []string{"/proc/self/fd/0", "/proc/1/fd/0", "/dev/fd/0", "/proc/self/cwd", "/proc/1/root/tmp"} {
		t.Run(strings.ReplaceAll(cwd[1:], "/", "_"), func(t *testing.T) {
			host := hostDir(t)
			if err := os.WriteFile(filepath.Join(host, "host-secret"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			leak, err := os.Open(host)
			if err != nil {
				t.Fatal(err)
			}
			defer leak.Close()
			b, _ := bundle(t, nil)
			s := ctrSpec(t)
			s.Process.Cwd = cwd
			s.Process.Args = []string{"sh", "-c", "pwd; ls"}
			out, err := runSetupCmd(t, planOf(t, b, s), func(c *exec.Cmd) { c.Stdin = leak })
			wantRefused(t, out, err, "CVE-2024-21626")
			if strings.Contains(out, "host-secret") {
				t.Errorf("the container saw the host directory:\n%s", out)
			}
		})
	}
	t.Run("fds", func(t *testing.T) {
		b, _ := bundle(t, nil)
		s := ctrSpec(t)
		// ls becomes the container's init (exec): it lists the fds that
		// crossed the execve, plus its own directory fd on /proc/N/fd.
		s.Process.Args = []string{"sh", "-c", `echo "cwd=$(pwd)"; exec ls -l /proc/self/fd/`}
		s.Process.Cwd = "/tmp"
		out, err := runSetup(t, planOf(t, b, s))
		if err != nil {
			t.Fatalf("setup: %v\n%s", err, out)
		}
		var fds []string
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && f[len(f)-2] == "->" && !regexp.MustCompile(`^/proc/[0-9]+/fd$`).MatchString(f[len(f)-1]) {
				fds = append(fds, f[len(f)-3])
			}
		}
		if strings.Join(fds, " ") != "0 1 2" || !strings.Contains(out, "cwd=/tmp\n") {
			t.Errorf("the container has fds %v (want 0 1 2) or a wrong cwd:\n%s", fds, out)
		}
	})
}

// TestCVE_2025_31133: maskedPaths bind /dev/null over files; a container
// that replaced /dev/null (here: /dev is a volume it shares) with a
// symlink to a procfs file or with another node would have that bound
// instead, or the mask skipped. The node is checked on the fd that is then
// bound, and anything but the 1:3 character device is refused.
func TestCVE_2025_31133(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		make func(p string) error
	}{
		{"symlink to core_pattern", func(p string) error { return os.Symlink("/proc/sys/kernel/core_pattern", p) }},
		{"relative symlink", func(p string) error { return os.Symlink("../proc/sysrq-trigger", p) }},
		{"regular file", func(p string) error { return os.WriteFile(p, nil, 0o666) }},
		{"zero device", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))) }},
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o666) }},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dev := hostDir(t)
			if err := tc.make(filepath.Join(dev, "null")); err != nil {
				t.Fatal(err)
			}
			b, _ := bundle(t, nil)
			s := ctrSpec(t)
			var ms []specs.Mount
			for _, m := range s.Mounts {
				if m.Destination != "/dev" && !strings.HasPrefix(m.Destination, "/dev/") {
					ms = append(ms, m)
				}
			}
			s.Mounts = append(ms, specs.Mount{Destination: "/dev", Type: "bind", Source: dev, Options: []string{"rbind"}})
			// Nothing that opens /dev/null: a fifo there would block.
			s.Process.Args = []string{"sh", "-c", "echo started"}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "/dev/null is not the null device", "CVE-2025-31133")
		})
	}
}

// TestCVE_2025_52565: runc bound the console over /dev/console after the
// image (or a racing container) made it a symlink to a /proc file, which
// the bind then covered or exposed. No console here yet, but a spec bind
// on /dev/console takes the same path: its resolved target is on procfs,
// refused.
func TestCVE_2025_52565(t *testing.T) {
	needRoot(t)
	// sysrq-trigger exists only with CONFIG_MAGIC_SYSRQ: dangling, it is
	// refused too.
	for _, link := range []string{"../proc/sys/kernel/core_pattern", "../proc/timer_list", "../proc/sysrq-trigger", "/proc/sysrq-trigger"} {
		t.Run(strings.ReplaceAll(link, "/", "_"), func(t *testing.T) {
			src := filepath.Join(hostDir(t), "console")
			if err := os.WriteFile(src, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			b, _ := bundle(t, func(rootfs string) {
				if err := os.Symlink(link, filepath.Join(rootfs, "dev/console")); err != nil {
					t.Fatal(err)
				}
			})
			s := ctrSpec(t)
			var ms []specs.Mount // the image's own /dev
			for _, m := range s.Mounts {
				if m.Destination != "/dev" && !strings.HasPrefix(m.Destination, "/dev/") {
					ms = append(ms, m)
				}
			}
			s.Mounts = append(ms, specs.Mount{Destination: "/dev/console", Type: "bind", Source: src, Options: []string{"bind"}})
			s.Process.Args = []string{"sh", "-c", `awk '$5 ~ /^\/proc\/(sysrq|timer|sys\/kernel\/core)/{print "covered=" $5}' /proc/self/mountinfo`}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "/dev/console")
		})
	}
}

// TestCVE_2025_52881 (mount side): a bind whose resolved target is a
// sysctl file (through the image symlink data -> proc/sys/net/ipv4) with
// another procfs file as source (kernel.domainname) redirects the
// container's sysctl write there; checking that the written file is on
// procfs cannot tell. Refused at the mount; the write side is
// TestCVE_2025_52881WriteProcFile.
func TestCVE_2025_52881(t *testing.T) {
	needRoot(t)
	hostDomain, err := os.ReadFile("/proc/sys/kernel/domainname")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, link, dest, src string }{
		{"symlinked sysctl", "proc/sys/net/ipv4", "/data/ip_local_port_range", "/proc/sys/kernel/domainname"},
		{"lxcfs path with a procfs source", "", "/proc/sys/kernel/ns_last_pid", "/proc/sys/kernel/domainname"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			b, _ := bundle(t, func(rootfs string) {
				if tc.link != "" {
					if err := os.Symlink(tc.link, filepath.Join(rootfs, "data")); err != nil {
						t.Fatal(err)
					}
				}
			})
			s := ctrSpec(t)
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_local_port_range": "40000 50000"}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: tc.dest, Type: "bind", Source: tc.src, Options: []string{"bind"}})
			s.Process.Args = []string{"sh", "-c", `echo "domain=$(cat /proc/sys/kernel/domainname)"`}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, tc.dest)
			if strings.Contains(out, "domain=40000") {
				t.Errorf("the sysctl write was redirected to kernel.domainname:\n%s", out)
			}
		})
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/domainname"); string(now) != string(hostDomain) {
		t.Errorf("the host's domainname changed: %q -> %q", hostDomain, now)
	}
}

// TestRunBindOverProc1: a volume over /proc/1 (the setup face's
// /proc/self in its pid namespace), directly or through the image symlink
// data -> proc/1, with fd/N symlinks to a decoy: mounts done through
// /proc/self/fd/N after pivot_root would land on the decoy and leave
// /proc/sys writable and /proc/kcore unmasked. Refused at the mount; the
// masks' independence from /proc/self is TestMaskReadonlyIgnoreProcSelf.
func TestRunBindOverProc1(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct{ name, link, dest string }{
		{"direct", "", "/proc/1"},
		{"image symlink", "proc/1", "/data"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			vol := hostDir(t)
			if err := os.MkdirAll(filepath.Join(vol, "fd"), 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range 64 {
				if err := os.Symlink("/decoy", filepath.Join(vol, "fd", fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := bundle(t, func(rootfs string) {
				if err := os.MkdirAll(filepath.Join(rootfs, "decoy"), 0o755); err != nil {
					t.Fatal(err)
				}
				if tc.link != "" {
					if err := os.Symlink(tc.link, filepath.Join(rootfs, "data")); err != nil {
						t.Fatal(err)
					}
				}
			})
			s := ctrSpec(t)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: tc.dest, Type: "bind", Source: vol, Options: []string{"rbind"}})
			s.Process.Args = []string{"sh", "-c", procSysMode}
			out, err := runSetup(t, planOf(t, b, s))
			wantRefused(t, out, err, "procfs", tc.dest)
			if strings.Contains(out, "procsys=rw") {
				t.Errorf("/proc/sys stayed writable:\n%s", out)
			}
		})
	}
}

// Test faces: the test binary re-executed with testFaceEnv set runs one of
// these in the namespaces its parent gave it, then exits (0: passed).
const testFaceEnv = "AUTOKILL_SETUP_TEST_FACE"

var testFaces = map[string]func() error{
	"mask-readonly-ignore-proc-self": maskReadonlyFace,
	"write-proc-file":                writeProcFace,
}

func runTestFace(name string) {
	f, ok := testFaces[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no test face %q\n", name)
		os.Exit(2)
	}
	if err := f(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runFace runs a test face in new mount, pid and uts namespaces.
func runFace(t *testing.T, name string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), testFaceEnv+"="+name), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("face %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("face %s: %v", name, err)
	}
}

// privateProc makes the face's mount tree private (nothing propagates to
// the host) and mounts a procfs of its pid namespace on /proc.
func privateProc() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	return nil
}

// TestMaskReadonlyIgnoreProcSelf: with /proc/<self> replaced by a tmpfs
// whose fd/N are symlinks to a decoy (what a volume over /proc/1 does to
// pid 1), readonlyPaths and maskPaths still make /proc/sys read-only and
// mask the default masked files and directories: they go onto handles, not
// through /proc/self/fd/N.
func TestMaskReadonlyIgnoreProcSelf(t *testing.T) {
	needRoot(t)
	decoy := t.TempDir()
	runFace(t, "mask-readonly-ignore-proc-self", "DECOY="+decoy)
	untouched(t, decoy)
}

func maskReadonlyFace() error {
	decoy := os.Getenv("DECOY")
	if err := privateProc(); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/%d", os.Getpid())
	if err := unix.Mount("tmpfs", self, "tmpfs", 0, ""); err != nil {
		return fmt.Errorf("cover %s: %w", self, err)
	}
	if err := os.Mkdir(self+"/fd", 0o755); err != nil {
		return err
	}
	for i := range 256 {
		if err := os.Symlink(decoy, fmt.Sprintf("%s/fd/%d", self, i)); err != nil {
			return err
		}
	}
	if l, err := os.Readlink("/proc/self/fd/0"); err != nil || l != decoy {
		return fmt.Errorf("the cover does not work: /proc/self/fd/0 -> %q %v", l, err)
	}
	// Files and a directory of the default maskedPaths that exist on
	// this kernel (kcore, sysrq-trigger, acpi depend on its config).
	var files, dirs []string
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} {
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	for _, p := range []string{"/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/bus"} {
		if _, err := os.Stat(p); err == nil {
			dirs = append(dirs, p)
		}
	}
	if len(files) == 0 || len(dirs) == 0 {
		return fmt.Errorf("nothing to mask here: files %v, directories %v", files, dirs)
	}
	masked := append(files, dirs...)
	if err := readonlyPaths([]string{"/proc/sys"}); err != nil {
		return err
	}
	if err := maskPaths(masked); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/proc/sys", &st); err != nil {
		return err
	}
	var errs []error
	if st.Flags&unix.ST_RDONLY == 0 {
		errs = append(errs, errors.New("/proc/sys is writable"))
	}
	if err := unix.Statfs(decoy, &st); err == nil && st.Flags&unix.ST_RDONLY != 0 {
		errs = append(errs, errors.New("the decoy was made read-only"))
	}
	for _, p := range files {
		var kst unix.Stat_t
		if err := unix.Stat(p, &kst); err != nil || !isDevNull(&kst) {
			errs = append(errs, fmt.Errorf("%s is not masked by /dev/null (%v)", p, err))
		}
	}
	for _, p := range dirs {
		if err := unix.Statfs(p, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Flags&unix.ST_RDONLY == 0 {
			errs = append(errs, fmt.Errorf("%s is not masked by a read-only tmpfs (%v)", p, err))
		}
	}
	fmt.Printf("masked %v, /proc/sys read-only\n", masked)
	mi, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err == nil && strings.Contains(string(mi), decoy) {
		errs = append(errs, fmt.Errorf("a mount landed on the decoy:\n%s", mi))
	}
	return errors.Join(errs...)
}

// TestCVE_2025_52881WriteProcFile: the sysctl and oom_score_adj files are
// covered by binds of other procfs files (kernel.domainname), as a shared
// mount changed by a racing container could do; the writes still reach
// the files they name, because they go through a private procfs instance.
func TestCVE_2025_52881WriteProcFile(t *testing.T) {
	needRoot(t)
	runFace(t, "write-proc-file")
}

func writeProcFace() error {
	if err := privateProc(); err != nil {
		return err
	}
	if err := unix.Setdomainname([]byte("before")); err != nil {
		return err
	}
	oom := fmt.Sprintf("/proc/%d/oom_score_adj", os.Getpid())
	for _, p := range []string{"/proc/sys/kernel/hostname", oom} {
		if err := unix.Mount("/proc/sys/kernel/domainname", p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("cover %s: %w", p, err)
		}
	}
	if err := writeProcFile("/proc/sys/kernel/hostname", "written"); err != nil {
		return err
	}
	if err := writeProcFile("/proc/self/oom_score_adj", "123"); err != nil {
		return err
	}
	var errs []error
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	if h := unix.ByteSliceToString(u.Nodename[:]); h != "written" {
		errs = append(errs, fmt.Errorf("hostname = %q, want %q", h, "written"))
	}
	if d := unix.ByteSliceToString(u.Domainname[:]); d != "before" {
		errs = append(errs, fmt.Errorf("domainname = %q: the write was redirected", d))
	}
	if err := unix.Unmount(oom, 0); err != nil {
		return err
	}
	if b, err := os.ReadFile(oom); err != nil || strings.TrimSpace(string(b)) != "123" {
		errs = append(errs, fmt.Errorf("oom_score_adj = %q (%v), want 123", b, err))
	}
	return errors.Join(errs...)
}
