package spec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var rlimitNumbers = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

func convertRlimits(in []specs.POSIXRlimit) ([]Rlimit, error) {
	var out []Rlimit
	seen := map[string]bool{}
	for i, r := range in {
		field := fmt.Sprintf("process.rlimits[%d]", i)
		n, ok := rlimitNumbers[r.Type]
		if !ok {
			return nil, invalid(field+".type", "unknown rlimit type %q", r.Type)
		}
		if seen[r.Type] {
			return nil, invalid(field+".type", "duplicate rlimit %q", r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return nil, invalid(field, "soft limit %d is above hard limit %d", r.Soft, r.Hard)
		}
		out = append(out, Rlimit{Type: r.Type, Resource: n, Soft: r.Soft, Hard: r.Hard})
	}
	return out, nil
}
