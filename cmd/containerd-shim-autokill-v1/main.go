// Command containerd-shim-autokill-v1 is a containerd shim v2 that runs
// containers itself, with clone3 and pidfds, so they die with the shim.
package main

import (
	"os"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/setup"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/shim"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case initsync.InitArg:
			setup.Main()
		case initsync.ExecArg:
			setup.ExecMain()
		}
	}
	shim.Main()
}
