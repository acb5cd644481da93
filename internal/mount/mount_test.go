package mount

import (
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
