package mountopt

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		in    []string
		flags uintptr
		data  string
	}{
		{[]string{"ro", "nosuid"}, unix.MS_RDONLY | unix.MS_NOSUID, ""},
		{[]string{"rbind", "rw"}, unix.MS_BIND | unix.MS_REC, ""},
		{[]string{"index=off", "lowerdir=/a:/b", "upperdir=/u", "workdir=/w"}, 0, "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w"},
		{[]string{"ro", "rw"}, 0, ""},
	} {
		f, d := ParseOptions(tc.in)
		if f != tc.flags || d != tc.data {
			t.Errorf("ParseOptions(%v) = %#x %q, want %#x %q", tc.in, f, d, tc.flags, tc.data)
		}
	}
}

// TestOptionTable: the table's kinds are consistent (a recursive option is
// a MOUNT_ATTR_* the kernel takes recursively, a propagation one a single
// propagation type) and no refused option is in it.
func TestOptionTable(t *testing.T) {
	const recAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV |
		unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODIRATIME | unix.MOUNT_ATTR_NOSYMFOLLOW
	for name, o := range Options {
		switch o.Kind {
		case FlagOption:
			if o.Atime {
				t.Errorf("%s: atime mode on a flag option", name)
			}
		case PropagationOption:
			p := o.Flag &^ unix.MS_REC
			if p != unix.MS_PRIVATE && p != unix.MS_SHARED && p != unix.MS_SLAVE && p != unix.MS_UNBINDABLE {
				t.Errorf("%s: propagation %#x", name, o.Flag)
			}
			if (o.Flag&unix.MS_REC != 0) != (name[0] == 'r') {
				t.Errorf("%s: MS_REC does not match the name", name)
			}
		case RecursiveOption:
			if name[0] != 'r' {
				t.Errorf("%s: recursive option without the r prefix", name)
			}
			if o.Atime && o.Flag&^unix.MOUNT_ATTR__ATIME != 0 || !o.Atime && (o.Flag == 0 || o.Flag&^recAttrs != 0) {
				t.Errorf("%s: attribute %#x", name, o.Flag)
			}
		case IDMapOption:
			if name != "idmap" && name != "ridmap" {
				t.Errorf("%s: idmap kind", name)
			}
		default:
			t.Errorf("%s: kind %d", name, o.Kind)
		}
	}
	for name := range Refused {
		if _, ok := Options[name]; ok {
			t.Errorf("%s is both refused and in the table", name)
		}
	}
	if n := Names(); len(n) != len(Options) || !slices.IsSorted(n) {
		t.Errorf("Names() = %v", n)
	}
}
