package spec

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The seccomp names NewPlan accepts: the OCI features document advertises
// exactly these (SeccompActions...), and internal/seccomp maps each to
// libseccomp. SCMP_ACT_NOTIFY is refused (convertSeccomp): the
// listenerPath agent protocol is not implemented.
var (
	seccompActions = []specs.LinuxSeccompAction{
		specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
		specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog,
	}
	// The architectures of libseccomp 2.5 (Debian 12's): a newer name
	// (SCMP_ARCH_LOONGARCH64...) would pass here and fail at the load.
	seccompArchs = []specs.Arch{
		specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
		specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
		specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
		specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
		specs.ArchPARISC64, specs.ArchRISCV64,
	}
	seccompOps = []specs.LinuxSeccompOperator{
		specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
	}
	seccompFlags = []specs.LinuxSeccompFlag{
		specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow,
		specs.LinuxSeccompFlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_TSYNC",
	}
)

// seccompMaxArgs is the number of syscall arguments a filter sees.
const seccompMaxArgs = 6

// maxErrno is the largest errno the kernel returns from a filter
// (MAX_ERRNO): a larger SECCOMP_RET_ERRNO datum is clamped to it.
const maxErrno = 4095

func names[T ~string](list []T) []string {
	out := make([]string, len(list))
	for i, v := range list {
		out[i] = string(v)
	}
	return out
}

// SeccompActions, SeccompArchs, SeccompOperators and SeccompFlags list the
// names NewPlan accepts in linux.seccomp.
func SeccompActions() []string   { return names(seccompActions) }
func SeccompArchs() []string     { return names(seccompArchs) }
func SeccompOperators() []string { return names(seccompOps) }
func SeccompFlags() []string     { return names(seccompFlags) }

// convertSeccomp checks linux.seccomp and returns a copy the setup face
// compiles (internal/seccomp): everything the load could refuse for the
// spec's sake is refused here, at Create, before anything runs. A syscall
// name is not checked: libseccomp may not know a new one, and the load
// skips it, as runc does.
func convertSeccomp(s *specs.LinuxSeccomp) (*specs.LinuxSeccomp, error) {
	if s == nil {
		return nil, nil
	}
	const field = "linux.seccomp"
	if err := checkSeccompAction(field+".defaultAction", s.DefaultAction, s.DefaultErrnoRet, field+".defaultErrnoRet"); err != nil {
		return nil, err
	}
	for i, a := range s.Architectures {
		if !slices.Contains(seccompArchs, a) {
			return nil, invalid(fmt.Sprintf("%s.architectures[%d]", field, i), "unknown architecture %q", a)
		}
	}
	for i, f := range s.Flags {
		if !slices.Contains(seccompFlags, f) {
			return nil, invalid(fmt.Sprintf("%s.flags[%d]", field, i), "unknown flag %q", f)
		}
	}
	if s.ListenerPath != "" || s.ListenerMetadata != "" {
		return nil, invalid(field+".listenerPath", "not implemented by %s: no SCMP_ACT_NOTIFY agent protocol", RuntimeName)
	}
	for i, sc := range s.Syscalls {
		f := fmt.Sprintf("%s.syscalls[%d]", field, i)
		if len(sc.Names) == 0 {
			return nil, invalid(f+".names", "empty")
		}
		for j, n := range sc.Names {
			if n == "" {
				return nil, invalid(fmt.Sprintf("%s.names[%d]", f, j), "empty syscall name")
			}
		}
		if err := checkSeccompAction(f+".action", sc.Action, sc.ErrnoRet, f+".errnoRet"); err != nil {
			return nil, err
		}
		for j, a := range sc.Args {
			af := fmt.Sprintf("%s.args[%d]", f, j)
			if a.Index >= seccompMaxArgs {
				return nil, invalid(af+".index", "%d: a syscall has %d arguments", a.Index, seccompMaxArgs)
			}
			if !slices.Contains(seccompOps, a.Op) {
				return nil, invalid(af+".op", "unknown operator %q", a.Op)
			}
		}
	}
	c := *s
	return &c, nil
}

// checkSeccompAction refuses an unknown action, SCMP_ACT_NOTIFY, and an
// errnoRet on an action that returns no errno (runc would drop it: a value
// the user set and the kernel never sees is a mistake to report).
func checkSeccompAction(field string, a specs.LinuxSeccompAction, errnoRet *uint, errnoField string) error {
	switch {
	case a == "":
		return invalid(field, "missing")
	case a == specs.ActNotify:
		return invalid(field, "SCMP_ACT_NOTIFY is not implemented by %s (no listenerPath agent protocol)", RuntimeName)
	case !slices.Contains(seccompActions, a):
		return invalid(field, "unknown action %q", a)
	}
	if errnoRet == nil {
		return nil
	}
	switch a {
	case specs.ActErrno:
		if *errnoRet > maxErrno {
			return invalid(errnoField, "%d is above the largest errno, %d", *errnoRet, maxErrno)
		}
	case specs.ActTrace:
		if *errnoRet > 0xffff {
			return invalid(errnoField, "%d does not fit the 16 bits of SECCOMP_RET_DATA", *errnoRet)
		}
	default:
		return invalid(errnoField, "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errnoRet, not %s", a)
	}
	return nil
}
