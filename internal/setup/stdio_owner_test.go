package setup

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Pipes, fifos and pty slaves are given to the process's user; /dev/null,
// regular files and other devices are not.
func TestGivenStdio(t *testing.T) {
	stat := func(f *os.File) *unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	reg, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, tc := range map[string]struct {
		f    *os.File
		want bool
	}{
		"pipe": {w, true}, "regular file": {reg, false}, "/dev/null": {null, false},
	} {
		if got := givenStdio(stat(tc.f)); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, ptmx.Fd(), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		t.Skipf("TIOCGPTPEER: %v", errno)
	}
	slave := os.NewFile(fd, "pty")
	defer slave.Close()
	if !givenStdio(stat(slave)) {
		t.Error("pty slave: not given")
	}
	if givenStdio(stat(ptmx)) {
		t.Error("ptmx (major 5) given")
	}
}
