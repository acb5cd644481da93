package shim

import (
	"context"
	"sync"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/internal/rtopts"
)

// ignoredWarned keeps the warning for an option that cannot apply to one per
// daemon and option: a pod's containers all carry the same options.
var ignoredWarned sync.Map

// createOptions decodes a Create request's runtime options (internal/rtopts)
// and logs, once per daemon each, the options that mean nothing here: to
// the shim log, which containerd copies into its own.
func createOptions(ctx context.Context, a typeurl.Any) (*rtopts.Options, error) {
	o, err := rtopts.Decode(a)
	if err != nil {
		return nil, err
	}
	for _, i := range o.Ignored {
		if _, seen := ignoredWarned.LoadOrStore(i.Option, true); !seen {
			log.G(ctx).WithField("option", i.Option).Warnf("runtime option %s is ignored: %s", i.Option, i.Reason)
		}
	}
	return o, nil
}

// startShimCgroup is the ShimCgroup of the runtime options containerd gave
// the start face: the first Bootstrap extension that decodes (2.3+), or the
// Any on stdin (1.6-2.2). Options that do not decode give "": Create decodes
// them again and refuses them with the right code, where the start face could
// only fail containerd's start with an error containerd rewraps.
func startShimCgroup(stdin []byte, params *bootstrap.BootstrapParams) string {
	var anys []*anypb.Any
	if params != nil {
		for _, e := range params.GetExtensions() {
			anys = append(anys, e.GetValue())
		}
	} else if len(stdin) > 0 {
		var a anypb.Any
		if proto.Unmarshal(stdin, &a) == nil {
			anys = append(anys, &a)
		}
	}
	for _, a := range anys {
		if a == nil {
			continue
		}
		if o, err := rtopts.Decode(a); err == nil {
			return o.ShimCgroup
		}
	}
	return ""
}
