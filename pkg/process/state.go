package process

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// op is something that moves a container from one Status to another.
type op string

const (
	opStart  op = "start"
	opKill   op = "kill"
	opExit   op = "exit" // the init exited; not a request
	opDelete op = "delete"
	// cgfeat.go
	opPause  op = "pause"
	opResume op = "resume"
	opUpdate op = "update"
)

// transitions is the whole state machine: for each op, the states it may
// start from and where it leads. Kill leaves the state alone; Delete of a
// created container first kills the waiting init (which exits, then deletes).
var transitions = map[op]map[Status]Status{
	opStart:  {StatusCreated: StatusRunning},
	opKill:   {StatusCreated: StatusCreated, StatusRunning: StatusRunning, StatusPaused: StatusPaused},
	opExit:   {StatusCreated: StatusStopped, StatusRunning: StatusStopped, StatusPaused: StatusStopped},
	opDelete: {StatusCreated: StatusDeleted, StatusStopped: StatusDeleted},
	// A paused container is not deleted (runc refuses too): kill it first.
	opPause:  {StatusRunning: StatusPaused},
	opResume: {StatusPaused: StatusRunning},
	opUpdate: {StatusCreated: StatusCreated, StatusRunning: StatusRunning, StatusPaused: StatusPaused},
}

// next checks op against the current state. A container that has no process
// left answers NotFound, as containerd's runc shim does for kill after exit;
// any other wrong state is FailedPrecondition.
func next(o op, s Status) (Status, error) {
	if to, ok := transitions[o][s]; ok {
		return to, nil
	}
	if s == StatusDeleted || (o == opKill && s == StatusStopped) {
		return s, fmt.Errorf("%s: container is %s: %w", o, s, errdefs.ErrNotFound)
	}
	return s, fmt.Errorf("%s: container is %s: %w", o, s, errdefs.ErrFailedPrecondition)
}
