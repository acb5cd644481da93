package rtopts

import (
	"fmt"
	"strings"

	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protowire"
)

// legacyCreateOptions is the type containerd 1.x's client (ctr run --uidmap,
// WithShimCgroup, WithUIDOwner, WithNoPivotRoot...) sends as task options to
// every runtime whose name does not start with io.containerd.runc: the
// linux v1 runtime's CreateOptions (runtime/linux/runctypes). containerd/api
// does not carry it, so it is read from the wire by field number.
const legacyCreateOptions = "containerd.linux.runc.CreateOptions"

func isLegacyCreateOptions(typeURL string) bool {
	return typeURL[strings.LastIndex(typeURL, "/")+1:] == legacyCreateOptions
}

// fromLegacy maps CreateOptions onto runc's Options (the same fields, other
// numbers) and its checkpoint-only fields onto Ignored.
func fromLegacy(b []byte) (*Options, error) {
	var r runcopts.Options
	var ckpt []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, legacyErr(protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var s []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			s, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, legacyErr(protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case 1:
			r.NoPivotRoot = v != 0
		case 2, 3, 4, 5:
			if v != 0 {
				ckpt = append(ckpt, [...]string{"OpenTcp", "ExternalUnixSockets", "Terminal", "FileLocks"}[num-2])
			}
		case 6:
			ckpt = append(ckpt, "EmptyNamespaces")
		case 7:
			if len(s) > 0 {
				ckpt = append(ckpt, "CgroupsMode")
			}
		case 8:
			r.NoNewKeyring = v != 0
		case 9:
			r.ShimCgroup = string(s)
		case 10:
			r.IoUid = uint32(v)
		case 11:
			r.IoGid = uint32(v)
		case 12:
			r.CriuWorkPath = string(s)
		case 13:
			r.CriuImagePath = string(s)
		}
	}
	o, err := fromRunc(&r)
	if err != nil {
		return nil, err
	}
	for _, c := range ckpt {
		o.Ignored = append(o.Ignored, Ignored{Option: c, Reason: "checkpoint/restore is not implemented"})
	}
	return o, nil
}

func legacyErr(err error) error {
	return fmt.Errorf("runtime options of type %q: %v: %w", legacyCreateOptions, err, errdefs.ErrInvalidArgument)
}
