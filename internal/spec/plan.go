// Package spec turns an OCI runtime spec into a Plan: plain, validated data
// that the daemon (pkg/process) and the setup face (internal/setup) act on.
//
// Everything here is pure: no syscall, no root, no look at the host. Every
// field of the spec is either converted into the Plan or rejected with an
// error wrapping errdefs.ErrInvalidArgument that names the field; nothing is
// silently ignored. Checks that need the host (is the mount source on procfs,
// does the cwd exist in the image) happen in the setup face.
package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RuntimeName is used in "not supported" errors.
const RuntimeName = "io.containerd.autokill.v1"

// Plan is everything the daemon and the setup face need to create the
// container. It is sent as JSON over initsync, so it holds plain data only.
type Plan struct {
	// Namespaces to create (clone3 flags) and to join (by path).
	Namespaces Namespaces
	// UserNS is the user namespace, nil for none (see userns.go); a new
	// one is also CLONE_NEWUSER in Namespaces.Create.
	UserNS *UserNS
	// CgroupsPath is spec.linux.cgroupsPath, checked by ValidateCgroupsPath:
	// a clean cgroupfs path, absolute ("/a/b", below each hierarchy's root)
	// or relative ("a/b", below the daemon's own cgroup, as runc does); or
	// the systemd driver's "slice:prefix:name" (ParseSystemdCgroupsPath).
	// The daemon checks that the form matches the driver. Empty means the daemon derives "/<namespace>/<id>" (internal/cgroups),
	// so that linux.resources are always enforced.
	CgroupsPath string
	// Resources is spec.linux.resources after validation: only memory
	// (limit, reservation, swap), cpu (shares, quota, period, cpus, mems),
	// pids (limit) and device rules can be set.
	Resources *specs.LinuxResources
	// OOMScoreAdj is written to the init's oom_score_adj by the daemon,
	// before the setup face runs (pkg/process setOOMScoreAdj).
	OOMScoreAdj *int
	// Fallback is set by the daemon, not by NewPlan: the kernel lacks
	// CLONE_PIDFD_AUTOKILL, so the setup face re-arms PR_SET_PDEATHSIG
	// after every credential change and right before execve, and exits if
	// the initsync socket hung up (the daemon died).
	Fallback bool

	// Root is the absolute path of the rootfs (spec.root.path made
	// absolute against the bundle).
	Root string
	// RootReadonly remounts / read-only after pivot_root.
	RootReadonly bool
	// RootPropagation is the MS_* propagation applied to "/" before any
	// mount (MS_SLAVE|MS_REC unless linux.rootfsPropagation says otherwise).
	RootPropagation uint64
	// Mounts in spec order, options parsed.
	Mounts []Mount
	// SetupDev: /dev is not a bind mount, so the setup face creates Devices
	// and the standard /dev symlinks in it.
	SetupDev bool
	// Devices to create in /dev: the defaults (null, zero, full, random,
	// urandom, tty) overridden or extended by linux.devices.
	Devices []Device
	// Hostname and Domainname, set in the (new or joined) UTS namespace.
	Hostname   string
	Domainname string
	// Sysctl in spec order of keys (sorted).
	Sysctl []Sysctl
	// MaskedPaths and ReadonlyPaths, cleaned absolute container paths.
	MaskedPaths   []string
	ReadonlyPaths []string
	// Process is what execve runs and with which credentials.
	Process Process
	// Personality is the persona (PER_LINUX, PER_LINUX32) for
	// personality(2) from linux.personality; nil leaves the shim's.
	Personality *uint32
	// TimeOffsets are written to the new time namespace (NewTimeNS)
	// before any process is in it.
	TimeOffsets []TimeOffset
	// Seccomp is linux.seccomp, checked (seccomp.go); nil for none. The
	// setup face loads it right before execve (internal/seccomp), and
	// the daemon hands it to every exec (ExecPlan.Seccomp), as runc does.
	Seccomp *specs.LinuxSeccomp `json:",omitempty"`
	// Hooks are the spec's hooks and the state the setup face hands to
	// the ones it runs (hooks.go).
	Hooks Hooks
}

// Namespaces describes the namespaces of the container's init.
type Namespaces struct {
	// Create holds the CLONE_NEW* flags for clone3: pid, mount, net, ipc,
	// uts. Never CLONE_NEWCGROUP or CLONE_NEWTIME: see NewCgroupNS and
	// NewTimeNS.
	Create uint64
	// Join lists the namespaces to join by path, in spec order. The daemon
	// opens Path; the child setns()es before exec, except the pid namespace
	// which the daemon joins itself before clone.
	Join []Join
	// NewCgroupNS: the setup face calls unshare(CLONE_NEWCGROUP) once the
	// daemon placed it into its cgroup, so the namespace root is the
	// container's cgroup.
	NewCgroupNS bool
	// NewTimeNS: the setup face calls unshare(CLONE_NEWTIME), writes
	// TimeOffsets and enters the namespace with its execve of the
	// entrypoint. Never a clone3 flag: a namespace that has a process
	// cannot take offsets any more.
	NewTimeNS bool
}

// Join is one namespace joined by path.
type Join struct {
	Type specs.LinuxNamespaceType
	Path string
	Flag uint64 // CLONE_NEW*
}

// Mount is one spec mount, parsed.
type Mount struct {
	// Type is the filesystem type; "bind" for bind mounts whatever the
	// spec said ("none", "" or "bind" with a bind/rbind option).
	Type string
	// Source is the host path for binds (absolute; relative spec sources
	// are taken relative to the bundle), the device name otherwise.
	Source string
	// Destination is a cleaned absolute path inside the container.
	Destination string
	// Flags are MS_* flags (without propagation). For binds MS_BIND and,
	// for rbind, MS_REC are set.
	Flags uint64
	// Propagation flags, applied one by one after the mount.
	Propagation []uint64
	// RecSet and RecClr are MOUNT_ATTR_* set and cleared on the whole
	// mount tree (mount_setattr AT_RECURSIVE) before it is attached: rro,
	// rnosuid, rnoatime...
	RecSet, RecClr uint64
	// Data is the comma-joined list of options that are not flags.
	Data string
	// IDMap: an id-mapped bind (userns.go); the daemon stages it.
	IDMap *IDMap `json:",omitempty"`
}

// IsBind says whether the mount is a bind mount.
func (m Mount) IsBind() bool { return m.Type == "bind" }

// Device is a device node (or FIFO) to create in the container's /dev.
type Device struct {
	Path  string // absolute, under /dev
	Type  string // "c", "b", "u" (unbuffered char, same as c) or "p" (FIFO)
	Major int64
	Minor int64
	Mode  uint32 // permission bits
	UID   uint32
	GID   uint32
}

// Sysctl is one kernel parameter.
type Sysctl struct {
	Key   string // as in the spec
	Path  string // relative to /proc/sys, e.g. "net/ipv4/ip_forward"
	Value string
}

// Process is the container's entrypoint and its credentials.
type Process struct {
	Args []string
	Env  []string
	Cwd  string // absolute, inside the container

	UID            uint32
	GID            uint32
	AdditionalGids []uint32
	// Umask; nil means 0022 (what runc does).
	Umask *uint32

	// Capabilities; nil means the spec had none: the process keeps what
	// it has (all, as root) — exactly what runc does.
	Capabilities    *Capabilities
	NoNewPrivileges bool
	Rlimits         []Rlimit
	// Scheduler (sched_setattr) and IOPriority (the ioprio_set value)
	// are applied by the setup face to the thread that execs; nil
	// leaves the shim's.
	Scheduler  *Scheduler
	IOPriority *int
	// ApparmorProfile is the AppArmor profile the process is exec'd
	// into (trimmed), "" for none. The daemon refuses it where AppArmor
	// is off (CheckAppArmor); the setup face writes it to the attr of the
	// thread that execs, after the credentials are final.
	ApparmorProfile string

	// Terminal: the process gets a pty of the container's devpts as its
	// controlling terminal and stdio; ConsoleSize its first size.
	Terminal    bool
	ConsoleSize *ConsoleSize
}

// ConsoleSize is a terminal's size in characters.
type ConsoleSize struct {
	Height, Width uint
}

// Capabilities are bitmasks of capability numbers (bit n = capability n).
type Capabilities struct {
	Bounding    uint64
	Effective   uint64
	Permitted   uint64
	Inheritable uint64
	Ambient     uint64
}

// Rlimit is one resource limit.
type Rlimit struct {
	Type     string // RLIMIT_*
	Resource int    // the RLIMIT_* number
	Soft     uint64
	Hard     uint64
}

// Load reads <bundle>/config.json.
func Load(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s: config.json: missing: %w", bundle, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("bundle %s: config.json: %v: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %v: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// invalid returns an error naming the spec field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// unsupported rejects a spec field this runtime does not implement yet.
func unsupported(field string) error {
	return fmt.Errorf("%s is not supported by %s yet: %w", field, RuntimeName, errdefs.ErrInvalidArgument)
}
