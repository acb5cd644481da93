package cgroups

// The systemd cgroup driver (runtime option SystemdCgroup): the container's
// cgroup is a transient scope, "<prefix>-<name>.scope" under the slice of
// its "slice:prefix:name" cgroupsPath, that systemd creates through its
// D-Bus API (go-systemd) with Delegate=yes, so that systemd owns the unit
// and its place in the tree and leaves the inside to us.
//
// systemd refuses a scope without a process, so the init is not cloned into
// it (no CLONE_INTO_CGROUP for the init, as on cgroup v1): it is cloned in
// the daemon's cgroup, where it runs no user code and waits for JOINED, and
// Add asks systemd to start the scope with PIDs=[init] (runc's way; crun
// makes the scope for a process of its own first, which we would then have
// to keep alive and move out). From then on the scope's directory is an
// ordinary delegated cgroup v2: execs are cloned into it, and pause, update,
// stats, OOM and the kills (guard included) act on its files as with
// cgroupfs. Resources go to systemd as unit properties too (memory, swap,
// pids, cpu weight and quota: what systemd would re-apply from its own
// view on a daemon-reload), then to the files (everything, as cgroupfs).
//
// Delete kills what is left, stops the unit (systemd removes the cgroup
// with it) and resets it if it failed. The record (record.go) names the unit,
// so the delete face, after a crash, does the same.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// systemdTimeout bounds every exchange with systemd (connect, a job):
// a systemd that does not answer fails the request, it never hangs it.
// Generous: under emulation a job takes a second or more.
const systemdTimeout = 30 * time.Second

// systemdBooted is where systemd says it is the init (sd_booted(3)).
const systemdBooted = "/run/systemd/system"

// CheckSystemd tells whether the systemd driver can work on this host:
// FailedPrecondition without systemd as the init, NotImplemented on a
// cgroup v1 or hybrid layout (the driver is implemented for v2 only).
func CheckSystemd() error {
	if fi, err := os.Lstat(systemdBooted); err != nil || !fi.IsDir() {
		return fmt.Errorf("the systemd cgroup driver (SystemdCgroup) needs systemd as the host's init, and %s does not exist: use the cgroupfs driver: %w", systemdBooted, errdefs.ErrFailedPrecondition)
	}
	if !Unified() {
		return fmt.Errorf("the systemd cgroup driver (SystemdCgroup) is implemented on cgroup v2 only, and this host has a v1 or hybrid layout: %w", errdefs.ErrNotImplemented)
	}
	return nil
}

// newSystemd is New for a "slice:prefix:name" path: nothing is made yet
// (Add starts the scope with the init in it), but the record names the unit
// and its directory before systemd is asked for anything.
func newSystemd(bundle, path string, res *specs.LinuxResources) (Manager, error) {
	if err := CheckSystemd(); err != nil {
		return nil, err
	}
	p, err := spec.ParseSystemdCgroupsPath(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(unifiedRoot, p.Dir())
	if err := refuseBusy(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", path, err)
	}
	m := &manager{bundle: bundle, rec: record{
		Path: path, Unified: true, Dirs: []string{dir}, Procs: dir, Unit: p.Unit, Slice: p.Slice,
	}, memory: dir, pending: res}
	if err := writeRecord(bundle, &m.rec); err != nil {
		return nil, err
	}
	return m, nil
}

// startScope is the first Add of a systemd manager: the scope is started
// with pid in it and the resources, then opened as a cgroup v2.
func (m *manager) startScope(pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := systemdConn(ctx)
	if err != nil {
		return err
	}
	res := m.pending
	if res == nil {
		res = &specs.LinuxResources{}
	}
	props := []sddbus.Property{
		sddbus.PropDescription("autokill container " + m.rec.Path),
		sddbus.PropSlice(m.rec.Slice),
		sddbus.PropPids(uint32(pid)),
		{Name: "Delegate", Value: godbus.MakeVariant(true)},
		{Name: "DefaultDependencies", Value: godbus.MakeVariant(false)},
		// A scope that ends badly must not keep its name from the next
		// container (systemd ≥ 236).
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
		{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
		{Name: "IOAccounting", Value: godbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
	}
	if systemdVersion(ctx, conn) >= 253 {
		// Scopes have OOMPolicy from 253 on, default stop: one OOM kill
		// would stop the whole container, where cgroupfs only reports it.
		props = append(props, sddbus.Property{Name: "OOMPolicy", Value: godbus.MakeVariant("continue")})
	}
	props = append(props, unitResources(res)...)
	if err := runJob(ctx, m.rec.Unit, "start", func(ch chan<- string) (int, error) {
		return conn.StartTransientUnitContext(ctx, m.rec.Unit, "replace", props, ch)
	}); err != nil {
		if dbusErrorIs(err, "org.freedesktop.systemd1.UnitExists") {
			return fmt.Errorf("systemd unit %s exists already: not the container's own: %w", m.rec.Unit, errdefs.ErrFailedPrecondition)
		}
		_ = conn.ResetFailedUnitContext(ctx, m.rec.Unit)
		return fmt.Errorf("start systemd scope %s in %s: %w", m.rec.Unit, m.rec.Slice, err)
	}
	// systemd chose the directory; it must be the one recorded (and
	// armed in the guard), or the kills would miss the container.
	if cg, err := conn.GetUnitTypePropertyContext(ctx, m.rec.Unit, "Scope", "ControlGroup"); err != nil {
		return fmt.Errorf("systemd scope %s: its cgroup: %w", m.rec.Unit, err)
	} else if got, _ := cg.Value.Value().(string); filepath.Join(unifiedRoot, got) != m.rec.Procs {
		return fmt.Errorf("systemd put scope %s at %q, not at %s", m.rec.Unit, got, m.rec.Procs)
	}
	cm, err := cgroup2.Load(strings.TrimPrefix(m.rec.Procs, unifiedRoot))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", m.rec.Path, err)
	}
	// The files too: systemd knows only some of the knobs, and writes
	// its own rounding of others (cpu quota).
	if err := cm.Update(cgroup2.ToResources(res)); err != nil {
		return fmt.Errorf("cgroup v2 %s: resources: %w", m.rec.Path, err)
	}
	m.v2 = cm
	if m.into, err = os.OpenFile(m.rec.Procs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("open cgroup v2 %s: %w", m.rec.Path, err)
	}
	m.pending = nil
	return nil
}

// setUnitResources tells systemd about an Update, so that its view of the
// unit, which it re-applies on a daemon-reload, is the container's.
func (m *manager) setUnitResources(r *specs.LinuxResources) error {
	props := unitResources(r)
	if len(props) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := systemdConn(ctx)
	if err != nil {
		return err
	}
	if err := conn.SetUnitPropertiesContext(ctx, m.rec.Unit, true, props...); err != nil {
		return fmt.Errorf("systemd scope %s: set properties: %w", m.rec.Unit, err)
	}
	return nil
}

// stopScope stops the unit once the cgroup is empty: systemd removes the
// cgroup with it. A unit systemd no longer knows (it collected the empty
// scope already, or it was never started) is fine; so is an unreachable
// systemd once the directory is gone (the delete face after a reboot).
func (m *manager) stopScope(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, systemdTimeout)
	defer cancel()
	gone := func() bool { _, err := os.Lstat(m.rec.Procs); return errors.Is(err, os.ErrNotExist) }
	conn, err := systemdConn(ctx)
	if err != nil {
		if gone() {
			log.G(ctx).WithError(err).WithField("unit", m.rec.Unit).Debug("systemd unreachable, the scope's cgroup is gone")
			return nil
		}
		return err
	}
	err = runJob(ctx, m.rec.Unit, "stop", func(ch chan<- string) (int, error) {
		return conn.StopUnitContext(ctx, m.rec.Unit, "replace", ch)
	})
	if err != nil && !dbusErrorIs(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return fmt.Errorf("stop systemd scope %s: %w", m.rec.Unit, err)
	}
	if err := conn.ResetFailedUnitContext(ctx, m.rec.Unit); err != nil && !dbusErrorIs(err, "org.freedesktop.systemd1.NoSuchUnit") {
		log.G(ctx).WithError(err).WithField("unit", m.rec.Unit).Debug("reset-failed")
	}
	// systemd prunes the cgroup as the stop job completes; a moment more
	// under load.
	for !gone() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("systemd scope %s stopped but its cgroup %s remains: %w", m.rec.Unit, m.rec.Procs, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// runJob starts a systemd job and waits for its result ("done").
func runJob(ctx context.Context, unit, what string, start func(chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := start(ch); err != nil {
		return err
	}
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("systemd job %s %s: %s", what, unit, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd job %s %s: no answer: %w", what, unit, ctx.Err())
	}
}

func dbusErrorIs(err error, name string) bool {
	var v godbus.Error
	if errors.As(err, &v) {
		return v.Name == name
	}
	var p *godbus.Error
	return errors.As(err, &p) && p.Name == name
}

// unitResources are the unit properties for what systemd itself manages of
// res (zero = unchanged, as CheckUpdate returns them).
func unitResources(res *specs.LinuxResources) []sddbus.Property {
	var props []sddbus.Property
	add := func(name string, v any) {
		props = append(props, sddbus.Property{Name: name, Value: godbus.MakeVariant(v)})
	}
	// systemd's "infinity" for bytes and counts.
	limit := func(v int64) uint64 {
		if v < 0 {
			return math.MaxUint64
		}
		return uint64(v)
	}
	if mem := res.Memory; mem != nil {
		if l := mem.Limit; l != nil && *l != 0 {
			add("MemoryMax", limit(*l))
		}
		if l := mem.Reservation; l != nil && *l > 0 {
			add("MemoryLow", uint64(*l))
		}
		// The spec's swap is memory + swap; v2 and systemd limit swap alone.
		if s := mem.Swap; s != nil && *s != 0 {
			switch l := mem.Limit; {
			case *s < 0:
				add("MemorySwapMax", uint64(math.MaxUint64))
			case l != nil && *l > 0 && *s >= *l:
				add("MemorySwapMax", uint64(*s-*l))
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit != 0 {
		add("TasksMax", limit(*p.Limit))
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			add("CPUWeight", cgroup2.ConvertCPUSharesToCgroupV2Value(*c.Shares))
		}
		if c.Quota != nil && *c.Quota != 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
				add("CPUQuotaPeriodUSec", period)
			}
			perSec := uint64(math.MaxUint64)
			if *c.Quota > 0 {
				// Per second of CPU, in steps of 10 ms (systemd keeps a
				// percentage): rounded up, so the exact cpu.max written
				// into the file afterwards is within it.
				perSec = uint64(*c.Quota) * 1000000 / period
				if perSec%10000 != 0 {
					perSec = (perSec/10000 + 1) * 10000
				}
			}
			add("CPUQuotaPerSecUSec", perSec)
		}
	}
	return props
}

// One connection per process, made on first use and again when systemd
// (or the bus) dropped it. go-systemd connects to the system bus and, as
// root, falls back to systemd's private socket.
var sd struct {
	mu      sync.Mutex
	conn    *sddbus.Conn
	version int
}

func systemdConn(ctx context.Context) (*sddbus.Conn, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.conn != nil && sd.conn.Connected() {
		return sd.conn, nil
	}
	if sd.conn != nil {
		sd.conn.Close()
		sd.conn = nil
	}
	type result struct {
		c   *sddbus.Conn
		err error
	}
	done := make(chan result, 1)
	// The authentication handshake does not take the context: a bus
	// that accepts and never answers must not hang Create.
	go func() {
		c, err := sddbus.NewWithContext(ctx)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to systemd over D-Bus: %w: %w", r.err, errdefs.ErrUnavailable)
		}
		sd.conn = r.c
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connect to systemd over D-Bus: %w: %w", ctx.Err(), errdefs.ErrUnavailable)
	}
}

// systemdVersion is the manager's version number (252 for "252.38-1"), 0
// when it cannot be read; asked once per process.
func systemdVersion(ctx context.Context, conn *sddbus.Conn) int {
	sd.mu.Lock()
	v := sd.version
	sd.mu.Unlock()
	if v != 0 {
		return v
	}
	done := make(chan string, 1)
	go func() {
		s, _ := conn.GetManagerProperty("Version")
		done <- s
	}()
	var s string
	select {
	case s = <-done:
	case <-ctx.Done():
		return 0
	}
	s = strings.TrimLeft(s, `"v`)
	if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		s = s[:i]
	}
	v, _ = strconv.Atoi(s)
	sd.mu.Lock()
	sd.version = v
	sd.mu.Unlock()
	return v
}
