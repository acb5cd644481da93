package integration

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
)

// kernelHasAutokill decides from the kernel version alone, not from the
// shim's own probe, so that a shim that fails to use the flags on a kernel
// that has them fails the tests instead of skipping them.
func kernelHasAutokill(t *testing.T) bool {
	t.Helper()
	ok, err := linux.KernelAtLeast(7, 1)
	if err != nil {
		t.Fatalf("kernel version: %v", err)
	}
	return ok
}

var shimInfo = sync.OnceValues(func() (*types.RuntimeInfo, error) {
	out, err := exec.Command(shimPath, "-info").Output()
	if err != nil {
		return nil, err
	}
	var info types.RuntimeInfo
	if err := proto.Unmarshal(out, &info); err != nil {
		return nil, err
	}
	return &info, nil
})

// expectNative is true when the kernel has CLONE_PIDFD_AUTOKILL; it fails
// the test if the shim then does not say it uses it.
func expectNative(t *testing.T) bool {
	t.Helper()
	native := kernelHasAutokill(t)
	if runtimeName != autokillRT {
		return false
	}
	info, err := shimInfo()
	if err != nil {
		t.Fatalf("%s -info: %v", shimPath, err)
	}
	mode := info.GetAnnotations()["io.containerd.autokill.mode"]
	if native && mode != "native" {
		t.Fatalf("kernel has CLONE_PIDFD_AUTOKILL but the shim runs in mode %q: %s", mode, info.GetAnnotations()["io.containerd.autokill.mode.reason"])
	}
	if !native && mode != "fallback" {
		t.Fatalf("kernel lacks CLONE_PIDFD_AUTOKILL but the shim reports mode %q", mode)
	}
	return native
}

// requireNative skips on kernels without the flags, and fails where the
// kernel has them but the shim does not use them.
func requireNative(t *testing.T) {
	t.Helper()
	requireAutokillRuntime(t)
	if !expectNative(t) {
		t.Skipf("needs Linux 7.1+ (CLONE_AUTOREAP, CLONE_PIDFD_AUTOKILL); this kernel runs the shim in fallback mode")
	}
}

func TestShimModeMatchesKernel(t *testing.T) {
	requireAutokillRuntime(t)
	native := expectNative(t)
	info, _ := shimInfo()
	t.Logf("kernel autokill=%v, shim: %s (%s)", native, info.GetAnnotations()["io.containerd.autokill.mode"], info.GetAnnotations()["io.containerd.autokill.mode.reason"])
	// The daemon must say the same in containerd's log.
	id := newContainerID(t)
	if r := ctrResult(t, runArgs([]string{"--rm"}, id, "true")...); r.Code != 0 {
		t.Fatalf("%s", r)
	}
	log, err := os.ReadFile(cd.logPath())
	if err != nil {
		t.Fatal(err)
	}
	want := "mode=fallback"
	if native {
		want = "mode=native"
	}
	if !strings.Contains(string(log), want) {
		t.Fatalf("containerd's log has no shim line with %s", want)
	}
}
