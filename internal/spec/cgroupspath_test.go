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
		{"system.slice:containerd:a/b", "not allowed in a systemd unit name"},
		{"system:containerd:abc", "does not end in .slice"},
		{"a--b.slice:containerd:abc", "empty part between dashes"},
		{"system.slice:containerd:", "empty name"},
		{"system.slice:x:pod.slice", "ending in .slice"},
		{"system.slice:x:" + strings.Repeat("x", 250), "longer than 255"},
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

// The systemd form passes NewPlan (the driver is a runtime option, checked
// by the daemon) but not ValidateCgroupsPath, the cgroupfs driver's check.
func TestCgroupsPathSystemd(t *testing.T) {
	for _, tc := range []struct{ path, unit, dir string }{
		{"system.slice:autokill:abc", "autokill-abc.scope", "/system.slice/autokill-abc.scope"},
		{":cri-containerd:0123", "cri-containerd-0123.scope", "/system.slice/cri-containerd-0123.scope"},
		{"kubepods-besteffort-pod1.slice:cri-containerd:x", "cri-containerd-x.scope",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-x.scope"},
		{"-.slice::x_y.z", "x_y.z.scope", "/x_y.z.scope"},
	} {
		s := fixture(t, "ctr-run-containerd-2.4.json")
		s.Linux.CgroupsPath = tc.path
		if plan, err := NewPlan(bundle, s); err != nil || plan.CgroupsPath != tc.path {
			t.Errorf("NewPlan with %q: %v", tc.path, err)
		}
		p, err := ParseSystemdCgroupsPath(tc.path)
		if err != nil || p.Unit != tc.unit || p.Dir() != tc.dir {
			t.Errorf("ParseSystemdCgroupsPath(%q) = %+v, %v; want unit %s in %s", tc.path, p, err, tc.unit, tc.dir)
			continue
		}
		// For the cgroupfs driver it is one relative component, as for
		// runc's (containerd 1.6's CRI writes it for any .slice parent).
		if got, err := ValidateCgroupsPath(tc.path); err != nil || got != tc.path {
			t.Errorf("ValidateCgroupsPath(%q) = %q, %v; want it as a relative cgroupfs path", tc.path, got, err)
		}
	}
}
