package spec

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/mount"
	"golang.org/x/sys/unix"
)

// propagationFlags are the propagation options, also used for
// linux.rootfsPropagation.
var propagationFlags = map[string]uint64{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// unsupportedOptions are options runc knows that need more than mount(2):
// recursive attributes (mount_setattr), id-mapped mounts, tmpfs copy-up.
var unsupportedOptions = map[string]bool{
	"rro": true, "rrw": true, "rnosuid": true, "rsuid": true, "rnodev": true, "rdev": true,
	"rnoexec": true, "rexec": true, "rnodiratime": true, "rdiratime": true, "rrelatime": true,
	"rnorelatime": true, "rnoatime": true, "ratime": true, "rstrictatime": true,
	"rnostrictatime": true, "rnosymfollow": true, "rsymfollow": true,
	"idmap": true, "ridmap": true, "tmpcopyup": true, "remount": true, "mand": true, "nomand": true,
}

// ParseMountOptions turns spec mount options into MS_* flags, propagation
// flags and the data string (the options that are not flags, in order).
func ParseMountOptions(opts []string) (flags uint64, propagation []uint64, data string, err error) {
	var rest []string
	for _, o := range opts {
		if f, ok := mount.Flags[o]; ok {
			if f.Clear {
				flags &^= f.Flag
			} else {
				flags |= f.Flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			propagation = append(propagation, p)
			continue
		}
		if unsupportedOptions[o] {
			return 0, nil, "", fmt.Errorf("option %q is not supported by %s yet", o, RuntimeName)
		}
		rest = append(rest, o)
	}
	return flags, propagation, strings.Join(rest, ","), nil
}

// fsTypes are the filesystem types that can be mounted (besides binds).
var fsTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true,
}

func convertMounts(bundle string, in []specs.Mount, userns *UserNS) ([]Mount, error) {
	var out []Mount
	for i, sm := range in {
		field := fmt.Sprintf("mounts[%d]", i)
		opts, idmap, ridmap := splitIDMapOptions(sm.Options)
		if !path.IsAbs(sm.Destination) {
			return nil, invalid(field+".destination", "%q is not an absolute path", sm.Destination)
		}
		m := Mount{Destination: path.Clean(sm.Destination), Source: sm.Source, Type: sm.Type}
		if m.Destination == "/" {
			return nil, invalid(field+".destination", "cannot mount over the container's /; use root.path")
		}
		var err error
		m.Flags, m.Propagation, m.Data, err = ParseMountOptions(opts)
		if err != nil {
			return nil, invalid(field+".options", "%v", err)
		}
		isBind := m.Flags&unix.MS_BIND != 0
		switch {
		case isBind && (m.Type == "" || m.Type == "none" || m.Type == "bind"):
			m.Type = "bind"
		case m.Type == "bind":
			// type "bind" without option means a plain bind (runc does the same).
			m.Flags |= unix.MS_BIND
		case isBind:
			return nil, invalid(field+".type", "%q with a bind option: a bind mount has type \"bind\", \"none\" or none", m.Type)
		case m.Type == "" || m.Type == "none":
			return nil, invalid(field+".type", "missing (and no bind/rbind option)")
		case !fsTypes[m.Type]:
			return nil, unsupported(fmt.Sprintf("%s.type %q", field, m.Type))
		}
		if m.IsBind() {
			if m.Source == "" {
				return nil, invalid(field+".source", "missing for a bind mount")
			}
			if !filepath.IsAbs(m.Source) {
				m.Source = filepath.Join(bundle, m.Source)
			}
			m.Source = filepath.Clean(m.Source)
			if m.Data != "" {
				return nil, invalid(field+".options", "%q: unknown option for a bind mount", m.Data)
			}
		}
		if err := convertMountIDMap(field, sm, &m, idmap, ridmap, userns); err != nil {
			return nil, err
		}
		// CVE-2019-16884 class: mounting over /proc/* can hide what the
		// kernel shows there (LSM attributes, sysctl). Only procfs itself
		// at /proc; binds into /proc are checked by the setup face (it must
		// stat the source).
		if m.Type == "proc" && m.Destination != "/proc" {
			return nil, invalid(field+".destination", "proc can only be mounted at /proc, not %q", m.Destination)
		}
		if !m.IsBind() && m.Type != "proc" && isUnder(m.Destination, "/proc") {
			return nil, invalid(field+".destination", "cannot mount %s over %q: only bind mounts may go inside /proc", m.Type, m.Destination)
		}
		out = append(out, m)
	}
	return out, nil
}

// isUnder says whether p is dir or inside it (both clean and absolute).
func isUnder(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// devIsBind says whether /dev is bind-mounted from the host, in which case
// no device is created (as runc does).
func devIsBind(ms []Mount) bool {
	bind := false
	for _, m := range ms {
		if m.Destination == "/dev" {
			bind = m.IsBind() // the last mount on /dev wins
		}
	}
	return bind
}
