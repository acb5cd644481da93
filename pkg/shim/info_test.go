package shim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// TestRuntimeInfo decodes -info's answer the way containerd 2.x does: a
// protobuf RuntimeInfo whose Features is the OCI features JSON under the type
// URL containerd registers.
func TestRuntimeInfo(t *testing.T) {
	opts, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/x.toml"})
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "stdin")
	os.WriteFile(in, mustMarshal(t, opts), 0o600)
	out := filepath.Join(t.TempDir(), "stdout")
	stdin, _ := os.Open(in)
	defer stdin.Close()
	stdout, _ := os.Create(out)
	if err := runInfo(stdin, stdout); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	b, _ := os.ReadFile(out)

	var info types.RuntimeInfo
	if err := proto.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	mode := pidfd.Probe()
	if info.Name != RuntimeName || info.Annotations[AnnotationMode] != mode.Name() ||
		info.Annotations[AnnotationModeReason] != mode.Reason {
		t.Fatalf("info %v", &info)
	}
	if !proto.Equal(info.Options, opts) {
		t.Fatalf("options not echoed: %v", info.Options)
	}
	if info.Features.GetTypeUrl() != "types.containerd.io/opencontainers/runtime-spec/1/features/Features" {
		t.Fatalf("type url %q", info.Features.GetTypeUrl())
	}
	var f features.Features
	if err := json.Unmarshal(info.Features.GetValue(), &f); err != nil {
		t.Fatal(err)
	}
	if f.OCIVersionMin != "1.0.0" || f.OCIVersionMax == "" || f.Linux == nil {
		t.Fatalf("features %+v", f)
	}
	for _, ns := range []string{"pid", "network", "ipc", "uts", "mount", "cgroup"} {
		if !slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("namespace %s missing", ns)
		}
	}
	// "user" makes containerd's CRI run user-namespaced pods, whose app
	// containers join the sandbox's user namespace with a pid namespace of
	// their own: that shape must work before it is advertised.
	if !slices.Contains(f.Linux.Namespaces, "user") || !slices.Contains(f.MountOptions, "rro") {
		t.Error("does not claim user namespaces, or recursive read-only")
	}
	if f.Annotations[AnnotationCheckpoint] == "" || info.Annotations[AnnotationCheckpoint] == "" {
		t.Error("no checkpoint annotation")
	}
	if !slices.Contains(f.MountOptions, "idmap") || !slices.Contains(f.MountOptions, "ridmap") {
		t.Error("id-mapped binds not advertised")
	}
	if len(f.Linux.Capabilities) != 41 || f.Linux.Capabilities[40] != "CAP_CHECKPOINT_RESTORE" {
		t.Errorf("capabilities %v", f.Linux.Capabilities)
	}
	if !*f.Linux.Seccomp.Enabled || !*f.Linux.MountExtensions.IDMap.Enabled || !*f.Linux.Cgroup.V1 || !*f.Linux.Cgroup.V2 {
		t.Errorf("linux %+v", f.Linux)
	}
	if f.Annotations[AnnotationMode] != mode.Name() {
		t.Errorf("annotations %v", f.Annotations)
	}
}

func TestDeleteResponse(t *testing.T) {
	r := deleteResponse(process.Exit{Pid: 7, Status: 137, At: time.Unix(1700000000, 5)})
	if r.Pid != 7 || r.ExitStatus != 137 || !r.ExitedAt.AsTime().Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("%v", r)
	}
}

// minimalSpec is the smallest spec NewPlan accepts, edited by edit.
func minimalSpec(edit func(*specs.Spec)) *specs.Spec {
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"true"}, Cwd: "/"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}},
	}
	if edit != nil {
		edit(s)
	}
	return s
}

// mountAccepted says whether NewPlan takes option o on a bind mount (or,
// for options a bind cannot carry, on a tmpfs), and that it is interpreted
// by the runtime rather than handed to the filesystem as data.
func mountAccepted(o string) error {
	if _, err := spec.NewPlan("/bundle", minimalSpec(nil)); err != nil {
		return err
	}
	if o == "idmap" || o == "ridmap" {
		// Only on a bind of a user-namespaced container, with mappings.
		ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		m := specs.Mount{Destination: "/x", Type: "bind", Source: "/src", Options: []string{"rbind", o}}
		_, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) {
			s.Mounts = []specs.Mount{m}
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings, s.Linux.GIDMappings = ids, ids
		}))
		return err
	}
	mo, err := spec.ParseMountOptions([]string{o})
	if err != nil {
		return err
	}
	if mo.Data != "" {
		return errors.New("passed to the filesystem as data, not interpreted")
	}
	m := specs.Mount{Destination: "/x", Type: "bind", Source: "/src", Options: []string{"rbind", o}}
	_, err = spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) { s.Mounts = []specs.Mount{m} }))
	if err != nil && (o == "bind" || o == "rbind") {
		return err
	}
	if err != nil {
		m = specs.Mount{Destination: "/x", Type: "tmpfs", Source: "tmpfs", Options: []string{o}}
		_, err = spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) { s.Mounts = []specs.Mount{m} }))
	}
	return err
}

// TestFeaturesMatchValidation: the features document advertises exactly
// what spec validation accepts. Every advertised mount option, namespace and
// capability passes NewPlan; every option, namespace and capability runc or
// the runtime spec knows that NewPlan accepts is advertised, and what it
// refuses is not.
func TestFeaturesMatchValidation(t *testing.T) {
	f := ociFeatures(pidfd.Probe())
	for _, o := range f.MountOptions {
		if err := mountAccepted(o); err != nil {
			t.Errorf("advertised mount option %q is refused: %v", o, err)
		}
	}
	// runc 1.2's `runc features` mountOptions, plus what mount(8) knows
	// that a spec might carry.
	known := []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
		"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec",
		"noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
		"private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount", "rexec",
		"rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime",
		"rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
		"rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent",
		"slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
		"idmap", "ridmap", "user", "nouser", "owner", "auto", "noauto", "_netdev"}
	for _, o := range known {
		accepted := mountAccepted(o) == nil
		if advertised := slices.Contains(f.MountOptions, o); accepted != advertised {
			t.Errorf("mount option %q: accepted %v, advertised %v", o, accepted, advertised)
		}
	}
	for _, o := range []string{"mand", "nomand", "remount", "nosymfollow", "rro"} {
		if want := o == "nosymfollow" || o == "rro"; slices.Contains(f.MountOptions, o) != want {
			t.Errorf("mount option %q advertised: %v, want %v", o, !want, want)
		}
	}

	nsAccepted := func(typ string) error {
		_, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) {
			if typ != string(specs.MountNamespace) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.LinuxNamespaceType(typ)})
			}
			if typ == string(specs.UserNamespace) {
				m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
				s.Linux.UIDMappings, s.Linux.GIDMappings = m, m
			}
		}))
		return err
	}
	for _, typ := range []string{"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"} {
		err := nsAccepted(typ)
		if advertised := slices.Contains(f.Linux.Namespaces, typ); (err == nil) != advertised {
			t.Errorf("namespace %q: NewPlan error %v, advertised %v", typ, err, advertised)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("namespace %q refused without InvalidArgument: %v", typ, err)
		}
	}
	for _, typ := range f.Linux.Namespaces {
		if err := nsAccepted(typ); err != nil {
			t.Errorf("advertised namespace %q refused: %v", typ, err)
		}
	}

	if _, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: f.Linux.Capabilities, Permitted: f.Linux.Capabilities,
			Effective: f.Linux.Capabilities, Inheritable: f.Linux.Capabilities, Ambient: f.Linux.Capabilities}
	})); err != nil {
		t.Errorf("advertised capabilities refused: %v", err)
	}
	// AppArmor: advertised exactly when a valid profile gets past Create's
	// checks on this host; refused, it is FailedPrecondition.
	plan, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) { s.Process.ApparmorProfile = "autokill-test" }))
	if err != nil {
		t.Fatalf("a valid apparmorProfile refused by NewPlan: %v", err)
	}
	err = spec.CheckAppArmor(&plan.Process, process.AppArmorEnabled())
	if advertised := *f.Linux.Apparmor.Enabled; (err == nil) != advertised {
		t.Errorf("apparmorProfile: host check %v, advertised %v", err, advertised)
	}
	if err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("apparmorProfile refused without FailedPrecondition: %v", err)
	}
	host, statErr := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if want := statErr == nil && strings.TrimSpace(string(host)) == "Y"; *f.Linux.Apparmor.Enabled != want && statErr == nil {
		t.Errorf("Apparmor.Enabled %v, the host's parameter says %q", *f.Linux.Apparmor.Enabled, host)
	}

	// One past the last one advertised, and a name Linux does not have.
	for _, c := range []string{"CAP_LAST_PLUS_ONE", "CAP_FLY"} {
		if _, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{c}}
		})); err == nil {
			t.Errorf("capability %q accepted but not advertised", c)
		}
	}

	seccompFeaturesMatchValidation(t, f.Linux.Seccomp)
}

// seccompFeaturesMatchValidation: every advertised seccomp action,
// operator, architecture and flag passes NewPlan, every name of the runtime
// spec that is not advertised is refused with InvalidArgument, and the
// supported flags are known ones.
func seccompFeaturesMatchValidation(t *testing.T, f *features.Seccomp) {
	t.Helper()
	accepted := func(edit func(*specs.LinuxSeccomp)) error {
		sc := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		edit(sc)
		_, err := spec.NewPlan("/bundle", minimalSpec(func(s *specs.Spec) { s.Linux.Seccomp = sc }))
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("seccomp refused without InvalidArgument: %v", err)
		}
		return err
	}
	check := func(kind string, advertised, known []string, edit func(string) func(*specs.LinuxSeccomp)) {
		for _, n := range append(slices.Clone(known), advertised...) {
			err := accepted(edit(n))
			if (err == nil) != slices.Contains(advertised, n) {
				t.Errorf("seccomp %s %q: NewPlan error %v, advertised %v", kind, n, err, slices.Contains(advertised, n))
			}
		}
	}
	check("action", f.Actions, []string{"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
		"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_NONE"},
		func(a string) func(*specs.LinuxSeccomp) {
			return func(sc *specs.LinuxSeccomp) {
				sc.Syscalls = []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.LinuxSeccompAction(a)}}
			}
		})
	check("operator", f.Operators, []string{"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
		"SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_SOMETIMES"},
		func(o string) func(*specs.LinuxSeccomp) {
			return func(sc *specs.LinuxSeccomp) {
				sc.Syscalls = []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno,
					Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o700, Op: specs.LinuxSeccompOperator(o)}}}}
			}
		})
	check("architecture", f.Archs, []string{"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
		"SCMP_ARCH_RISCV64", "SCMP_ARCH_S390X", "SCMP_ARCH_Z80"},
		func(a string) func(*specs.LinuxSeccomp) {
			return func(sc *specs.LinuxSeccomp) { sc.Architectures = []specs.Arch{specs.Arch(a)} }
		})
	check("flag", f.KnownFlags, []string{"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
		"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_NEW_LISTENER"},
		func(fl string) func(*specs.LinuxSeccomp) {
			return func(sc *specs.LinuxSeccomp) { sc.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlag(fl)} }
		})
	if len(f.SupportedFlags) == 0 || f.SupportedFlags[0] != "SECCOMP_FILTER_FLAG_TSYNC" {
		t.Errorf("supported seccomp flags %v", f.SupportedFlags)
	}
	for _, fl := range f.SupportedFlags {
		if !slices.Contains(f.KnownFlags, fl) {
			t.Errorf("supported seccomp flag %q is not a known one", fl)
		}
	}
}
