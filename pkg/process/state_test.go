package process

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestTransitions(t *testing.T) {
	all := []Status{StatusCreated, StatusRunning, StatusPaused, StatusStopped, StatusDeleted}
	const fp = "FailedPrecondition"
	want := map[op]map[Status]string{
		opStart:  {StatusCreated: "running", StatusRunning: fp, StatusPaused: fp, StatusStopped: fp, StatusDeleted: "NotFound"},
		opKill:   {StatusCreated: "created", StatusRunning: "running", StatusPaused: "paused", StatusStopped: "NotFound", StatusDeleted: "NotFound"},
		opExit:   {StatusCreated: "stopped", StatusRunning: "stopped", StatusPaused: "stopped", StatusStopped: fp, StatusDeleted: "NotFound"},
		opDelete: {StatusCreated: "deleted", StatusRunning: fp, StatusPaused: fp, StatusStopped: "deleted", StatusDeleted: "NotFound"},
		opPause:  {StatusCreated: fp, StatusRunning: "paused", StatusPaused: fp, StatusStopped: fp, StatusDeleted: "NotFound"},
		opResume: {StatusCreated: fp, StatusRunning: fp, StatusPaused: "running", StatusStopped: fp, StatusDeleted: "NotFound"},
		opUpdate: {StatusCreated: "created", StatusRunning: "running", StatusPaused: "paused", StatusStopped: fp, StatusDeleted: "NotFound"},
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
