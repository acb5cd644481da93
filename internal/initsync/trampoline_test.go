package initsync

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// TestTrampolineFailureParses: the clone3 trampoline (C, pkg/pidfd's
// spawn_linux.c) reports its failures on this socket in the fail format,
// written by hand before any Go runs in the child. The daemon's end must
// read one as the child's error, not as a protocol violation.
func TestTrampolineFailureParses(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	// execveat of a directory fails with EACCES, the trampoline's last step.
	dir, err := os.OpenFile("/", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	p, err := pidfd.Spawn(&pidfd.SpawnAttr{Exe: dir, Args: []string{"dir"}, Stdio: [3]*os.File{null, null, null}, Sync: child.File()})
	child.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = parent.RecvReady()
	var ce *ChildError
	if !errors.As(err, &ce) || ce.Msg != "clone3 child: execveat: errno 13" || !errdefs.IsUnknown(err) {
		t.Fatalf("RecvReady = %#v, want the trampoline's execveat failure as a ChildError", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := p.Wait(ctx); err != nil || e.Status != 127 {
		t.Fatalf("trampoline exit %+v, %v; want status 127", e, err)
	}
}
