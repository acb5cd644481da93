package spec

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var hostMap = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

func usernsSpec(t *testing.T) *specs.Spec {
	s := fixture(t, "ctr-run-containerd-2.4.json")
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings, s.Linux.GIDMappings = hostMap, hostMap
	return s
}

func TestUserNSNew(t *testing.T) {
	p, err := NewPlan(bundle, usernsSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.UserNS == nil || p.UserNS.Path != "" || len(p.UserNS.UIDMappings) != 1 || p.UserNS.GIDMappings[0].HostID != 100000 {
		t.Fatalf("UserNS = %+v", p.UserNS)
	}
	if p.Namespaces.Create&unix.CLONE_NEWUSER == 0 {
		t.Errorf("Create = %#x lacks CLONE_NEWUSER", p.Namespaces.Create)
	}
}

func TestUserNSJoin(t *testing.T) {
	s := usernsSpec(t)
	s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
	s.Linux.Namespaces[len(s.Linux.Namespaces)-1].Path = "/proc/1/ns/user"
	p, err := NewPlan(bundle, s)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserNS == nil || p.UserNS.Path != "/proc/1/ns/user" || p.Namespaces.Create&unix.CLONE_NEWUSER != 0 {
		t.Fatalf("UserNS = %+v, Create %#x", p.UserNS, p.Namespaces.Create)
	}
}

func TestIDMappedBind(t *testing.T) {
	s := usernsSpec(t)
	own := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 10}}
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/a", Type: "bind", Source: "/a", Options: []string{"rbind", "idmap"}},
		specs.Mount{Destination: "/b", Type: "bind", Source: "/b", Options: []string{"rbind", "ridmap", "ro"}, UIDMappings: own, GIDMappings: own},
		// CRI's volumes of a user-namespaced pod: mappings, no option.
		specs.Mount{Destination: "/c", Type: "bind", Source: "/c", Options: []string{"rbind", "rprivate"}, UIDMappings: own, GIDMappings: own})
	p, err := NewPlan(bundle, s)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := p.Mounts[len(p.Mounts)-3], p.Mounts[len(p.Mounts)-2], p.Mounts[len(p.Mounts)-1]
	if c.IDMap == nil || c.IDMap.Recursive || c.IDMap.UIDMappings[0].HostID != 200000 {
		t.Errorf("mappings without idmap/ridmap are an idmap bind: %+v %+v", c, c.IDMap)
	}
	if a.IDMap == nil || a.IDMap.Recursive || a.IDMap.UIDMappings[0].HostID != 100000 || a.Data != "" {
		t.Errorf("idmap bind without mappings takes the container's: %+v %+v", a, a.IDMap)
	}
	if b.IDMap == nil || !b.IDMap.Recursive || b.IDMap.GIDMappings[0].HostID != 200000 || b.Flags&unix.MS_RDONLY == 0 {
		t.Errorf("ridmap bind: %+v %+v", b, b.IDMap)
	}
	for _, m := range p.Mounts[:len(p.Mounts)-3] {
		if m.IDMap != nil {
			t.Errorf("%s got an idmap", m.Destination)
		}
	}
}

func TestUserNSInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*specs.Spec)
		want string
	}{
		{"no root mapped", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 1, HostID: 100000, Size: 10}}
		}, "linux.uidMappings: container id 0 is not mapped"},
		{"gid missing", func(s *specs.Spec) { s.Linux.GIDMappings = nil }, "linux.gidMappings: missing"},
		{"size 0", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1}}
		}, "linux.uidMappings[0].size"},
		{"overlap inside", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 10}, {ContainerID: 5, HostID: 200000, Size: 10}}
		}, "linux.uidMappings[1]: overlaps linux.uidMappings[0]"},
		{"overlap outside", func(s *specs.Spec) {
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 100000, HostID: 0, Size: 10}, {ContainerID: 200000, HostID: 5, Size: 10}}
		}, "linux.gidMappings[1]: overlaps"},
		{"wraps", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0xffffff00, Size: 0x1000}}
		}, "32-bit"},
		{"too many", func(s *specs.Spec) {
			s.Linux.UIDMappings = nil
			for i := uint32(0); i < 341; i++ {
				s.Linux.UIDMappings = append(s.Linux.UIDMappings, specs.LinuxIDMapping{ContainerID: i, HostID: 100000 + i, Size: 1})
			}
		}, "341 ranges"},
		{"two user ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, `duplicate namespace type "user"`},
		{"relative path", func(s *specs.Spec) {
			s.Linux.Namespaces[len(s.Linux.Namespaces)-1].Path = "proc/1/ns/user"
			s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
		}, "is not an absolute path"},
		{"idmap on tmpfs", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap"}})
		}, "only bind mounts can be id-mapped"},
		{"mount mapping wraps", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/x", Options: []string{"rbind", "idmap"},
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0xffffffff, Size: 2}}, GIDMappings: hostMap})
		}, "mounts[7].uidMappings[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := usernsSpec(t)
			tc.edit(s)
			_, err := NewPlan(bundle, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
}

func TestUserNSJoinWithMappings(t *testing.T) {
	s := usernsSpec(t)
	s.Linux.Namespaces[len(s.Linux.Namespaces)-1].Path = "/var/run/netns/pinned-user"
	p, err := NewPlan(bundle, s)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserNS.Path == "" || len(p.UserNS.UIDMappings) != 1 || p.Namespaces.Create&unix.CLONE_NEWUSER != 0 {
		t.Fatalf("UserNS = %+v, Create %#x", p.UserNS, p.Namespaces.Create)
	}
}
