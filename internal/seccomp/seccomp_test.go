package seccomp

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// TestCompileAccepted: whatever internal/spec accepts (and -info
// advertises) compiles with this libseccomp, so a valid spec does not fail
// only at the load, in the container.
func TestCompileAccepted(t *testing.T) {
	ret := uint(38)
	for _, a := range spec.SeccompActions() {
		sc := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdirat"}, Action: specs.LinuxSeccompAction(a)}}}
		if a == string(specs.ActErrno) || a == string(specs.ActTrace) {
			sc.Syscalls[0].ErrnoRet = &ret
		}
		if f, err := compile(sc); err != nil {
			t.Errorf("action %s: %v", a, err)
		} else {
			f.Release()
		}
	}
	for _, op := range spec.SeccompOperators() {
		sc := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"personality"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xff, ValueTwo: 8, Op: specs.LinuxSeccompOperator(op)}, {Index: 1, Value: 1, Op: specs.OpEqualTo}}}}}
		if f, err := compile(sc); err != nil {
			t.Errorf("operator %s: %v", op, err)
		} else {
			f.Release()
		}
	}
	// One at a time: a filter cannot mix byte orders, and so the other
	// byte order's architectures fail Compile (at Create, as with runc).
	other := map[string]bool{}
	for _, a := range []string{"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
		"SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64"} {
		other[a] = true // big-endian
	}
	native, _ := libseccomp.GetNativeArch()
	for _, a := range spec.SeccompArchs() {
		f, err := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.Arch(a)},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "write", "not_a_syscall"}, Action: specs.ActAllow}}})
		if other[a] == littleEndian(native) {
			if err == nil {
				t.Errorf("architecture %s mixed into a %s filter", a, native)
				f.Release()
			}
			continue
		}
		if err != nil {
			t.Errorf("architecture %s: %v", a, err)
			continue
		}
		f.Release()
	}
	for _, fl := range SupportedFlags() {
		f, err := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlag(fl)}})
		if err != nil {
			t.Errorf("supported flag %s: %v", fl, err)
			continue
		}
		f.Release()
	}
}

func littleEndian(a libseccomp.ScmpArch) bool {
	switch a {
	case libseccomp.ArchMIPS, libseccomp.ArchMIPS64, libseccomp.ArchMIPS64N32, libseccomp.ArchPPC, libseccomp.ArchPPC64,
		libseccomp.ArchS390, libseccomp.ArchS390X, libseccomp.ArchPARISC, libseccomp.ArchPARISC64:
		return false
	}
	return true
}
