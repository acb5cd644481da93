package process

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestTransitions(t *testing.T) {
	all := []Status{StatusCreated, StatusRunning, StatusStopped, StatusDeleted}
	want := map[op]map[Status]string{
		opStart:  {StatusCreated: "running", StatusRunning: "FailedPrecondition", StatusStopped: "FailedPrecondition", StatusDeleted: "NotFound"},
		opKill:   {StatusCreated: "created", StatusRunning: "running", StatusStopped: "NotFound", StatusDeleted: "NotFound"},
		opExit:   {StatusCreated: "stopped", StatusRunning: "stopped", StatusStopped: "FailedPrecondition", StatusDeleted: "NotFound"},
		opDelete: {StatusCreated: "deleted", StatusRunning: "FailedPrecondition", StatusStopped: "deleted", StatusDeleted: "NotFound"},
	}
	for o, row := range want {
		for _, s := range all {
			to, err := next(o, s)
			got := string(to)
			switch {
			case errdefs.IsNotFound(err):
				got = "NotFound"
			case errdefs.IsFailedPrecondition(err):
				got = "FailedPrecondition"
			case err != nil:
				got = "error: " + err.Error()
			}
			if got != row[s] {
				t.Errorf("%s from %s = %s, want %s", o, s, got, row[s])
			}
		}
	}
}
