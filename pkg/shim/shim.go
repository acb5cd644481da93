// Package shim speaks containerd's shim v2 protocol: the start, delete, -info
// and -v faces, the daemon's bootstrap, the ttrpc task service and events.
//
// The handshake is implemented here on containerd/api and ttrpc rather than
// with containerd's pkg/shim, because that package from 2.3 on answers `start`
// in a form containerd 1.x cannot read. One binary serves every containerd
// from 1.6 to 2.4:
//
//	containerd                       shim `start`                       shim daemon
//	   │ exec start (cwd = bundle) ─────▶│ read stdin (BootstrapParams?)
//	   │                                 │ group id, socket address
//	   │                                 │ listen ── exec self, fd 3 ───────▶│ open <bundle>/log
//	   │                                 │ write <bundle>/address            │ serve ttrpc on fd 3
//	   │◀──── protobuf | JSON | plain ───│ exit                              │
//	   │ ttrpc task.v2 ─────────────────────────────────────────────────────▶│
//	   │◀──────────────────────────────────────── events.Forward (TTRPC_ADDRESS)
package shim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
)

// RuntimeName is the runtime type containerd knows the shim by.
const RuntimeName = "io.containerd.autokill.v1"

// Annotations of RuntimeInfo (and of the OCI features document) that tell
// which containment mode the shim uses on this kernel, and why.
const (
	AnnotationMode       = "io.containerd.autokill.mode"
	AnnotationModeReason = "io.containerd.autokill.mode.reason"
)

// Version and Revision are set at build time with
// -ldflags "-X github.com/autokill/containerd-shim-autokill-v1/pkg/shim.Version=..."; when
// empty they come from the binary's build information.
var (
	Version  string
	Revision string
)

// flags are the command line containerd gives every face of the shim.
type flags struct {
	namespace     string
	address       string // containerd's gRPC address
	publishBinary string
	id            string
	bundle        string
	socket        string // daemon: serve this path instead of fd 3
	debug         bool
	version       bool
	info          bool
	action        string // "start", "delete" or "" (daemon)
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet(filepath.Base(os.Args[0]), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.namespace, "namespace", "", "namespace that owns the shim")
	fs.StringVar(&f.address, "address", "", "grpc address back to main containerd")
	fs.StringVar(&f.publishBinary, "publish-binary", "", "containerd binary (unused: events go to TTRPC_ADDRESS)")
	fs.StringVar(&f.id, "id", "", "id of the task")
	fs.StringVar(&f.bundle, "bundle", "", "path to the bundle if not the working directory")
	fs.StringVar(&f.socket, "socket", "", "socket path to serve (daemon; default: the listener on fd 3)")
	fs.BoolVar(&f.debug, "debug", false, "enable debug output in logs")
	fs.BoolVar(&f.version, "v", false, "show the shim version and exit")
	fs.BoolVar(&f.version, "version", false, "show the shim version and exit")
	fs.BoolVar(&f.info, "info", false, "print the runtime info protobuf to stdout and exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.action = fs.Arg(0)
	if f.bundle == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return f, err
		}
		f.bundle = cwd
	}
	return f, nil
}

// Main runs the face of the shim that os.Args asks for. It never returns.
func Main() {
	f, err := parseFlags(os.Args[1:])
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	switch {
	case f.version:
		printVersion(os.Stdout)
		os.Exit(0)
	case f.info:
		if err := runInfo(os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		os.Exit(0)
	}
	if f.namespace == "" {
		fail(fmt.Errorf("shim namespace cannot be empty"))
	}
	switch f.action {
	case "start":
		err = runStart(ctx, f, os.Stdin, os.Stdout)
	case "delete":
		err = runDelete(ctx, f, os.Stdout)
	case "":
		err = runDaemon(ctx, f)
	default:
		err = fmt.Errorf("unknown action %q", f.action)
	}
	if err != nil {
		fail(err)
	}
	os.Exit(0)
}

// fail reports err the way containerd shows it: on stderr, exit status 1.
func fail(err error) {
	fmt.Fprintf(os.Stderr, "%s: %s", RuntimeName, err)
	os.Exit(1)
}

// versionInfo returns the version and revision, from -ldflags or the build info.
func versionInfo() (version, revision string) {
	version, revision = Version, Revision
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, revision
	}
	if version == "" {
		version = bi.Main.Version
	}
	if revision == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	return version, revision
}

func printVersion(w io.Writer) {
	version, revision := versionInfo()
	fmt.Fprintf(w, "%s:\n", filepath.Base(os.Args[0]))
	fmt.Fprintln(w, "  Version: ", version)
	fmt.Fprintln(w, "  Revision:", revision)
	fmt.Fprintln(w, "  Go version:", runtime.Version())
	fmt.Fprintln(w)
}
