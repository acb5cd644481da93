package process

// Pause/Resume, Update, Stats and OOM events: what a container does with
// its cgroup while it runs. The transitions are in state.go; container.go
// calls watchOOM once Create is done, beforeExit right before TaskExit,
// thawKilled after a SIGKILL and stopOOM in cleanup.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// cgfeat is the container's state for the features of this file; guarded
// by Container.mu.
type cgfeat struct {
	// oomSeen is the cgroup's OOM kill count already reported: one
	// TaskOOM per observed increase, as containerd's runc shim sends.
	oomSeen uint64
	// oomFile turns readable when the count may have moved; closed by
	// stopOOM, which ends oomLoop.
	oomFile *os.File
}

// Pause freezes every process of the container and publishes TaskPaused.
// FailedPrecondition unless it is running.
func (c *Container) Pause(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	to, err := next(opPause, c.status)
	if err != nil {
		return fmt.Errorf("pause %s: %w", c.id, err)
	}
	if err := c.cg.Freeze(); err != nil {
		// A freeze that timed out in FREEZING would leave some processes
		// stopped and the state saying running.
		if terr := c.cg.Thaw(); terr != nil {
			log.G(ctx).WithError(terr).WithField("id", c.id).Warn("thaw after a failed pause")
		}
		return fmt.Errorf("pause %s: %w", c.id, err)
	}
	c.status = to
	c.publish(ctx, "/tasks/paused", &eventstypes.TaskPaused{ContainerID: c.id})
	return nil
}

// Resume thaws a paused container and publishes TaskResumed.
// FailedPrecondition unless it is paused.
func (c *Container) Resume(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	to, err := next(opResume, c.status)
	if err != nil {
		return fmt.Errorf("resume %s: %w", c.id, err)
	}
	if err := c.cg.Thaw(); err != nil {
		return fmt.Errorf("resume %s: %w", c.id, err)
	}
	c.status = to
	c.publish(ctx, "/tasks/resumed", &eventstypes.TaskResumed{ContainerID: c.id})
	return nil
}

// resourcesURL is how containerd's client encodes specs.LinuxResources
// (typeurl.Register in containerd's runtime package): JSON in an Any.
const (
	resourcesURLPrefix = "types.containerd.io/opencontainers/runtime-spec/"
	resourcesURLSuffix = "/LinuxResources"
)

// DecodeResources reads the resources of an Update request.
// InvalidArgument for anything but a JSON specs.LinuxResources.
func DecodeResources(a typeurl.Any) (*specs.LinuxResources, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, fmt.Errorf("update: no resources: %w", errdefs.ErrInvalidArgument)
	}
	u := a.GetTypeUrl()
	if !strings.HasPrefix(u, resourcesURLPrefix) || !strings.HasSuffix(u, resourcesURLSuffix) {
		return nil, fmt.Errorf("update: resources of type %q, want %s%d%s: %w", u, resourcesURLPrefix, specs.VersionMajor, resourcesURLSuffix, errdefs.ErrInvalidArgument)
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(a.GetValue(), &r); err != nil {
		return nil, fmt.Errorf("update: resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &r, nil
}

// Update applies new resource limits to the live cgroup (created, running
// or paused, as runc allows). InvalidArgument for values the kernel or
// this runtime refuses.
func (c *Container) Update(ctx context.Context, res *specs.LinuxResources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := next(opUpdate, c.status); err != nil {
		return fmt.Errorf("update %s: %w", c.id, err)
	}
	if err := c.cg.Update(res); err != nil {
		return fmt.Errorf("update %s: %w", c.id, err)
	}
	return nil
}

// Stats returns the cgroup's metrics, typeurl-encoded as containerd's runc
// shim does (io.containerd.cgroups.v1.Metrics or ...v2.Metrics). NotFound
// once the cgroup is gone.
func (c *Container) Stats(ctx context.Context) (*anypb.Any, error) {
	// Under mu: Delete removes the cgroup under it.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == StatusDeleted || c.cg == nil {
		return nil, fmt.Errorf("stats %s: cgroup does not exist: %w", c.id, errdefs.ErrNotFound)
	}
	m, err := c.cg.Stats()
	if err != nil {
		return nil, fmt.Errorf("stats %s: %w", c.id, err)
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("stats %s: encode: %w", c.id, err)
	}
	return a, nil
}

// watchOOM takes the cgroup's OOM count as the baseline and starts the
// watcher that reports later kills while the container lives. Called once
// Create succeeded, without mu.
func (c *Container) watchOOM(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cg == nil {
		return
	}
	n, err := c.cg.OOMKills()
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("no OOM accounting: TaskOOM will not be published")
		return
	}
	c.feat.oomSeen = n
	f, err := c.cg.OOMNotify()
	if err != nil {
		// The exit check (beforeExit) still reports an OOM that ends the
		// init; kills of other processes would go unreported.
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("OOM notifications")
		return
	}
	c.feat.oomFile = f
	retry := oomRetry
	if c.cg.Dirs().Unified {
		retry = oomRetry[:1]
	}
	go c.oomLoop(f, retry)
}

// oomRetry: v1's eventfd fires when the cgroup runs out of memory, before
// the victim is picked and counted; the count is read again a few times.
// v2's inotify fires on every update of memory.events, the count's own
// included, so one read per wake-up sees it; retrying there would only
// delay the read of the next wake-up (the kill's comes after the "max"
// and "oom" ones), by which time systemd may have removed an emptied scope
// and its count with it.
var oomRetry = []time.Duration{0, 10 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}

func (c *Container) oomLoop(f *os.File, retry []time.Duration) {
	ctx := context.Background()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Read(buf); err != nil {
			return // closed by stopOOM
		}
		for _, d := range retry {
			time.Sleep(d)
			c.mu.Lock()
			moved := c.status != StatusStopped && c.noteOOM(ctx)
			c.mu.Unlock()
			if moved {
				break
			}
		}
	}
}

// noteOOM publishes TaskOOM if the cgroup's OOM kill count moved since it
// was last looked at. Called with mu held.
func (c *Container) noteOOM(ctx context.Context) bool {
	if c.cg == nil || c.status == StatusDeleted {
		return false
	}
	n, err := c.cg.OOMKills()
	if err != nil || n <= c.feat.oomSeen {
		return false
	}
	c.feat.oomSeen = n
	c.publish(ctx, "/tasks/oom", &eventstypes.TaskOOM{ContainerID: c.id})
	return true
}

// beforeExit runs in watch under mu, right before TaskExit is queued. The
// kernel counts an OOM kill before it sends the SIGKILL, so an OOM that
// ended the init is in the count by now: its TaskOOM is queued first, by
// construction. A paused container is thawed, as runc does on exit, so
// that what is left can be killed and the cgroup removed.
func (c *Container) beforeExit(ctx context.Context) {
	c.noteOOM(ctx)
	if c.status == StatusPaused && c.cg != nil {
		if err := c.cg.Thaw(); err != nil {
			log.G(ctx).WithError(err).WithField("id", c.id).Warn("thaw the exited container")
		}
	}
}

// thawKilled: a process frozen by the v1 freezer does not die of SIGKILL
// until it is thawed; runc thaws a paused container it SIGKILLs too.
// Other signals stay pending until Resume. Called with mu held.
func (c *Container) thawKilled(ctx context.Context, sig syscall.Signal) {
	if sig != syscall.SIGKILL || c.status != StatusPaused || c.cg == nil {
		return
	}
	if err := c.cg.Thaw(); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("thaw the killed paused container")
	}
}

// stopOOM ends the OOM watcher. Called with mu held (cleanup).
func (c *Container) stopOOM() {
	if c.feat.oomFile != nil {
		c.feat.oomFile.Close()
		c.feat.oomFile = nil
	}
}
