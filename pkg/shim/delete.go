package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// cleanupTimeout bounds the delete face; containerd gives it about as long.
const cleanupTimeout = 30 * time.Second

// runDelete is the delete face, run by containerd when it finds the shim of a
// container dead: it cleans what is left and prints a protobuf DeleteResponse,
// which containerd (1.6 binary.go and 2.x alike) decodes from stdout to
// publish TaskExit and TaskDelete. An error goes to stderr with exit status 1;
// containerd then logs it and keeps the bundle.
func runDelete(ctx context.Context, f flags, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()

	removeStaleSocket(ctx, f.bundle)

	exit, err := process.Cleanup(ctx, f.namespace, f.id, f.bundle)
	if err != nil {
		return err
	}
	b, err := proto.Marshal(deleteResponse(exit))
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

func deleteResponse(exit process.Exit) *taskapi.DeleteResponse {
	return &taskapi.DeleteResponse{
		Pid:        exit.Pid,
		ExitStatus: exit.Status,
		ExitedAt:   timestamppb.New(exit.At),
	}
}

// removeStaleSocket removes the socket named by <bundle>/address when no
// daemon answers on it any more. A live daemon may still serve other
// containers of its group: its socket stays. The file is only trusted as far
// as it names one of our sockets: a unix socket whose name has the form
// socketAddress gives; anything else is left alone, and said so.
func removeStaleSocket(ctx context.Context, bundle string) {
	address, err := readAddress(bundle)
	if err != nil || address == "" {
		return
	}
	path := socketPath(address)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return // the daemon removed it when it exited: nothing stale
	}
	if !isShimSocket(path) {
		log.G(ctx).WithField("address", address).Warn("delete: <bundle>/address does not name a shim socket: left alone")
		return
	}
	if canConnect(path) {
		return
	}
	_ = os.Remove(path)
}

// isShimSocket says whether path is a socket this shim could have created:
// an absolute path whose last component is a sha256 in hex (socketAddress),
// and a unix socket, not followed if it is a symlink.
func isShimSocket(path string) bool {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	base := filepath.Base(path)
	if len(base) != 2*sha256.Size {
		return false
	}
	if _, err := hex.DecodeString(base); err != nil {
		return false
	}
	st, err := os.Lstat(path)
	return err == nil && st.Mode().Type() == fs.ModeSocket
}
