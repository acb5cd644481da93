package linux

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
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

// TestCheckSysctlJoin: net sysctls into the caller's own network namespace
// are refused; into another one, or without net sysctls, they pass.
func TestCheckSysctlJoin(t *testing.T) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Skipf("no /proc/thread-self/ns/net: %v", err)
	}
	defer own.Close()
	j := spec.Join{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net", Flag: unix.CLONE_NEWNET}
	withNet := &spec.Plan{Sysctl: []spec.Sysctl{{Key: "net.ipv4.ip_forward", Path: "net/ipv4/ip_forward", Value: "1"}}}
	if err := CheckSysctlJoin(withNet, j, own); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("net sysctl into our own netns: %v, want InvalidArgument", err)
	}
	ipcOnly := &spec.Plan{Sysctl: []spec.Sysctl{{Key: "kernel.shmmax", Path: "kernel/shmmax", Value: "1"}}}
	if err := CheckSysctlJoin(ipcOnly, j, own); err != nil {
		t.Errorf("ipc sysctl with a joined netns: %v", err)
	}
	// Another namespace: the ipc one is a namespace file that is not our netns.
	other, err := os.Open("/proc/thread-self/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := CheckSysctlJoin(withNet, j, other); err != nil {
		t.Errorf("net sysctl into another namespace: %v", err)
	}
}
