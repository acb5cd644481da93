// Package seccomp compiles a container's linux.seccomp (checked by
// internal/spec) with libseccomp and loads it into the calling process.
// It needs cgo and libseccomp.so.2 at run time.
package seccomp

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Filter is a compiled filter, not loaded yet.
type Filter struct{ f *libseccomp.ScmpFilter }

// Compile turns s into a filter. Compiling at Create and loading later
// makes a profile libseccomp refuses (an architecture of the other byte
// order...) fail the Create, not the Start.
func Compile(s *specs.LinuxSeccomp) (*Filter, error) {
	f, err := compile(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	return &Filter{f}, nil
}

// Load loads the filter into the calling thread, into every thread with
// TSYNC (libseccomp always asks for it). It does not set no_new_privs:
// the process's noNewPrivileges decides that, and without it the caller
// needs CAP_SYS_ADMIN. The filter is in force once Load returns nil.
func (f *Filter) Load() error {
	if err := f.f.Load(); err != nil {
		return fmt.Errorf("seccomp: load the filter: %w", err)
	}
	return nil
}

// Release frees the compiled filter (a loaded one stays in force).
func (f *Filter) Release() { f.f.Release() }

func compile(s *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// libseccomp sets no_new_privs at load by default; the spec's
	// process.noNewPrivileges is the one to decide it.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("unset the no_new_privs attribute: %w", err)
	}
	for _, a := range s.Architectures {
		// libseccomp names them without the prefix, in lower case.
		arch, err := libseccomp.GetArchFromString(strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_")))
		if err != nil {
			return nil, fmt.Errorf("architecture %s: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("add architecture %s: %w", a, err)
		}
	}
	for _, fl := range s.Flags {
		if err := setFlag(f, fl); err != nil {
			return nil, err
		}
	}
	for i, sc := range s.Syscalls {
		if err := addRule(f, def, sc); err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
	}
	ok = true
	return f, nil
}

func setFlag(f *libseccomp.ScmpFilter, fl specs.LinuxSeccompFlag) error {
	var err error
	switch fl {
	case "SECCOMP_FILTER_FLAG_TSYNC":
		return nil // NewFilter asked for it already
	case specs.LinuxSeccompFlagLog:
		err = f.SetLogBit(true)
	case specs.LinuxSeccompFlagSpecAllow:
		err = f.SetSSB(true)
	case specs.LinuxSeccompFlagWaitKillableRecv:
		err = f.SetWaitKill(true)
	default:
		err = errors.New("unknown flag")
	}
	if err != nil {
		return fmt.Errorf("flag %s: %w", fl, err)
	}
	return nil
}

// SupportedFlags are the flags of spec.SeccompFlags that this libseccomp
// can set (the features document's supportedFlags), as runc reports them.
func SupportedFlags() []string {
	api, err := libseccomp.GetAPI()
	if err != nil {
		return nil
	}
	out := []string{"SECCOMP_FILTER_FLAG_TSYNC"}
	if api >= 3 {
		out = append(out, string(specs.LinuxSeccompFlagLog))
	}
	if api >= 4 {
		out = append(out, string(specs.LinuxSeccompFlagSpecAllow))
	}
	if api >= 7 {
		out = append(out, string(specs.LinuxSeccompFlagWaitKillableRecv))
	}
	return out
}

func addRule(f *libseccomp.ScmpFilter, def libseccomp.ScmpAction, sc specs.LinuxSyscall) error {
	act, err := action(sc.Action, sc.ErrnoRet)
	if err != nil {
		return fmt.Errorf("action: %w", err)
	}
	// libseccomp refuses a rule that says what the default does; it
	// changes nothing, so it is dropped (as runc does).
	if act == def {
		return nil
	}
	conds := make([]libseccomp.ScmpCondition, 0, len(sc.Args))
	perIndex := map[uint]int{}
	for j, a := range sc.Args {
		c, err := condition(a)
		if err != nil {
			return fmt.Errorf("args[%d]: %w", j, err)
		}
		conds = append(conds, c)
		perIndex[a.Index]++
	}
	// One rule ANDs its conditions, and libseccomp takes at most one
	// per argument; several on one argument are read as alternatives,
	// one rule each, as runc (and Docker's profiles) read them.
	sets := [][]libseccomp.ScmpCondition{conds}
	for _, n := range perIndex {
		if n > 1 {
			sets = sets[:0]
			for _, c := range conds {
				sets = append(sets, []libseccomp.ScmpCondition{c})
			}
			break
		}
	}
	for _, name := range sc.Names {
		call, err := libseccomp.GetSyscallFromName(name)
		if err != nil {
			// A name this libseccomp does not know (newer than it, or
			// of another architecture): skipped, as runc does.
			continue
		}
		for _, set := range sets {
			if len(set) == 0 {
				err = f.AddRule(call, act)
			} else {
				err = f.AddRuleConditional(call, act, set)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

func action(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	ret := func(def int) int16 {
		if errnoRet != nil {
			return int16(uint16(*errnoRet))
		}
		return int16(def)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(ret(int(unix.EPERM))), nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(ret(int(unix.EPERM))), nil
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("unknown action %q: %w", a, syscall.EINVAL)
}

func condition(a specs.LinuxSeccompArg) (libseccomp.ScmpCondition, error) {
	ops := map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
		specs.OpNotEqual:     libseccomp.CompareNotEqual,
		specs.OpLessThan:     libseccomp.CompareLess,
		specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
		specs.OpEqualTo:      libseccomp.CompareEqual,
		specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
		specs.OpGreaterThan:  libseccomp.CompareGreater,
		specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
	}
	op, ok := ops[a.Op]
	if !ok {
		return libseccomp.ScmpCondition{}, fmt.Errorf("unknown operator %q", a.Op)
	}
	if op == libseccomp.CompareMaskedEqual {
		// value is the mask, valueTwo what the masked argument equals.
		return libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
	}
	return libseccomp.MakeCondition(a.Index, op, a.Value)
}
