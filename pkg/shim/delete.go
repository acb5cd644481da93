package shim

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

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

	removeStaleSocket(f.bundle)

	exit, err := process.Cleanup(ctx, f.id, f.bundle)
	if err != nil {
		return fmt.Errorf("cleanup %s: %w", f.id, err)
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
// containers of its group: its socket stays.
func removeStaleSocket(bundle string) {
	address, err := readAddress(bundle)
	if err != nil || address == "" {
		return
	}
	path := socketPath(address)
	if canConnect(path) {
		return
	}
	_ = os.Remove(path)
}
