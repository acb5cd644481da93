package spec

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// cgroupsPath reaches the host's cgroupfs (mkdir, limits, kill, rmdir):
// anything but a clean cgroupfs path is refused where the spec is read.
// Through NewPlan, the entry point Create uses.
func TestCgroupsPathNotClean(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/../../../tmp/x", `".." component`},
		{"a/..", `".." component`},
		{"..", `".." component`},
		{"/a/./b", `"." component`},
		{".", `"." component`},
		{"/a//b", "empty component"},
		{"//a", "empty component"},
		{"/a/b/", "empty component"},
		{"/a\x00/b", "control character"},
		{"/a\nb", "control character"},
		{"/a\tb", "control character"},
		{"/" + strings.Repeat("x", 256), "longer than 255"},
		{"system.slice:containerd:abc", "systemd cgroup driver (slice:prefix:name) is not supported by " + RuntimeName + " yet"},
	} {
		s := fixture(t, "ctr-run-containerd-2.4.json")
		s.Linux.CgroupsPath = tc.path
		_, err := NewPlan(bundle, s)
		if err == nil {
			t.Errorf("%q: accepted", tc.path)
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "linux.cgroupsPath") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want InvalidArgument naming linux.cgroupsPath and saying %q", tc.path, err, tc.want)
		}
	}
}

func TestCgroupsPathClean(t *testing.T) {
	for _, p := range []string{"", "/", "/default/test", "kubepods/burstable/pod1/abc", "/a:b", "a.b/c-d_e", "/" + strings.Repeat("x", 255)} {
		got, err := ValidateCgroupsPath(p)
		if err != nil || got != p {
			t.Errorf("ValidateCgroupsPath(%q) = %q, %v; want it unchanged", p, got, err)
		}
		s := fixture(t, "ctr-run-containerd-2.4.json")
		s.Linux.CgroupsPath = p
		if plan, err := NewPlan(bundle, s); err != nil || plan.CgroupsPath != p {
			t.Errorf("NewPlan with %q: %v", p, err)
		}
	}
}
