package integration

// Mount-class container breakouts of runc, each named after its CVE, driven
// through the shim's task API with a hand-made hostile bundle, as containerd
// would hand it over: Create must fail with InvalidArgument, and the host
// directory standing for a volume must be untouched. The setup face's own
// root tests (internal/setup/cve_test.go) cover the same classes in more
// shapes; these prove the refusal crosses the daemon with its class.
// CVE-2019-5736 is TestCVE_2019_5736ShimBinaryNotWritable.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCVEMountClassesDirect(t *testing.T) {
	hostDomain, err := os.ReadFile("/proc/sys/kernel/domainname")
	if err != nil {
		t.Fatal(err)
	}
	vol := func(t *testing.T) string {
		d, err := os.MkdirTemp("", "ak-cve-vol-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	symlink := func(t *testing.T, b *bundle, target, name string) {
		t.Helper()
		p := filepath.Join(b.dir, "rootfs", name)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	bind := func(src, dest string) specs.Mount {
		return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: []string{"rbind"}}
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, b *bundle, v string)
		says   string
	}{
		{"CVE-2019-16884 volume over /proc/self/attr", func(t *testing.T, b *bundle, v string) {
			b.spec.Mounts = append(b.spec.Mounts, bind(v, "/proc/self/attr"))
		}, "procfs"},
		{"CVE-2019-19921 volume through an image symlink to /proc", func(t *testing.T, b *bundle, v string) {
			symlink(t, b, "proc", "evil")
			b.spec.Mounts = append(b.spec.Mounts, bind(v, "/evil"))
		}, "procfs"},
		{"CVE-2023-27561 volume through a volume's symlink to /proc", func(t *testing.T, b *bundle, v string) {
			if err := os.Symlink("../proc", filepath.Join(v, "p")); err != nil {
				t.Fatal(err)
			}
			b.spec.Mounts = append(b.spec.Mounts, bind(v, "/vol"), bind(vol(t), "/vol/p"))
		}, "procfs"},
		{"CVE-2023-28642 image /proc a symlink into a volume", func(t *testing.T, b *bundle, v string) {
			symlink(t, b, "vol", "proc")
			b.spec.Mounts = append([]specs.Mount{bind(v, "/vol")}, b.spec.Mounts...)
		}, "symlink"},
		{"CVE-2024-21626 cwd through /proc/self/fd", func(t *testing.T, b *bundle, v string) {
			b.spec.Process.Cwd = "/proc/self/fd/0"
		}, "CVE-2024-21626"},
		{"CVE-2025-31133 /dev/null a symlink", func(t *testing.T, b *bundle, v string) {
			if err := os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(v, "null")); err != nil {
				t.Fatal(err)
			}
			b.spec.Mounts[1] = bind(v, "/dev") // the tmpfs on /dev
			b.spec.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"}
		}, "CVE-2025-31133"},
		{"CVE-2025-52565 /dev/console a symlink to a /proc file", func(t *testing.T, b *bundle, v string) {
			symlink(t, b, "../proc/sys/kernel/core_pattern", "dev/console")
			console := filepath.Join(v, "console")
			if err := os.WriteFile(console, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			b.spec.Mounts = append(b.spec.Mounts[:1], b.spec.Mounts[2:]...) // the image's /dev
			b.spec.Mounts = append(b.spec.Mounts, specs.Mount{Destination: "/dev/console", Type: "bind", Source: console, Options: []string{"bind"}})
		}, "/dev/console"},
		{"CVE-2025-52881 sysctl redirected to another procfs file", func(t *testing.T, b *bundle, v string) {
			symlink(t, b, "proc/sys/net/ipv4", "data")
			b.spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_local_port_range": "40000 50000"}
			b.spec.Mounts = append(b.spec.Mounts, specs.Mount{Destination: "/data/ip_local_port_range", Type: "bind", Source: "/proc/sys/kernel/domainname", Options: []string{"bind"}})
		}, "procfs"},
		{"volume over /proc/1 through an image symlink", func(t *testing.T, b *bundle, v string) {
			symlink(t, b, "proc/1", "data")
			b.spec.Mounts = append(b.spec.Mounts, bind(v, "/data"))
		}, "procfs"},
	}

	first := newBundle(t, "direct-cve-0")
	first.write(t)
	s := startDirectShim(t, "direct-cve-0", first.dir)
	for i, tc := range cases {
		t.Run(strings.NewReplacer(" ", "_", "/", "_").Replace(tc.name), func(t *testing.T) {
			id := fmt.Sprintf("direct-cve-%d", i+1)
			b := newBundle(t, id, "sh", "-c", "cat /proc/sys/kernel/domainname")
			v := vol(t)
			tc.mutate(t, b, v)
			b.write(t)
			before, _ := os.ReadDir(v)
			ctx := nsCtx(t)
			_, err := s.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.dir})
			if err == nil {
				_, _ = s.task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
				t.Fatalf("create succeeded: the hostile bundle was accepted")
			}
			err = grpcErr(err)
			t.Logf("refused: %v", err)
			if got := codeOf(err); got != "InvalidArgument" {
				t.Errorf("error class %s, want InvalidArgument: %v", got, err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if after, _ := os.ReadDir(v); len(after) != len(before) {
				t.Errorf("the volume %s changed: %v -> %v", v, before, after)
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(mi), v) {
				t.Errorf("%s is a mount point on the host", v)
			}
		})
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/domainname"); string(now) != string(hostDomain) {
		t.Errorf("the host's domainname changed: %q -> %q", hostDomain, now)
	}
	// The daemon still serves after all of it.
	runGood(t, s, "direct-cve-good", 0)
}
