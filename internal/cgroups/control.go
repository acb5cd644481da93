package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Controls act on a live container's cgroup: pause, update, statistics and
// OOM accounting. The daemon's manager (New) has them; the delete face's
// (Cleanup) only kills and removes.
type Controls interface {
	// Freeze stops every process of the cgroup (v1 freezer.state, v2
	// cgroup.freeze) and returns once the kernel reports them frozen.
	Freeze() error
	// Thaw undoes Freeze.
	Thaw() error
	// Frozen reports whether the cgroup is frozen or being frozen.
	Frozen() (bool, error)
	// Update applies res to the live cgroup after CheckUpdate accepted it.
	// InvalidArgument for a value the kernel or this runtime refuses.
	Update(res *specs.LinuxResources) error
	// Stats is the metrics message containerd's runc shim returns for this
	// hierarchy: cgroup1's or cgroup2's stats.Metrics.
	Stats() (proto.Message, error)
	// OOMKills is the kernel's count of OOM kills in the cgroup (oom_kill in
	// v1 memory.oom_control, v2 memory.events). The kernel counts a kill
	// before it sends the SIGKILL, so once a victim's exit has been seen
	// the count includes it.
	OOMKills() (uint64, error)
	// OOMNotify is a non-blocking, close-on-exec file that turns readable
	// when the count may have changed (v1: an eventfd registered on
	// memory.oom_control; v2: inotify on memory.events). The caller closes it.
	OOMNotify() (*os.File, error)
}

var errNoLibrary = fmt.Errorf("cgroup opened for removal only: %w", errdefs.ErrFailedPrecondition)

func (m *manager) Freeze() error { return m.wrapFreeze(m.freeze(true)) }
func (m *manager) Thaw() error   { return m.wrapFreeze(m.freeze(false)) }

func (m *manager) wrapFreeze(err error) error {
	if err == nil {
		return nil
	}
	if m.rec.Freezer == "" && !m.rec.Unified {
		return fmt.Errorf("cgroup %s: no v1 freezer hierarchy mounted: %w", m.rec.Path, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("cgroup %s: %w", m.rec.Path, err)
}

func (m *manager) Frozen() (bool, error) {
	if m.rec.Unified {
		b, err := os.ReadFile(filepath.Join(m.rec.Procs, "cgroup.freeze"))
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(b)) == "1", nil
	}
	if m.rec.Freezer == "" {
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(m.rec.Freezer, "freezer.state"))
	if err != nil {
		return false, err
	}
	st := strings.TrimSpace(string(b))
	return st == "FROZEN" || st == "FREEZING", nil
}

func (m *manager) Update(res *specs.LinuxResources) error {
	if m.v1 == nil && m.v2 == nil {
		return errNoLibrary
	}
	r, err := CheckUpdate(res, m.rec.Unified)
	if err != nil {
		return err
	}
	if err := m.checkHugepages(r); err != nil {
		return err
	}
	if m.rec.Unit != "" {
		if err := m.setUnitResources(r); err != nil {
			return fmt.Errorf("update cgroup %s: %w", m.rec.Path, err)
		}
	}
	if m.rec.Unified {
		err = m.updateV2(r)
	} else {
		err = m.updateV1(r)
	}
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", m.rec.Path, kernelRefusal(err))
	}
	return nil
}

// kernelRefusal types what the kernel said to a cgroup write: EINVAL and
// ERANGE are values it does not take, EBUSY a limit below what is in use
// (v1 memory), EOPNOTSUPP/ENOENT a knob this kernel lacks.
func kernelRefusal(err error) error {
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ERANGE), errors.Is(err, unix.EOVERFLOW):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotImplemented)
	}
	return err
}

func (m *manager) updateV1(r *specs.LinuxResources) error {
	if err := m.v1.Update(r); err != nil {
		return err
	}
	// cgroup1 writes only positive pid limits; -1 is "no limit" in the
	// spec and must lift an earlier one.
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit < 0 {
		if d, ok := m.named["pids"]; ok {
			return writeKnob(d, "pids.max", "max")
		}
	}
	return nil
}

func (m *manager) updateV2(r *specs.LinuxResources) error {
	cr := cgroup2.ToResources(r)
	if c := r.CPU; c != nil && c.Quota != nil && c.Period == nil {
		// cgroup2 writes cpu.max only with a period; a quota alone keeps
		// the period in force, as on v1.
		period, err := currentPeriod(m.rec.Procs)
		if err != nil {
			return err
		}
		cr.CPU.Max = cgroup2.NewCPUMax(c.Quota, &period)
	}
	if err := m.v2.Update(cr); err != nil {
		return err
	}
	for k, v := range r.Unified {
		if err := writeKnob(m.rec.Procs, k, v); err != nil {
			return err
		}
	}
	return nil
}

func currentPeriod(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("%s/cpu.max: %q", dir, b)
	}
	return strconv.ParseUint(f[1], 10, 64)
}

// writeKnob writes one interface file of dir; name was checked to be a
// single file name (CheckUpdate).
func writeKnob(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkHugepages refuses a page size the host has no hugetlb files for:
// the library would skip it silently.
func (m *manager) checkHugepages(r *specs.LinuxResources) error {
	dir := m.rec.Procs
	if !m.rec.Unified {
		dir = m.named["hugetlb"]
	}
	for i, h := range r.HugepageLimits {
		file := "hugetlb." + h.Pagesize + ".limit_in_bytes"
		if m.rec.Unified {
			file = "hugetlb." + h.Pagesize + ".max"
		}
		if dir == "" {
			return fmt.Errorf("hugepageLimits[%d]: no hugetlb controller on this host: %w", i, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return fmt.Errorf("hugepageLimits[%d]: page size %q: %w: %w", i, h.Pagesize, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (m *manager) Stats() (proto.Message, error) {
	switch {
	case m.v2 != nil:
		st, err := m.v2.Stat()
		if err != nil {
			return nil, fmt.Errorf("stats of cgroup %s: %w", m.rec.Path, err)
		}
		return st, nil
	case m.v1 != nil:
		// As containerd's runc shim: a controller without a hierarchy is
		// left out, not an error.
		st, err := m.v1.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			return nil, fmt.Errorf("stats of cgroup %s: %w", m.rec.Path, err)
		}
		return st, nil
	}
	return nil, errNoLibrary
}

func (m *manager) OOMKills() (uint64, error) {
	if m.memory == "" {
		return 0, fmt.Errorf("cgroup %s: no memory controller: %w", m.rec.Path, errdefs.ErrNotImplemented)
	}
	file := "memory.events"
	if !m.rec.Unified {
		file = "memory.oom_control"
	}
	b, err := os.ReadFile(filepath.Join(m.memory, file))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == "oom_kill" {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s/%s has no oom_kill count: %w", m.memory, file, errdefs.ErrNotImplemented)
}

func (m *manager) OOMNotify() (*os.File, error) {
	if m.memory == "" {
		return nil, fmt.Errorf("cgroup %s: no memory controller: %w", m.rec.Path, errdefs.ErrNotImplemented)
	}
	if m.rec.Unified {
		return inotifyFile(filepath.Join(m.memory, "memory.events"))
	}
	return oomEventfd(m.memory)
}

func inotifyFile(path string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify on %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "inotify:"+path), nil
}

// oomEventfd registers an eventfd for memory.oom_control through
// cgroup.event_control (the v1 notification API; cgroup1.OOMEventFD does
// the same but hands back a blocking fd for a thread of its own). The
// kernel also signals it when the cgroup is removed.
func oomEventfd(dir string) (*os.File, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		unix.Close(efd)
		return nil, err
	}
	defer ctl.Close()
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("register OOM eventfd in %s: %w", dir, err)
	}
	return os.NewFile(uintptr(efd), "eventfd:"+dir+"/memory.oom_control"), nil
}
