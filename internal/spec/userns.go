package spec

import (
	"fmt"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// UserNS is the container's user namespace.
type UserNS struct {
	// Path of a namespace to join; empty for a new one, whose maps the
	// daemon writes between clone3 and the setup face.
	Path string
	// UIDMappings and GIDMappings (container id → host id); both map
	// container id 0, since the setup face runs as root in the namespace.
	// A new namespace gets them written; a joined one (containerd's CRI
	// gives its path and its maps) must already have exactly these.
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
}

// IDMap is an id-mapped bind mount (runtime-spec 1.1 mount
// uidMappings/gidMappings, options "idmap"/"ridmap"). The daemon makes it
// (mount_setattr(MOUNT_ATTR_IDMAP) needs privilege over the filesystem's
// own user namespace, the host's), stages it under the bundle and points
// Source there; the setup face binds the staged mount like any other.
type IDMap struct {
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
	// Recursive ("ridmap"): every mount of an rbind tree is id-mapped,
	// not only the top one.
	Recursive bool
}

// maxIDMapLines is the kernel's limit of lines in uid_map/gid_map (4.15+).
const maxIDMapLines = 340

// convertUserNS reads the user namespace entry of linux.namespaces and the
// mappings. Without a user namespace entry, mappings are an error (they
// would be silently meaningless).
func convertUserNS(list []specs.LinuxNamespace, uids, gids []specs.LinuxIDMapping) (*UserNS, error) {
	var u *UserNS
	for i, n := range list {
		if n.Type != specs.UserNamespace {
			continue
		}
		field := fmt.Sprintf("linux.namespaces[%d]", i)
		if u != nil {
			return nil, invalid(field, `duplicate namespace type "user"`)
		}
		u = &UserNS{}
		if n.Path != "" {
			if !filepath.IsAbs(n.Path) {
				return nil, invalid(field+".path", "%q is not an absolute path", n.Path)
			}
			u.Path = filepath.Clean(n.Path)
		}
	}
	if u == nil {
		if len(uids) > 0 || len(gids) > 0 {
			return nil, invalid("linux.uidMappings/gidMappings", "mappings without a user namespace in linux.namespaces")
		}
		return nil, nil
	}
	if u.Path != "" && len(uids) == 0 && len(gids) == 0 {
		return u, nil
	}
	var err error
	if u.UIDMappings, err = checkIDMappings("linux.uidMappings", uids, true); err != nil {
		return nil, err
	}
	if u.GIDMappings, err = checkIDMappings("linux.gidMappings", gids, true); err != nil {
		return nil, err
	}
	return u, nil
}

// checkIDMappings validates one map the way the kernel will (so a bad one
// fails as InvalidArgument, naming the field, before anything is cloned):
// at most 340 lines, no empty or wrapping range, no overlap on either side.
// needRoot: container id 0 must be mapped.
func checkIDMappings(field string, m []specs.LinuxIDMapping, needRoot bool) ([]specs.LinuxIDMapping, error) {
	if len(m) == 0 {
		return nil, invalid(field, "missing: a new user namespace needs both uid and gid mappings")
	}
	if len(m) > maxIDMapLines {
		return nil, invalid(field, "%d ranges, the kernel takes at most %d", len(m), maxIDMapLines)
	}
	root := false
	for i, a := range m {
		f := fmt.Sprintf("%s[%d]", field, i)
		if a.Size == 0 {
			return nil, invalid(f+".size", "0")
		}
		if uint64(a.ContainerID)+uint64(a.Size) > 1<<32 || uint64(a.HostID)+uint64(a.Size) > 1<<32 {
			return nil, invalid(f, "range %d+%d / %d+%d leaves the 32-bit id space", a.ContainerID, a.Size, a.HostID, a.Size)
		}
		if a.ContainerID == 0 {
			root = true
		}
		for j, b := range m[:i] {
			if overlaps(a.ContainerID, b.ContainerID, a.Size, b.Size) || overlaps(a.HostID, b.HostID, a.Size, b.Size) {
				return nil, invalid(f, "overlaps %s[%d]", field, j)
			}
		}
	}
	if needRoot && !root {
		return nil, invalid(field, "container id 0 is not mapped: the runtime sets the container up as root of its user namespace")
	}
	return slices.Clone(m), nil
}

func overlaps(a, b, na, nb uint32) bool {
	return uint64(a) < uint64(b)+uint64(nb) && uint64(b) < uint64(a)+uint64(na)
}

// splitIDMapOptions takes "idmap"/"ridmap" out of a mount's options; the
// rest go to ParseMountOptions.
func splitIDMapOptions(opts []string) (rest []string, idmap, recursive bool) {
	for _, o := range opts {
		switch o {
		case "idmap":
			idmap = true
		case "ridmap":
			idmap, recursive = true, true
		default:
			rest = append(rest, o)
		}
	}
	return rest, idmap, recursive
}

// convertMountIDMap validates the id mapping of a mount (called once the
// mount's type is known). A mount with "idmap" and no mappings of its own
// takes the container's, as runc does.
func convertMountIDMap(field string, sm specs.Mount, m *Mount, idmap, recursive bool, u *UserNS) error {
	has := len(sm.UIDMappings) > 0 || len(sm.GIDMappings) > 0
	// The spec says mappings SHOULD come with "idmap" or "ridmap"; CRI's
	// user-namespaced pods send their volumes' mappings without either, as
	// runc takes them: an id-mapped mount, the mount itself only ("idmap").
	idmap = idmap || has
	if !idmap {
		return nil
	}
	if !m.IsBind() {
		return unsupported(fmt.Sprintf("%s: id-mapped %s mounts (only bind mounts can be id-mapped)", field, m.Type))
	}
	im := &IDMap{Recursive: recursive}
	if !has {
		if u == nil || u.Path != "" {
			return invalid(field+".options", `"idmap" without uidMappings/gidMappings takes the container's mappings, and there are none (no new user namespace)`)
		}
		im.UIDMappings, im.GIDMappings = slices.Clone(u.UIDMappings), slices.Clone(u.GIDMappings)
	} else {
		var err error
		if im.UIDMappings, err = checkIDMappings(field+".uidMappings", sm.UIDMappings, false); err != nil {
			return err
		}
		if im.GIDMappings, err = checkIDMappings(field+".gidMappings", sm.GIDMappings, false); err != nil {
			return err
		}
	}
	m.IDMap = im
	return nil
}

// userNSFlag is what a new user namespace adds to Namespaces.Create.
const userNSFlag = unix.CLONE_NEWUSER
