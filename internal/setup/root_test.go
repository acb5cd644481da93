package setup

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the setup face mounts, pivot_roots and mknods in new namespaces")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("needs a static /bin/busybox (apt-get install busybox-static): %v", err)
	}
}

// bundle builds a bundle with a busybox rootfs; extra adds hostile content.
func bundle(t *testing.T, extra func(rootfs string)) (string, string) {
	t.Helper()
	b := t.TempDir()
	rootfs := filepath.Join(b, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(rootfs)
	}
	return b, rootfs
}

// ctrSpec is the spec `ctr run` (containerd 2.4) generates.
func ctrSpec(t *testing.T) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile("../spec/testdata/ctr-run-containerd-2.4.json")
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// runSetup plays the daemon: it starts the setup face in the plan's new
// namespaces (os/exec can do that; the real daemon uses clone3), sends the
// plan and start, and returns what the container printed.
func runSetup(t *testing.T, p *spec.Plan) (string, error) {
	t.Helper()
	return runSetupCmd(t, p, nil)
}

// runSetupCmd is runSetup with a hook to change the command first (its
// stdin, say) before it starts.
func runSetupCmd(t *testing.T, p *spec.Plan, hook func(*exec.Cmd)) (string, error) {
	t.Helper()
	parent, child, err := initsync.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], initsync.InitArg)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.ExtraFiles = []*os.File{child.File()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: uintptr(p.Namespaces.Create), Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	if hook != nil {
		hook(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	// The output is read only after Wait: os/exec copies it concurrently.
	finish := func(err error) (string, error) {
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
		return out.String(), err
	}
	if err := parent.SendPlan(p); err != nil {
		return finish(err)
	}
	if err := parent.SendJoined(); err != nil {
		return finish(err)
	}
	if err := parent.RecvReady(); err != nil {
		return finish(err)
	}
	if err := parent.SendStart(); err != nil {
		return finish(err)
	}
	return finish(parent.RecvExec())
}

// emptyDir fails the test if a host directory got anything in it.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("host directory %s was touched: %s appeared", dir, e.Name())
	}
}

func TestRunCtrSpec(t *testing.T) {
	needRoot(t)
	outside := t.TempDir()  // host directories the image points at
	outside2 := t.TempDir() //
	if _, err := os.Stat("/etc/hostfile"); err == nil {
		t.Fatal("/etc/hostfile exists on the host")
	}
	hostFile := filepath.Join(t.TempDir(), "hostfile")
	if err := os.WriteFile(hostFile, []byte("bound\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, rootfs := bundle(t, func(rootfs string) {
		// Image symlinks that point out of the rootfs, absolute and
		// relative; their targets also exist inside the image.
		for _, l := range [][2]string{
			{outside, "evil"},
			{"../../../../../../../../.." + outside2, "evil2"},
			{"/etc", "evil3"},
		} {
			if err := os.Symlink(l[0], filepath.Join(rootfs, l[1])); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{outside, outside2} {
			if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	})
	s := ctrSpec(t)
	s.Root.Readonly = true
	s.Hostname = "autokill"
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "cgroup"})
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		specs.Mount{Destination: "/evil/hostfile", Type: "bind", Source: hostFile, Options: []string{"rbind", "ro", "rprivate"}},
		specs.Mount{Destination: "/evil2/sub", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}},
		specs.Mount{Destination: "/evil3/hostfile", Type: "bind", Source: hostFile, Options: []string{"bind"}},
	)
	s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 27}, Umask: ptr(uint32(0o027))}
	s.Process.Cwd = "/work/here"
	s.Process.OOMScoreAdj = ptr(500)
	s.Process.Capabilities.Inheritable = []string{"CAP_NET_BIND_SERVICE"}
	s.Process.Capabilities.Ambient = []string{"CAP_NET_BIND_SERVICE"}
	s.Process.Args = []string{"sh", "-c", `
echo "pid=$$"
echo "host=$(hostname)"
echo "id=$(id -u):$(id -g):$(id -G)"
echo "cwd=$(pwd)"
echo "fwd=$(cat /proc/sys/net/ipv4/ip_forward)"
echo "nofile=$(ulimit -n)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "umask=$(umask)"
grep -E '^(CapBnd|CapAmb|NoNewPrivs)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
ls -ln /dev/null /dev/zero /dev/tty | awk '{print "dev=" $1 "," $3 "," $4 "," $NF}'
echo "fd=$(readlink /dev/fd) ptmx=$(readlink /dev/ptmx)"
touch /newfile 2>/dev/null && echo root=rw || echo root=ro
awk '$5=="/proc/sys"{print "procsys=" substr($6,1,2)} $5=="/proc/acpi"{for(i=7;i<=NF;i++) if($i=="-") print "acpi=" $(i+1)} $5=="/sys/fs/cgroup"{print "cgroupfs=" substr($6,1,2)}' /proc/self/mountinfo
echo "interrupts=$(wc -c < /proc/interrupts)"
echo "evil=$(cat /evil/hostfile) evil3=$(cat /etc/hostfile)"
ls /sys/fs/cgroup | tr '\n' ' ' | sed 's/^/cgroups=/'; echo
`}
	s.Process.Capabilities.Effective = s.Process.Capabilities.Permitted
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	p.Fallback = true // exercises the PDEATHSIG re-arm and the hang-up check
	out, err := runSetup(t, p)
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	t.Logf("container output:\n%s", out)
	for _, want := range []string{
		"pid=1\n", "host=autokill\n", "id=1000:1000:1000 27\n", "cwd=/work/here\n", "fwd=1\n",
		"nofile=1024\n", "oom=500\n", "umask=0027\n",
		"CapBnd=00000000a80425fb\n", "CapAmb=0000000000000400\n", "NoNewPrivs=1\n",
		"dev=crw-rw-rw-,0,0,/dev/null\n", "dev=crw-rw-rw-,0,0,/dev/tty\n",
		"fd=/proc/self/fd ptmx=pts/ptmx\n", "root=ro\n", "procsys=ro\n", "acpi=tmpfs\n", "interrupts=0\n", "cgroupfs=ro\n",
		"evil=bound evil3=bound\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(out, "cgroups=") || strings.Contains(out, "cgroups= \n") {
		t.Errorf("no cgroup mounted: %s", out)
	}
	// The image's symlinks were resolved inside the rootfs: the mount
	// targets were created under <rootfs><outside>, never in <outside>.
	emptyDir(t, outside)
	emptyDir(t, outside2)
	if _, err := os.Stat("/etc/hostfile"); err == nil {
		t.Error("/etc/hostfile was created on the host")
	}
	for _, p := range []string{filepath.Join(outside, "hostfile"), filepath.Join(outside2, "sub"), "/etc/hostfile"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("the mount target was not contained in the rootfs: %v", err)
		}
	}
}

// TestRunDanglingSymlinkTarget: a destination through a symlink to a host
// path that the rootfs lacks is created inside the rootfs, never on the
// host (runc's SecureJoin does the same).
func TestRunDanglingSymlinkTarget(t *testing.T) {
	needRoot(t)
	outside := t.TempDir()
	b, rootfs := bundle(t, func(rootfs string) {
		if err := os.Symlink(outside+"/x", filepath.Join(rootfs, "evil")); err != nil {
			t.Fatal(err)
		}
	})
	s := ctrSpec(t)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/evil/sub", Type: "tmpfs", Source: "tmpfs"})
	s.Process.Args = []string{"sh", "-c", "grep -q '^tmpfs " + outside + "/x/sub ' /proc/mounts && echo ok"}
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSetup(t, p)
	if err != nil || out != "ok\n" {
		t.Fatalf("setup: %v, want the tmpfs inside the rootfs at %s/x/sub\n%s", err, outside, out)
	}
	emptyDir(t, outside)
	if st, err := os.Stat(filepath.Join(rootfs, outside, "x/sub")); err != nil || !st.IsDir() {
		t.Errorf("the target was not created inside the rootfs: %v", err)
	}
}

// TestRunHostileKernelFSSymlink: an image whose /proc or /sys is a symlink
// must not get procfs/sysfs mounted where it points (CVE-2019-19921 class),
// not even inside the rootfs, or masking /proc/* would miss it.
func TestRunHostileKernelFSSymlink(t *testing.T) {
	needRoot(t)
	for _, dir := range []string{"proc", "sys"} {
		t.Run(dir, func(t *testing.T) {
			outside := t.TempDir()
			b, rootfs := bundle(t, func(rootfs string) {
				os.Remove(filepath.Join(rootfs, dir))
				if err := os.Symlink(outside, filepath.Join(rootfs, dir)); err != nil {
					t.Fatal(err)
				}
			})
			p, err := spec.NewPlan(b, ctrSpec(t))
			if err != nil {
				t.Fatal(err)
			}
			out, err := runSetup(t, p)
			var ce *initsync.ChildError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "symlink") || !strings.Contains(err.Error(), "CVE-2019-19921") {
				t.Fatalf("setup error = %v, want a refusal naming the symlink\n%s", err, out)
			}
			t.Logf("refused: %v", err)
			emptyDir(t, outside)
			if _, err := os.Stat(filepath.Join(rootfs, outside)); err == nil {
				t.Error("the target was created inside the rootfs")
			}
		})
	}
}

func TestRunMissingEntrypoint(t *testing.T) {
	needRoot(t)
	b, _ := bundle(t, nil)
	s := ctrSpec(t)
	s.Process.Args = []string{"nosuchcmd"}
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSetup(t, p)
	var ce *initsync.ChildError
	if !errors.As(err, &ce) || ce.Msg != `exec: "nosuchcmd": executable file not found in $PATH` {
		t.Fatalf("setup error = %v, want the missing entrypoint before Ready\n%s", err, out)
	}
}

// TestRunRootNoCaps: root without a capabilities section keeps everything,
// /dev from the image (no tmpfs), no pid namespace.
func TestRunRootDefaults(t *testing.T) {
	needRoot(t)
	b, _ := bundle(t, nil)
	s := ctrSpec(t)
	s.Process.Capabilities = nil
	s.Process.NoNewPrivileges = false
	// Only /proc (devices go into the image's /dev) and the cgroups,
	// bind-mounted from our own cgroup since there is no cgroup namespace.
	s.Mounts = []specs.Mount{s.Mounts[0],
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro"}}}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "mount"}, {Type: "uts"}}
	s.Process.Args = []string{"/bin/sh", "-c", `grep -E '^(CapEff|NoNewPrivs)' /proc/self/status | tr -d '\t'; test -c /dev/urandom && echo urandom=ok; echo "umask=$(umask)"; ls /sys/fs/cgroup/memory/ /sys/fs/cgroup/ | grep -E -o '^(memory.limit_in_bytes|cgroup.procs)$' | head -1 | sed 's/^/cg=/'`}
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSetup(t, p)
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	for _, want := range []string{"NoNewPrivs:0", "urandom=ok", "umask=0022", "cg="} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "CapEff:0000000000000000") {
		t.Errorf("root lost its capabilities:\n%s", out)
	}
}

func ptr[T any](v T) *T { return &v }

// TestRunRootfsPropagationShared: with rshared the rootfs's parent mount is
// made private so pivot_root works, and nothing of the container leaks into
// the host's mount table.
func TestRunRootfsPropagationShared(t *testing.T) {
	needRoot(t)
	b, rootfs := bundle(t, nil)
	s := ctrSpec(t)
	s.Linux.RootfsPropagation = "rshared"
	s.Process.Args = []string{"/bin/sh", "-c", "echo ok"}
	p, err := spec.NewPlan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSetup(t, p)
	if err != nil || out != "ok\n" {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), rootfs) {
		t.Errorf("a container mount propagated to the host:\n%s", mi)
	}
}

// TestRunDestSymlinkFollowedInside: a destination whose last component is
// a symlink is followed as if the rootfs were "/", from where the symlink
// really lies (an intermediate symlink may have moved it): an absolute or
// climbing target lands inside the rootfs, as with runc's SecureJoin; one
// that resolves to the root itself is refused.
func TestRunDestSymlinkFollowedInside(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, dest string
		links      [][2]string // target, name in the rootfs
		at         string      // where the tmpfs lands; "" for refused
	}{
		{"relative out", "/evil", [][2]string{{"../../../../../../tmp", "evil"}}, "/tmp"},
		{"relative out from below", "/bin/evil", [][2]string{{"../../etc", "bin/evil"}}, "/etc"},
		{"absolute", "/evil", [][2]string{{"/etc", "evil"}}, "/etc"},
		{"absolute dangling", "/evil", [][2]string{{"/run/none/x", "evil"}}, "/run/none/x"},
		{"out through an inner symlink", "/evil", [][2]string{{"up/..", "evil"}, {"..", "up"}}, ""},
		{"the root itself", "/evil", [][2]string{{"up/..", "evil"}, {"tmp", "up"}}, ""},
		{"relative inside", "/evil", [][2]string{{"tmp", "evil"}}, "/tmp"},
		{"inside from a moved parent", "/deep/evil", [][2]string{{"usr/lib/x", "deep"}, {"../../../etc", "usr/lib/x/evil"}}, "/etc"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			b, _ := bundle(t, func(rootfs string) {
				if err := os.MkdirAll(filepath.Join(rootfs, "usr/lib/x"), 0o755); err != nil {
					t.Fatal(err)
				}
				for _, l := range tc.links {
					if err := os.Symlink(l[0], filepath.Join(rootfs, l[1])); err != nil {
						t.Fatal(err)
					}
				}
			})
			s := ctrSpec(t)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: tc.dest, Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1k"}})
			s.Process.Args = []string{"sh", "-c", "grep -q '^tmpfs " + tc.at + " tmpfs .*size=4k' /proc/mounts && echo ok"}
			p, err := spec.NewPlan(b, s)
			if err != nil {
				t.Fatal(err)
			}
			out, err := runSetup(t, p)
			if tc.at != "" {
				if err != nil || out != "ok\n" {
					t.Fatalf("setup: %v, want the tmpfs on %s\n%s", err, tc.at, out)
				}
				return
			}
			var ce *initsync.ChildError
			if !errors.As(err, &ce) || ce.Code != "invalid-argument" || !strings.Contains(err.Error(), "root of the container") {
				t.Fatalf("setup error = %v, want InvalidArgument for a destination resolving to the root\n%s", err, out)
			}
			t.Logf("refused: %v", err)
		})
	}
}
