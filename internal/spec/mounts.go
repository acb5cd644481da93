package spec

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/autokill/containerd-shim-autokill-v1/internal/mountopt"
	"golang.org/x/sys/unix"
)

// propagationFlags are the propagation options of the one option table
// (internal/mount), also used for linux.rootfsPropagation.
var propagationFlags = func() map[string]uint64 {
	m := map[string]uint64{}
	for name, o := range mountopt.Options {
		if o.Kind == mountopt.PropagationOption {
			m[name] = o.Flag
		}
	}
	return m
}()

// MountOptions are a spec mount's options, parsed.
type MountOptions struct {
	// Flags are MS_* flags for the mount itself.
	Flags uint64
	// Propagation flags, in order.
	Propagation []uint64
	// RecSet and RecClr are MOUNT_ATTR_* attributes set and cleared on
	// the whole tree (mount_setattr with AT_RECURSIVE): rro, rnosuid...
	RecSet, RecClr uint64
	// Data is the comma-joined list of options that are not in the table.
	Data string
}

// ParseMountOptions interprets spec mount options with internal/mount's
// table; an option other runtimes know but this one refuses is an error.
func ParseMountOptions(opts []string) (MountOptions, error) {
	var out MountOptions
	var rest []string
	for _, o := range opts {
		if why, refused := mountopt.Refused[o]; refused {
			return MountOptions{}, fmt.Errorf("option %q is not supported by %s: %s", o, RuntimeName, why)
		}
		opt, ok := mountopt.Options[o]
		switch {
		case !ok:
			rest = append(rest, o)
		case opt.Kind == mountopt.IDMapOption:
			// convertMounts takes them out first, with the mount's mappings.
			return MountOptions{}, fmt.Errorf("option %q: only for a bind mount of the spec", o)
		case opt.Kind == mountopt.FlagOption && opt.Clear:
			out.Flags &^= opt.Flag
		case opt.Kind == mountopt.FlagOption:
			out.Flags |= opt.Flag
		case opt.Kind == mountopt.PropagationOption:
			out.Propagation = append(out.Propagation, opt.Flag)
		case opt.Atime:
			// The atime mode is replaced as a whole: the kernel wants all
			// of MOUNT_ATTR__ATIME cleared with it.
			out.RecClr |= unix.MOUNT_ATTR__ATIME
			out.RecSet = out.RecSet&^unix.MOUNT_ATTR__ATIME | opt.Flag
		case opt.Clear:
			out.RecClr |= opt.Flag
			out.RecSet &^= opt.Flag
		default:
			out.RecSet |= opt.Flag
			out.RecClr &^= opt.Flag
		}
	}
	out.Data = strings.Join(rest, ",")
	return out, nil
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
		o, err := ParseMountOptions(opts)
		if err != nil {
			return nil, invalid(field+".options", "%v", err)
		}
		m.Flags, m.Propagation, m.RecSet, m.RecClr, m.Data = o.Flags, o.Propagation, o.RecSet, o.RecClr, o.Data
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
