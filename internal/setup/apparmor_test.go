package setup

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
)

// TestAppArmorAttr: the handle names the attr file of the calling thread
// in a private procfs (attr/apparmor/exec where the kernel has it), and a
// write of a profile that cannot be entered fails, naming the field: no
// LSM takes it without AppArmor (EINVAL), no such profile with it (ENOENT,
// FailedPrecondition). Either way the thread's next execve is unchanged.
func TestAppArmorAttr(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a private procfs (fsopen) needs root")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a, err := openAppArmorAttr()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	want := "exec"
	if _, err := os.Stat("/proc/thread-self/attr/apparmor"); err == nil {
		want = "apparmor/exec"
	}
	if a.name != want {
		t.Errorf("attr file %q, want %q", a.name, want)
	}
	err = a.changeOnExec("autokill-unit-test-never-loaded")
	if err == nil || !strings.Contains(err.Error(), `process.apparmorProfile "autokill-unit-test-never-loaded"`) {
		t.Fatalf("change_onexec to a profile that is not loaded: %v", err)
	}
	if linux.AppArmorEnabled() && !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("with AppArmor on: %v, want FailedPrecondition", err)
	}
	t.Logf("AppArmor enabled %v: %v", linux.AppArmorEnabled(), err)
}
