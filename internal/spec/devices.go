package spec

import (
	"fmt"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultDevices are created in every container's /dev (as runc does);
// linux.devices entries with the same path override them.
func DefaultDevices() []Device {
	return []Device{
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
		{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, Mode: 0o666},
		{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, Mode: 0o666},
		{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, Mode: 0o666},
		{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, Mode: 0o666},
		{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, Mode: 0o666},
	}
}

// defaultDeviceRules are the cgroup device rules runc appends to every
// container's (specconv.AllowedDevices, runc 1.1): mknod of any node, the
// default devices above, the console, the pty devices and /dev/net/tun. A
// spec that denies everything (containerd's default) still gets a usable
// /dev/null, as with runc; a later spec rule cannot take them away, since
// they come last.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	rule := func(typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: major, Minor: minor, Access: access}
	}
	return []specs.LinuxDeviceCgroup{
		rule("c", nil, nil, "m"),
		rule("b", nil, nil, "m"),
		rule("c", n(1), n(3), "rwm"),    // /dev/null
		rule("c", n(1), n(8), "rwm"),    // /dev/random
		rule("c", n(1), n(7), "rwm"),    // /dev/full
		rule("c", n(5), n(0), "rwm"),    // /dev/tty
		rule("c", n(1), n(5), "rwm"),    // /dev/zero
		rule("c", n(1), n(9), "rwm"),    // /dev/urandom
		rule("c", n(5), n(1), "rwm"),    // /dev/console
		rule("c", n(136), nil, "rwm"),   // /dev/pts/*
		rule("c", n(5), n(2), "rwm"),    // /dev/ptmx
		rule("c", n(10), n(200), "rwm"), // /dev/net/tun
	}
}

func convertDevices(in []specs.LinuxDevice) ([]Device, error) {
	out := DefaultDevices()
	seen := map[string]bool{}
	for i, d := range in {
		field := fmt.Sprintf("linux.devices[%d]", i)
		if !path.IsAbs(d.Path) || !isUnder(path.Clean(d.Path), "/dev") || path.Clean(d.Path) == "/dev" {
			return nil, invalid(field+".path", "%q is not a path inside /dev", d.Path)
		}
		switch d.Type {
		case "c", "b", "u":
			if d.Major < 0 || d.Minor < 0 || d.Major > 0xfff || d.Minor > 0xfffff {
				return nil, invalid(field, "major %d / minor %d out of range", d.Major, d.Minor)
			}
		case "p":
		default:
			return nil, invalid(field+".type", "%q is not one of c, b, u, p", d.Type)
		}
		dev := Device{Path: path.Clean(d.Path), Type: d.Type, Major: d.Major, Minor: d.Minor, Mode: 0o666}
		if d.FileMode != nil {
			// containerd fills it from stat(2) without the type bits:
			// permission, setuid, setgid and sticky bits, Unix encoding.
			if *d.FileMode&^0o7777 != 0 {
				return nil, invalid(field+".fileMode", "%#o has bits other than the permission bits", uint32(*d.FileMode))
			}
			dev.Mode = uint32(*d.FileMode)
		}
		if d.UID != nil {
			dev.UID = *d.UID
		}
		if d.GID != nil {
			dev.GID = *d.GID
		}
		if seen[dev.Path] {
			return nil, invalid(field+".path", "duplicate device %q", dev.Path)
		}
		seen[dev.Path] = true
		replaced := false
		for j := range out {
			if out[j].Path == dev.Path {
				out[j], replaced = dev, true
			}
		}
		if !replaced {
			out = append(out, dev)
		}
	}
	return out, nil
}
