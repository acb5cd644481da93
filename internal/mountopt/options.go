// Package mountopt is the one table of mount options: what each one does,
// which are refused and why. It is pure data, shared by the rootfs mounts
// (internal/mount), spec validation (internal/spec) and the features
// document (pkg/shim), so that none of them keeps its own list.
package mountopt

import (
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind says how a mount option acts.
type Kind int

const (
	// FlagOption sets or clears an MS_* flag of mount(2).
	FlagOption Kind = iota
	// PropagationOption applies a propagation type (MS_SHARED..., with
	// MS_REC for the r* forms) once the mount is in place. Spec mounts only.
	PropagationOption
	// RecursiveOption sets or clears a MOUNT_ATTR_* attribute on the whole
	// tree with mount_setattr(AT_RECURSIVE), as runc 1.1+ does for rro,
	// rnosuid... Spec mounts only.
	RecursiveOption
	// IDMapOption asks for an id-mapped bind (idmap; ridmap for the whole
	// tree), which the daemon makes (pkg/process/userns.go): spec
	// validation takes these out before the rest is parsed.
	IDMapOption
)

// Option is the effect of one mount option.
type Option struct {
	Kind  Kind
	Clear bool
	// Flag is an MS_* flag (FlagOption), MS_* propagation (PropagationOption)
	// or a MOUNT_ATTR_* attribute (RecursiveOption).
	Flag uint64
	// Atime (RecursiveOption): Flag is an atime mode (MOUNT_ATTR_RELATIME,
	// NOATIME, STRICTATIME: an enum, not bits), which replaces the tree's.
	Atime bool
}

func flag(f uint64) Option        { return Option{Kind: FlagOption, Flag: f} }
func clearFlag(f uint64) Option   { return Option{Kind: FlagOption, Flag: f, Clear: true} }
func prop(f uint64) Option        { return Option{Kind: PropagationOption, Flag: f} }
func rec(a uint64) Option         { return Option{Kind: RecursiveOption, Flag: a} }
func clearRec(a uint64) Option    { return Option{Kind: RecursiveOption, Flag: a, Clear: true} }
func recAtime(mode uint64) Option { return Option{Kind: RecursiveOption, Flag: mode, Atime: true} }

// Options is the one table of mount options this runtime understands: the
// rootfs mounts of a Create request take its FlagOptions (everything else
// is filesystem data), spec validation (internal/spec) takes all of it, and
// the OCI features document of -info lists exactly its names (Names), so
// what is advertised and what is accepted cannot drift apart.
var Options = map[string]Option{
	"idmap":         {Kind: IDMapOption},
	"ridmap":        {Kind: IDMapOption},
	"async":         clearFlag(unix.MS_SYNCHRONOUS),
	"atime":         clearFlag(unix.MS_NOATIME),
	"bind":          flag(unix.MS_BIND),
	"defaults":      flag(0),
	"dev":           clearFlag(unix.MS_NODEV),
	"diratime":      clearFlag(unix.MS_NODIRATIME),
	"dirsync":       flag(unix.MS_DIRSYNC),
	"exec":          clearFlag(unix.MS_NOEXEC),
	"iversion":      flag(unix.MS_I_VERSION),
	"lazytime":      flag(unix.MS_LAZYTIME),
	"loud":          clearFlag(unix.MS_SILENT),
	"noatime":       flag(unix.MS_NOATIME),
	"nodev":         flag(unix.MS_NODEV),
	"nodiratime":    flag(unix.MS_NODIRATIME),
	"noexec":        flag(unix.MS_NOEXEC),
	"noiversion":    clearFlag(unix.MS_I_VERSION),
	"nolazytime":    clearFlag(unix.MS_LAZYTIME),
	"norelatime":    clearFlag(unix.MS_RELATIME),
	"nostrictatime": clearFlag(unix.MS_STRICTATIME),
	"nosuid":        flag(unix.MS_NOSUID),
	"nosymfollow":   flag(unix.MS_NOSYMFOLLOW),
	"rbind":         flag(unix.MS_BIND | unix.MS_REC),
	"relatime":      flag(unix.MS_RELATIME),
	"ro":            flag(unix.MS_RDONLY),
	"rw":            clearFlag(unix.MS_RDONLY),
	"silent":        flag(unix.MS_SILENT),
	"strictatime":   flag(unix.MS_STRICTATIME),
	"suid":          clearFlag(unix.MS_NOSUID),
	"symfollow":     clearFlag(unix.MS_NOSYMFOLLOW),
	"sync":          flag(unix.MS_SYNCHRONOUS),

	"private":     prop(unix.MS_PRIVATE),
	"rprivate":    prop(unix.MS_PRIVATE | unix.MS_REC),
	"shared":      prop(unix.MS_SHARED),
	"rshared":     prop(unix.MS_SHARED | unix.MS_REC),
	"slave":       prop(unix.MS_SLAVE),
	"rslave":      prop(unix.MS_SLAVE | unix.MS_REC),
	"unbindable":  prop(unix.MS_UNBINDABLE),
	"runbindable": prop(unix.MS_UNBINDABLE | unix.MS_REC),

	"rro":          rec(unix.MOUNT_ATTR_RDONLY),
	"rrw":          clearRec(unix.MOUNT_ATTR_RDONLY),
	"rnosuid":      rec(unix.MOUNT_ATTR_NOSUID),
	"rsuid":        clearRec(unix.MOUNT_ATTR_NOSUID),
	"rnodev":       rec(unix.MOUNT_ATTR_NODEV),
	"rdev":         clearRec(unix.MOUNT_ATTR_NODEV),
	"rnoexec":      rec(unix.MOUNT_ATTR_NOEXEC),
	"rexec":        clearRec(unix.MOUNT_ATTR_NOEXEC),
	"rnodiratime":  rec(unix.MOUNT_ATTR_NODIRATIME),
	"rdiratime":    clearRec(unix.MOUNT_ATTR_NODIRATIME),
	"rnosymfollow": rec(unix.MOUNT_ATTR_NOSYMFOLLOW),
	"rsymfollow":   clearRec(unix.MOUNT_ATTR_NOSYMFOLLOW),
	// The atime modes are an enum; the "no"/"a" forms go back to the
	// kernel's default, relatime, as their mount(2) forms do.
	"rrelatime":      recAtime(unix.MOUNT_ATTR_RELATIME),
	"rnorelatime":    recAtime(unix.MOUNT_ATTR_RELATIME),
	"rnoatime":       recAtime(unix.MOUNT_ATTR_NOATIME),
	"ratime":         recAtime(unix.MOUNT_ATTR_RELATIME),
	"rstrictatime":   recAtime(unix.MOUNT_ATTR_STRICTATIME),
	"rnostrictatime": recAtime(unix.MOUNT_ATTR_RELATIME),
}

// Refused are options other runtimes know that this one refuses, with the
// reason; they are not in Options, so -info does not advertise them.
var Refused = map[string]string{
	"mand":      "mandatory locking is gone from Linux (5.15)",
	"nomand":    "mandatory locking is gone from Linux (5.15)",
	"remount":   "a spec mount is always a new mount or a bind, never a remount",
	"tmpcopyup": "not implemented",
}

// Names lists every option of Options, sorted: the mountOptions of the OCI
// features document.
func Names() []string {
	out := make([]string, 0, len(Options))
	for k := range Options {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ParseOptions splits the options of a rootfs mount (a Create request's)
// into MS_* flags and the data string: only FlagOptions are flags, the rest
// (lowerdir=..., index=off) is the filesystem's.
func ParseOptions(options []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range options {
		if f, ok := Options[o]; ok && f.Kind == FlagOption {
			if f.Clear {
				flags &^= uintptr(f.Flag)
			} else {
				flags |= uintptr(f.Flag)
			}
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}
