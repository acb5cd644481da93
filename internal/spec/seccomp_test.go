package spec

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSeccompPlan(t *testing.T) {
	s := fixture(t, "ctr-run-containerd-2.4.json")
	ret := uint(38)
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction:   specs.ActAllow,
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Flags:           []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, "SECCOMP_FILTER_FLAG_TSYNC"},
		DefaultErrnoRet: nil,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat", "no_such_syscall_yet"}, Action: specs.ActErrno, ErrnoRet: &ret},
			{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0xffffffff, Op: specs.OpNotEqual},
				{Index: 0, Value: 0xff, ValueTwo: 8, Op: specs.OpMaskedEqual},
			}},
			{Names: []string{"kill"}, Action: specs.ActLog},
		},
	}
	p, err := NewPlan(bundle, s)
	if err != nil {
		t.Fatal(err)
	}
	if p.Seccomp == nil || p.Seccomp == s.Linux.Seccomp || len(p.Seccomp.Syscalls) != 3 || *p.Seccomp.Syscalls[0].ErrnoRet != 38 {
		t.Fatalf("plan seccomp %+v", p.Seccomp)
	}
	s.Linux.Seccomp = nil
	if p, err = NewPlan(bundle, s); err != nil || p.Seccomp != nil {
		t.Fatalf("no seccomp: %v %+v", err, p)
	}
}

func TestSeccompInvalid(t *testing.T) {
	ret, big := uint(1), uint(4096)
	allowMkdir := func(a specs.LinuxSeccompAction, errnoRet *uint, args ...specs.LinuxSeccompArg) []specs.LinuxSyscall {
		return []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: a, ErrnoRet: errnoRet, Args: args}}
	}
	for _, tc := range []struct {
		name string
		sc   specs.LinuxSeccomp
		want string
	}{
		{"no default", specs.LinuxSeccomp{}, "linux.seccomp.defaultAction: missing"},
		{"bad default", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, `linux.seccomp.defaultAction: unknown action "SCMP_ACT_MAYBE"`},
		{"notify default", specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "SCMP_ACT_NOTIFY is not implemented"},
		{"default errnoRet on allow", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, DefaultErrnoRet: &ret}, "linux.seccomp.defaultErrnoRet: only SCMP_ACT_ERRNO"},
		{"default errnoRet too big", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &big}, "linux.seccomp.defaultErrnoRet: 4096"},
		{"bad arch", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64, "SCMP_ARCH_Z80"}}, `linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_Z80"`},
		{"bad flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}}, `linux.seccomp.flags[0]: unknown flag`},
		{"listener", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/agent.sock"}, "linux.seccomp.listenerPath: not implemented"},
		{"bad action", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir("SCMP_ACT_DENY", nil)}, `linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_DENY"`},
		{"notify action", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActNotify, nil)}, "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY"},
		{"no action", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir("", nil)}, "linux.seccomp.syscalls[0].action: missing"},
		{"errnoRet on kill", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActKill, &ret)}, "linux.seccomp.syscalls[0].errnoRet: only"},
		{"errnoRet too big", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActErrno, &big)}, "linux.seccomp.syscalls[0].errnoRet: 4096"},
		{"bad op", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActErrno, nil, specs.LinuxSeccompArg{Op: "SCMP_CMP_ABOUT"})}, `linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_ABOUT"`},
		{"no op", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActErrno, nil, specs.LinuxSeccompArg{})}, `linux.seccomp.syscalls[0].args[0].op: unknown operator ""`},
		{"bad index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: allowMkdir(specs.ActErrno, nil, specs.LinuxSeccompArg{Index: 6, Op: specs.OpEqualTo})}, "linux.seccomp.syscalls[0].args[0].index: 6"},
		{"no names", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Action: specs.ActErrno}}}, "linux.seccomp.syscalls[0].names: empty"},
		{"empty name", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read", ""}, Action: specs.ActErrno}}}, "linux.seccomp.syscalls[0].names[1]: empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t, "ctr-run-containerd-2.4.json")
			sc := tc.sc
			s.Linux.Seccomp = &sc
			p, err := NewPlan(bundle, s)
			if err == nil {
				t.Fatalf("NewPlan accepted %+v: %+v", tc.sc, p.Seccomp)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
}
