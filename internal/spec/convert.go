package spec

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// NewPlan validates s and converts it into a Plan. bundle is the bundle
// directory; relative root and bind-source paths are resolved against it.
// Every error wraps errdefs.ErrInvalidArgument and names the spec field.
func NewPlan(bundle string, s *specs.Spec) (*Plan, error) {
	if s == nil {
		return nil, invalid("spec", "missing")
	}
	if !filepath.IsAbs(bundle) {
		return nil, invalid("bundle", "%q is not an absolute path", bundle)
	}
	if err := checkUnsupportedTop(s); err != nil {
		return nil, err
	}
	p := &Plan{}
	var err error
	if p.Root, p.RootReadonly, err = convertRoot(bundle, s.Root); err != nil {
		return nil, err
	}
	l := s.Linux
	if p.Namespaces, err = convertNamespaces(l.Namespaces); err != nil {
		return nil, err
	}
	if err := checkUnsupportedLinux(l); err != nil {
		return nil, err
	}
	if p.UserNS, err = convertUserNS(l.Namespaces, l.UIDMappings, l.GIDMappings); err != nil {
		return nil, err
	}
	if p.UserNS != nil && p.UserNS.Path == "" {
		p.Namespaces.Create |= userNSFlag
	}
	if p.CgroupsPath, err = convertCgroupsPath(l.CgroupsPath); err != nil {
		return nil, err
	}
	if p.Resources, err = convertResources(l.Resources); err != nil {
		return nil, err
	}
	if p.RootPropagation, err = convertRootPropagation(l.RootfsPropagation); err != nil {
		return nil, err
	}
	if p.Mounts, err = convertMounts(bundle, s.Mounts, p.UserNS); err != nil {
		return nil, err
	}
	p.SetupDev = !devIsBind(p.Mounts)
	if p.Devices, err = convertDevices(l.Devices); err != nil {
		return nil, err
	}
	if !p.SetupDev && len(l.Devices) > 0 {
		return nil, invalid("linux.devices", "cannot create devices when /dev is a bind mount")
	}
	if err := checkUTS(s, p.Namespaces); err != nil {
		return nil, err
	}
	p.Hostname, p.Domainname = s.Hostname, s.Domainname
	if p.Sysctl, err = convertSysctl(l.Sysctl, p.Namespaces); err != nil {
		return nil, err
	}
	if p.MaskedPaths, err = cleanPaths("linux.maskedPaths", l.MaskedPaths); err != nil {
		return nil, err
	}
	if p.ReadonlyPaths, err = cleanPaths("linux.readonlyPaths", l.ReadonlyPaths); err != nil {
		return nil, err
	}
	if p.Process, err = convertProcess(s.Process); err != nil {
		return nil, err
	}
	if p.Personality, err = convertPersonality(l.Personality); err != nil {
		return nil, err
	}
	if p.TimeOffsets, err = convertTimeOffsets(l.TimeOffsets, p.Namespaces); err != nil {
		return nil, err
	}
	if p.Seccomp, err = convertSeccomp(l.Seccomp); err != nil {
		return nil, err
	}
	if p.Hooks, err = convertHooks(s.Hooks); err != nil {
		return nil, err
	}
	if p.Hooks.Any() {
		p.Hooks.State = &specs.State{Version: specs.Version, Bundle: bundle, Annotations: s.Annotations}
	}
	p.OOMScoreAdj = s.Process.OOMScoreAdj
	if err := checkOOMScoreAdj(p.OOMScoreAdj); err != nil {
		return nil, err
	}
	return p, nil
}

func checkOOMScoreAdj(a *int) error {
	if a != nil && (*a < -1000 || *a > 1000) {
		return invalid("process.oomScoreAdj", "%d is outside [-1000, 1000]", *a)
	}
	return nil
}

func checkUnsupportedTop(s *specs.Spec) error {
	if !strings.HasPrefix(s.Version, "1.") {
		return invalid("ociVersion", "%q is not a 1.x version", s.Version)
	}
	if s.Process == nil {
		return invalid("process", "missing")
	}
	if s.Linux == nil {
		return invalid("linux", "missing")
	}
	switch {
	case s.Solaris != nil:
		return unsupported("solaris")
	case s.Windows != nil:
		return unsupported("windows")
	case s.VM != nil:
		return unsupported("vm")
	case s.ZOS != nil:
		return unsupported("zos")
	case s.FreeBSD != nil:
		return unsupported("freebsd")
	}
	return nil
}

func checkUnsupportedLinux(l *specs.Linux) error {
	switch {
	case len(l.NetDevices) > 0:
		return unsupported("linux.netDevices")
	case l.MountLabel != "":
		return unsupported("linux.mountLabel (SELinux)")
	case l.IntelRdt != nil:
		return unsupported("linux.intelRdt")
	case l.MemoryPolicy != nil:
		return unsupported("linux.memoryPolicy")
	}
	return nil
}

func convertRoot(bundle string, r *specs.Root) (string, bool, error) {
	if r == nil || r.Path == "" {
		return "", false, invalid("root.path", "missing")
	}
	p := r.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(bundle, p)
	}
	p = filepath.Clean(p)
	if p == "/" {
		return "", false, invalid("root.path", "the host's / cannot be a container's root")
	}
	return p, r.Readonly, nil
}

// nsFlags maps the namespace types this runtime handles to CLONE_NEW*.
var nsFlags = map[specs.LinuxNamespaceType]uint64{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// NamespaceTypes lists the namespace types NewPlan accepts, in the order of
// the spec's documentation: the namespaces of the OCI features document.
func NamespaceTypes() []string {
	var out []string
	for _, t := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace,
		specs.IPCNamespace, specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace} {
		// User namespaces are handled apart (convertUserNS), in every shape:
		// new, or joined by path with or without a pid namespace of their own.
		if _, ok := nsFlags[t]; ok || t == specs.UserNamespace {
			out = append(out, string(t))
		}
	}
	return out
}

func convertNamespaces(list []specs.LinuxNamespace) (Namespaces, error) {
	var ns Namespaces
	seen := map[specs.LinuxNamespaceType]bool{}
	for i, n := range list {
		field := fmt.Sprintf("linux.namespaces[%d]", i)
		switch n.Type {
		case specs.UserNamespace:
			continue // convertUserNS
		}
		flag, ok := nsFlags[n.Type]
		if !ok {
			return ns, invalid(field, "unknown namespace type %q", n.Type)
		}
		if seen[n.Type] {
			return ns, invalid(field, "duplicate namespace type %q", n.Type)
		}
		seen[n.Type] = true
		if n.Path == "" {
			switch n.Type {
			case specs.CgroupNamespace:
				ns.NewCgroupNS = true
			case specs.TimeNamespace:
				ns.NewTimeNS = true
			default:
				ns.Create |= flag
			}
			continue
		}
		if !filepath.IsAbs(n.Path) {
			return ns, invalid(field+".path", "%q is not an absolute path", n.Path)
		}
		if n.Type == specs.MountNamespace {
			return ns, invalid(field+".path", "joining a mount namespace is not possible: the runtime needs a private mount namespace for pivot_root")
		}
		ns.Join = append(ns.Join, Join{Type: n.Type, Path: filepath.Clean(n.Path), Flag: flag})
	}
	if !seen[specs.MountNamespace] {
		return ns, invalid("linux.namespaces", "no mount namespace: the runtime needs a private mount namespace")
	}
	return ns, nil
}

// has says whether the container has a namespace of that type, new or joined.
func (ns Namespaces) has(t specs.LinuxNamespaceType) bool {
	if t == specs.CgroupNamespace && ns.NewCgroupNS || t == specs.TimeNamespace && ns.NewTimeNS {
		return true
	}
	if ns.Create&nsFlags[t] != 0 && t != specs.CgroupNamespace && t != specs.TimeNamespace {
		return true
	}
	for _, j := range ns.Join {
		if j.Type == t {
			return true
		}
	}
	return false
}

// convertCgroupsPath accepts either driver's form: which driver applies is a
// runtime option (SystemdCgroup), not part of the spec, and the daemon
// checks that the two agree (internal/cgroups.PathFor).
func convertCgroupsPath(p string) (string, error) {
	if IsSystemdCgroupsPath(p) {
		if _, err := ParseSystemdCgroupsPath(p); err != nil {
			return "", err
		}
		return p, nil
	}
	return ValidateCgroupsPath(p)
}

// IsSystemdCgroupsPath reports whether p has the systemd driver's form,
// "slice:prefix:name" (a cgroupfs path has no colon in practice, and an
// absolute one is always cgroupfs, as with runc).
func IsSystemdCgroupsPath(p string) bool {
	return strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/")
}

// SystemdCgroupsPath is a parsed "slice:prefix:name": the container gets
// the transient scope Unit under Slice.
type SystemdCgroupsPath struct {
	Slice  string // "system.slice" when the path leaves it empty, as runc
	Prefix string
	Name   string
	Unit   string // "<prefix>-<name>.scope" ("<name>.scope" without a prefix)
}

// maxUnitName is systemd's UNIT_NAME_MAX less the NUL.
const maxUnitName = 255

// ParseSystemdCgroupsPath checks a systemd cgroupsPath the way systemd
// checks unit names (letters, digits, ":-_.\\"; here without ":", the
// separator), so a bad one fails Create with InvalidArgument instead of a
// D-Bus error: the slice ends in ".slice" and its "-"-separated parts are
// not empty ("-.slice" is the root slice), the name is not empty. A name
// ending in ".slice" (runc then makes a slice, not a scope) is refused.
func ParseSystemdCgroupsPath(p string) (*SystemdCgroupsPath, error) {
	const field = "linux.cgroupsPath"
	parts := strings.Split(p, ":")
	if len(parts) != 3 || strings.HasPrefix(p, "/") {
		return nil, invalid(field, "%q is not of the systemd driver's form slice:prefix:name", p)
	}
	s := &SystemdCgroupsPath{Slice: parts[0], Prefix: parts[1], Name: parts[2]}
	if s.Slice == "" {
		s.Slice = "system.slice"
	}
	for _, c := range []struct{ what, v string }{{"slice", s.Slice}, {"prefix", s.Prefix}, {"name", s.Name}} {
		for _, r := range c.v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.\\", r)) {
				return nil, invalid(field, "%q: the %s %q has %q, which is not allowed in a systemd unit name", p, c.what, c.v, r)
			}
		}
	}
	if s.Slice != "-.slice" {
		base, ok := strings.CutSuffix(s.Slice, ".slice")
		if !ok || base == "" {
			return nil, invalid(field, "%q: the slice %q does not end in .slice", p, s.Slice)
		}
		for _, c := range strings.Split(base, "-") {
			if c == "" {
				return nil, invalid(field, "%q: the slice %q has an empty part between dashes", p, s.Slice)
			}
		}
	}
	switch {
	case s.Name == "":
		return nil, invalid(field, "%q: empty name", p)
	case strings.HasSuffix(s.Name, ".slice"):
		return nil, unsupported(fmt.Sprintf("%s %q: a name ending in .slice (a slice for the container)", field, p))
	}
	s.Unit = s.Name + ".scope"
	if s.Prefix != "" {
		s.Unit = s.Prefix + "-" + s.Unit
	}
	if len(s.Unit) > maxUnitName || len(s.Slice) > maxUnitName {
		return nil, invalid(field, "%q: a unit name longer than %d bytes", p, maxUnitName)
	}
	return s, nil
}

// Dir is the scope's cgroup below the hierarchy's root, as systemd places
// it: each "-" of the slice's name is a level ("a-b.slice" is
// "/a.slice/a-b.slice"), the scope below the last.
func (s *SystemdCgroupsPath) Dir() string {
	dir := "/"
	if s.Slice != "-.slice" {
		base := strings.TrimSuffix(s.Slice, ".slice")
		parts := strings.Split(base, "-")
		for i := range parts {
			dir += strings.Join(parts[:i+1], "-") + ".slice/"
		}
	}
	return dir + s.Unit
}

// maxCgroupName is NAME_MAX: the kernel refuses a longer cgroup name anyway,
// but only after the directories before it were made.
const maxCgroupName = 255

// ValidateCgroupsPath checks spec.linux.cgroupsPath. It is the one check
// shared by Create (through NewPlan) and the delete face, which reads the
// same field from a bundle it did not validate itself: a path that passes
// can only name a directory inside a cgroup hierarchy.
//
// Accepted is a clean cgroupfs path: absolute ("/a/b", below each
// hierarchy's root) or relative ("a/b", below the daemon's own cgroup, as
// runc's cgroupfs driver does; internal/cgroups resolves it). Refused, with
// InvalidArgument: "." and ".." components, empty components ("a//b", a
// trailing "/"), NUL and other control characters, over-long names. The
// systemd driver's "slice:prefix:name" form is a relative path of one
// component here, as runc's cgroupfs driver takes it: containerd 1.6's CRI
// writes that form whenever a pod's cgroup parent ends in ".slice",
// whichever driver is configured.
// "" is valid and means the daemon derives the path (see internal/cgroups).
func ValidateCgroupsPath(p string) (string, error) {
	const field = "linux.cgroupsPath"
	if p == "" || p == "/" {
		// "/" is clean; that the root is busy is the daemon's finding.
		return p, nil
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "", invalid(field, "%q contains a control character (NUL, newline...)", p)
		}
	}
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		switch {
		case c == "":
			return "", invalid(field, "%q is not a clean path: empty component", p)
		case c == "." || c == "..":
			return "", invalid(field, "%q is not a clean path: %q component", p, c)
		case len(c) > maxCgroupName:
			return "", invalid(field, "%q: component longer than %d bytes", p, maxCgroupName)
		}
	}
	return p, nil
}

func convertResources(r *specs.LinuxResources) (*specs.LinuxResources, error) {
	if r == nil {
		return nil, nil
	}
	out := &specs.LinuxResources{}
	for i, d := range r.Devices {
		field := fmt.Sprintf("linux.resources.devices[%d]", i)
		switch d.Type {
		case "", "a", "b", "c":
		default:
			return nil, invalid(field+".type", "%q is not one of a, b, c", d.Type)
		}
		if strings.Trim(d.Access, "rwm") != "" {
			return nil, invalid(field+".access", "%q has letters other than r, w, m", d.Access)
		}
		out.Devices = append(out.Devices, d)
	}
	// Only after rules of the spec's own: with none the cgroup allows
	// everything, and on cgroup v2 a program of allow rules alone would
	// deny all the rest.
	if len(out.Devices) > 0 {
		out.Devices = append(out.Devices, defaultDeviceRules()...)
	}
	if m := r.Memory; m != nil {
		switch {
		case m.Kernel != nil:
			return nil, unsupported("linux.resources.memory.kernel")
		case m.KernelTCP != nil:
			return nil, unsupported("linux.resources.memory.kernelTCP")
		case m.Swappiness != nil:
			return nil, unsupported("linux.resources.memory.swappiness")
		case m.DisableOOMKiller != nil:
			return nil, unsupported("linux.resources.memory.disableOOMKiller")
		case m.UseHierarchy != nil:
			return nil, unsupported("linux.resources.memory.useHierarchy")
		case m.CheckBeforeUpdate != nil:
			return nil, unsupported("linux.resources.memory.checkBeforeUpdate")
		}
		out.Memory = &specs.LinuxMemory{Limit: m.Limit, Reservation: m.Reservation, Swap: m.Swap}
	}
	if c := r.CPU; c != nil {
		switch {
		case c.Burst != nil:
			return nil, unsupported("linux.resources.cpu.burst")
		case c.RealtimeRuntime != nil || c.RealtimePeriod != nil:
			return nil, unsupported("linux.resources.cpu.realtimeRuntime/realtimePeriod")
		case c.Idle != nil:
			return nil, unsupported("linux.resources.cpu.idle")
		}
		out.CPU = &specs.LinuxCPU{Shares: c.Shares, Quota: c.Quota, Period: c.Period, Cpus: c.Cpus, Mems: c.Mems}
	}
	if p := r.Pids; p != nil {
		out.Pids = &specs.LinuxPids{Limit: p.Limit}
	}
	if b := r.BlockIO; b != nil && (b.Weight != nil || b.LeafWeight != nil || len(b.WeightDevice) > 0 ||
		len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
		len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0) {
		return nil, unsupported("linux.resources.blockIO")
	}
	if len(r.HugepageLimits) > 0 {
		return nil, unsupported("linux.resources.hugepageLimits")
	}
	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, unsupported("linux.resources.network")
	}
	if len(r.Rdma) > 0 {
		return nil, unsupported("linux.resources.rdma")
	}
	if len(r.Unified) > 0 {
		return nil, unsupported("linux.resources.unified")
	}
	return out, nil
}

func convertRootPropagation(p string) (uint64, error) {
	if p == "" {
		return unix.MS_SLAVE | unix.MS_REC, nil
	}
	f, ok := propagationFlags[p]
	if !ok {
		return 0, invalid("linux.rootfsPropagation", "%q is not one of private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable", p)
	}
	return f, nil
}

func checkUTS(s *specs.Spec, ns Namespaces) error {
	if s.Hostname != "" && !ns.has(specs.UTSNamespace) {
		return invalid("hostname", "setting the hostname needs a uts namespace")
	}
	if s.Domainname != "" && !ns.has(specs.UTSNamespace) {
		return invalid("domainname", "setting the domainname needs a uts namespace")
	}
	return nil
}

func cleanPaths(field string, in []string) ([]string, error) {
	var out []string
	for i, p := range in {
		if !path.IsAbs(p) {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not an absolute path", p)
		}
		out = append(out, path.Clean(p))
	}
	return out, nil
}

func convertProcess(sp *specs.Process) (Process, error) {
	var p Process
	switch {
	case sp.SelinuxLabel != "":
		return p, unsupported("process.selinuxLabel")
	case sp.ExecCPUAffinity != nil:
		return p, unsupported("process.execCPUAffinity")
	case sp.CommandLine != "":
		return p, unsupported("process.commandLine")
	case sp.User.Username != "":
		return p, unsupported("process.user.username")
	}
	if len(sp.Args) == 0 || sp.Args[0] == "" {
		return p, invalid("process.args", "missing: nothing to execute")
	}
	// The spec: consoleSize is ignored without a terminal.
	p.Terminal = sp.Terminal
	if sp.Terminal && sp.ConsoleSize != nil {
		if sp.ConsoleSize.Height > 0xffff || sp.ConsoleSize.Width > 0xffff {
			return p, invalid("process.consoleSize", "%dx%d is larger than a terminal can be", sp.ConsoleSize.Width, sp.ConsoleSize.Height)
		}
		p.ConsoleSize = &ConsoleSize{Height: sp.ConsoleSize.Height, Width: sp.ConsoleSize.Width}
	}
	if !path.IsAbs(sp.Cwd) {
		return p, invalid("process.cwd", "%q is not an absolute path", sp.Cwd)
	}
	for i, e := range sp.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return p, invalid(fmt.Sprintf("process.env[%d]", i), "%q is not KEY=value", e)
		}
		if strings.ContainsRune(e, 0) {
			return p, invalid(fmt.Sprintf("process.env[%d]", i), "contains a NUL byte")
		}
	}
	for i, a := range sp.Args {
		if strings.ContainsRune(a, 0) {
			return p, invalid(fmt.Sprintf("process.args[%d]", i), "contains a NUL byte")
		}
	}
	p.Args = slices.Clone(sp.Args)
	p.Env = slices.Clone(sp.Env)
	p.Cwd = path.Clean(sp.Cwd)
	p.UID, p.GID = sp.User.UID, sp.User.GID
	p.AdditionalGids = slices.Clone(sp.User.AdditionalGids)
	p.Umask = sp.User.Umask
	if p.Umask != nil && *p.Umask > 0o777 {
		return p, invalid("process.user.umask", "%#o has bits outside 0777", *p.Umask)
	}
	p.NoNewPrivileges = sp.NoNewPrivileges
	var err error
	if p.ApparmorProfile, err = convertAppArmorProfile(sp.ApparmorProfile); err != nil {
		return p, err
	}
	if p.Capabilities, err = convertCapabilities(sp.Capabilities); err != nil {
		return p, err
	}
	if p.Rlimits, err = convertRlimits(sp.Rlimits); err != nil {
		return p, err
	}
	if p.Scheduler, err = convertScheduler(sp.Scheduler); err != nil {
		return p, err
	}
	if p.IOPriority, err = convertIOPriority(sp.IOPriority); err != nil {
		return p, err
	}
	return p, nil
}
