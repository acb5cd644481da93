package setup

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
)

// TestConsoleTarget: the bind target of /dev/console is never reached
// through a symlink the image planted there, and a missing entry is made.
func TestConsoleTarget(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dev, victim string)
	}{
		{"missing", func(t *testing.T, dev, victim string) {}},
		{"symlink to a host-like file", func(t *testing.T, dev, victim string) {
			if err := os.Symlink(victim, filepath.Join(dev, "console")); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink", func(t *testing.T, dev, victim string) {
			if err := os.Symlink(filepath.Join(dev, "nowhere"), filepath.Join(dev, "console")); err != nil {
				t.Fatal(err)
			}
		}},
		{"regular file", func(t *testing.T, dev, victim string) {
			if err := os.WriteFile(filepath.Join(dev, "console"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dev := filepath.Join(dir, "dev")
			victim := filepath.Join(dir, "victim")
			if err := os.Mkdir(dev, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dev, victim)
			d, err := os.Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			f, err := consoleTarget(d)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, err := linux.Fstat(f)
			if err != nil {
				t.Fatal(err)
			}
			var want unix.Stat_t
			if err := unix.Lstat(filepath.Join(dev, "console"), &want); err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != want.Ino || st.Dev != want.Dev {
				t.Errorf("target mode %#o ino %d, want the regular file dev/console (ino %d)", st.Mode, st.Ino, want.Ino)
			}
			if b, _ := os.ReadFile(victim); string(b) != "keep" {
				t.Errorf("victim changed: %q", b)
			}
		})
	}
}
