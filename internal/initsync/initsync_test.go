package initsync

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
)

func TestProtocol(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	type plan struct{ Hostname string }
	go func() {
		var p plan
		if err := child.RecvPlan(&p); err != nil || p.Hostname != "box" {
			child.Fail(fmt.Errorf("bad plan %+v %v", p, err))
			return
		}
		if err := child.RecvJoined(); err != nil {
			child.Fail(err)
			return
		}
		child.Ready()
		if child.RecvStart() != nil {
			return
		}
		child.Close() // what a successful exec looks like
	}()
	if err := parent.SendPlan(plan{Hostname: "box"}); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendJoined(); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvReady(); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendStart(); err != nil {
		t.Fatal(err)
	}
	if err := parent.RecvExec(); err != nil {
		t.Fatalf("exec: %v", err)
	}
}

func TestFailCarriesCode(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	child.Fail(fmt.Errorf("mount /evil: %w", errdefs.ErrInvalidArgument))
	err = parent.RecvReady()
	var ce *ChildError
	if !errors.As(err, &ce) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v (%T), want an InvalidArgument ChildError", err, err)
	}
}

func TestEOFBeforeReady(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Close()
	if err := parent.RecvReady(); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

// A setup face that fails before it reads Joined exits with that message
// unread; its Fail must still reach the daemon (not ECONNRESET).
func TestFailAfterUnreadMessage(t *testing.T) {
	parent, child, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Fail(fmt.Errorf("mount /evil: %w", errdefs.ErrInvalidArgument))
	if err := parent.SendJoined(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	if err := parent.RecvReady(); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v, want the child's InvalidArgument failure", err)
	}
}
