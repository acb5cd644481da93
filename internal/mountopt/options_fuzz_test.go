package mountopt

import (
	"strings"
	"testing"
)

// FuzzParseOptions checks ParseOptions against a per-bit model: each MS_*
// bit ends as the last flag option of the table touching it says, no bit outside the
// table is ever set, and every option that is not in the table is kept, in
// order, in the data string (the options come one per line).
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"", "ro\nnosuid", "rbind\nrw", "ro\nrw",
		"index=off\nlowerdir=/a:/b\nupperdir=/u\nworkdir=/w", "nosuid,dev", "bind\nrbind\nsuid", "ro\x00", "\n"} {
		f.Add(s)
	}
	flagOpt := func(o string) (Option, bool) {
		fl, ok := Options[o]
		return fl, ok && fl.Kind == FlagOption
	}
	var table uint64
	for o := range Options {
		if fl, ok := flagOpt(o); ok {
			table |= fl.Flag
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		opts := strings.Split(in, "\n")
		flags, data := ParseOptions(opts)
		if uint64(flags)&^table != 0 {
			t.Fatalf("flags %#x outside the table's %#x", flags, table)
		}
		for bit := uint64(1); bit != 0; bit <<= 1 {
			if table&bit == 0 {
				continue
			}
			want := false
			for _, o := range opts {
				if fl, ok := flagOpt(o); ok && fl.Flag&bit != 0 {
					want = !fl.Clear
				}
			}
			if got := uint64(flags)&bit != 0; got != want {
				t.Fatalf("bit %#x = %v, want %v (options %q)", bit, got, want, opts)
			}
		}
		var rest []string
		for _, o := range opts {
			if _, ok := flagOpt(o); !ok {
				rest = append(rest, o)
			}
		}
		if want := strings.Join(rest, ","); data != want {
			t.Fatalf("data %q, want %q", data, want)
		}
	})
}
