package seccomp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const loadHelperEnv = "AUTOKILL_SECCOMP_LOAD_HELPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(loadHelperEnv); dir != "" {
		if err := loadHelper(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// loadHelper loads a filter into this (helper) process and checks what the
// kernel then does with the argument filters: conditions on two arguments
// are ANDed, two on one argument are alternatives, MASKED_EQ masks with
// value and compares with valueTwo, errnoRet is the errno returned.
func loadHelper(dir string) error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	e38, e39 := uint(38), uint(39)
	f, err := Compile(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: &e38, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0x1111, Op: specs.OpEqualTo}, {Index: 0, Value: 0x2222, Op: specs.OpEqualTo}}},
			{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: &e39, Args: []specs.LinuxSeccompArg{
				{Index: 2, Value: 0o7, ValueTwo: 0o5, Op: specs.OpMaskedEqual}}},
			{Names: []string{"fchmodat"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 0, Op: specs.OpNotEqual}, {Index: 2, Value: 0o777, Op: specs.OpEqualTo}}},
		},
	})
	if err != nil {
		return err
	}
	if err := f.Load(); err != nil {
		return err
	}
	f.Release()
	persona := func(p uintptr) error {
		_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, p, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}
	for _, c := range []struct {
		what string
		err  error
		want error
	}{
		{"personality(0x1111)", persona(0x1111), unix.ENOSYS},
		{"personality(0x2222)", persona(0x2222), unix.ENOSYS},
		{"personality(query)", persona(0xffffffff), nil},
		{"mkdirat 0755", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "a"), 0o755), unix.ENOTEMPTY},
		{"mkdirat 0700", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "b"), 0o700), nil},
		{"fchmodat 0777", unix.Fchmodat(unix.AT_FDCWD, filepath.Join(dir, "b"), 0o777, 0), unix.EPERM},
		{"fchmodat 0750", unix.Fchmodat(unix.AT_FDCWD, filepath.Join(dir, "b"), 0o750, 0), nil},
	} {
		if !errors.Is(c.err, c.want) && !(c.err == nil && c.want == nil) {
			return fmt.Errorf("%s: %v, want %v", c.what, c.err, c.want)
		}
	}
	return nil
}

// TestLoadArgs loads a filter in a helper process (a filter cannot be
// taken off again) and checks the kernel enforces it as the spec says.
func TestLoadArgs(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadHelperEnv+"="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
}
