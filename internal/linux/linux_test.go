package linux

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountErrorContext(t *testing.T) {
	err := Mount("/nonexistent-src", "/nonexistent-target", "", unix.MS_BIND, "")
	var me *MountError
	if !errors.As(err, &me) || !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EPERM) {
		t.Fatalf("Mount = %v", err)
	}
	for _, want := range []string{"/nonexistent-src", "on /nonexistent-target", "flags 0x1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestOpenat2PathError(t *testing.T) {
	_, err := Openat2(unix.AT_FDCWD, "/nonexistent", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "openat2" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Openat2 = %v", err)
	}
}

func TestRetry(t *testing.T) {
	n := 0
	err := retry(func() error {
		if n++; n < 3 {
			return unix.EINTR
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("retry: %v after %d calls", err, n)
	}
}

func TestKernelAtLeast(t *testing.T) {
	if ok, err := KernelAtLeast(5, 12); err != nil || !ok {
		t.Fatalf("KernelAtLeast(5, 12) = %v, %v on a kernel the shim runs on", ok, err)
	}
	if ok, err := KernelAtLeast(999, 0); err != nil || ok {
		t.Fatalf("KernelAtLeast(999, 0) = %v, %v", ok, err)
	}
}
