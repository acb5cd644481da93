package pidfd

import (
	"fmt"
	"runtime/debug"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// ownedFD is a pidfd this package owns: the one clone3 returned, in native
// mode the autokill pidfd, whose last close kills the process. It is a bare
// fd with no finalizer, so only an explicit Close ends it: an os.File that
// became unreachable by mistake would have the garbage collector kill a
// container. A leak is the safe failure (the process dies with the daemon);
// tests find leaks with the tracer below, as cilium/ebpf traces its fds.
type ownedFD struct {
	mu  sync.Mutex
	raw int // -1 once closed
}

func newOwnedFD(raw int) *ownedFD {
	traceOpen(raw)
	return &ownedFD{raw: raw}
}

// Close closes the fd once; later calls do nothing.
func (o *ownedFD) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.raw < 0 {
		return nil
	}
	traceClose(o.raw)
	err := unix.Close(o.raw)
	o.raw = -1
	if err != nil {
		return fmt.Errorf("close pidfd: %w", err)
	}
	return nil
}

// fdTrace records, while tests enable it, the stack that created each owned
// fd still open.
var fdTrace struct {
	sync.Mutex
	on   bool
	open map[int][]byte
}

func traceOpen(raw int) {
	fdTrace.Lock()
	defer fdTrace.Unlock()
	if fdTrace.on {
		fdTrace.open[raw] = debug.Stack()
	}
}

func traceClose(raw int) {
	fdTrace.Lock()
	defer fdTrace.Unlock()
	delete(fdTrace.open, raw)
}

// startFDTrace turns the tracer on (tests only).
func startFDTrace() {
	fdTrace.Lock()
	defer fdTrace.Unlock()
	fdTrace.on, fdTrace.open = true, map[int][]byte{}
}

// leakedFDs describes the owned fds still open, with the stacks that made them.
func leakedFDs() []string {
	fdTrace.Lock()
	defer fdTrace.Unlock()
	var out []string
	for raw, stack := range fdTrace.open {
		out = append(out, fmt.Sprintf("pidfd %d, opened at:\n%s", raw, stack))
	}
	sort.Strings(out)
	return out
}
