// Package cgroups places a container in its cgroup and controls it there, on
// cgroup v1 (including the hybrid layout) and v2, behind one small interface.
// Signals to every process go through pidfds while the cgroup is frozen, so no
// pid can be reused between listing it and signalling it.
package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	cg "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Manager is a container's cgroup.
type Manager interface {
	// IntoFd is the cgroup v2 directory for CLONE_INTO_CGROUP, or nil when
	// the child must be moved in with Add (v1).
	IntoFd() *os.File
	// Add moves a process into the cgroup (v1).
	Add(pid int) error
	// Pids lists every process in the cgroup.
	Pids() ([]int, error)
	// SignalAll delivers sig to every process in the cgroup.
	SignalAll(sig syscall.Signal) error
	// Delete kills what is left, waits for the cgroup to empty and removes it.
	Delete(ctx context.Context) error
}

const unifiedRoot = "/sys/fs/cgroup"

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool { return cg.Mode() == cg.Unified }

// New creates the cgroup at path (cgroupfs form, as in the OCI spec) with
// resources applied.
func New(path string, res *specs.LinuxResources) (Manager, error) {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if Unified() {
		m, err := cgroup2.NewManager(unifiedRoot, path, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("create cgroup v2 %s: %w", path, err)
		}
		dir, err := os.OpenFile(filepath.Join(unifiedRoot, path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = m.Delete()
			return nil, fmt.Errorf("open cgroup v2 %s: %w", path, err)
		}
		return &v2{m: m, path: path, dir: dir}, nil
	}
	m, err := cgroup1.New(cgroup1.StaticPath(path), res)
	if err != nil {
		return nil, fmt.Errorf("create cgroup v1 %s: %w", path, err)
	}
	return &v1{c: m, path: path}, nil
}

// Load opens an existing cgroup, for the cleanup of a dead shim's container.
// It returns an error wrapping os.ErrNotExist when there is none.
func Load(path string) (Manager, error) {
	if Unified() {
		if _, err := os.Stat(filepath.Join(unifiedRoot, path)); err != nil {
			return nil, err
		}
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, err
		}
		return &v2{m: m, path: path}, nil
	}
	m, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroup %s: %w", path, os.ErrNotExist)
		}
		return nil, err
	}
	return &v1{c: m, path: path}, nil
}

type v1 struct {
	c    cgroup1.Cgroup
	path string
}

func (m *v1) IntoFd() *os.File { return nil }

func (m *v1) Add(pid int) error {
	if err := m.c.Add(cgroup1.Process{Pid: pid}); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, m.path, err)
	}
	return nil
}

func (m *v1) Pids() ([]int, error) {
	procs, err := m.c.Processes(cgroup1.Devices, true)
	if err != nil {
		// Not every host has the devices controller; pids always lists.
		procs, err = m.c.Processes(cgroup1.Pids, true)
		if err != nil {
			return nil, fmt.Errorf("list cgroup %s: %w", m.path, err)
		}
	}
	out := make([]int, 0, len(procs))
	seen := map[int]bool{}
	for _, p := range procs {
		if !seen[p.Pid] {
			seen[p.Pid] = true
			out = append(out, p.Pid)
		}
	}
	return out, nil
}

func (m *v1) SignalAll(sig syscall.Signal) error {
	return signalFrozen(m.c.Freeze, m.c.Thaw, m.Pids, sig)
}

func (m *v1) Delete(ctx context.Context) error {
	return deleteWhenEmpty(ctx, m.path, m.Pids, m.SignalAll, m.c.Delete)
}

type v2 struct {
	m    *cgroup2.Manager
	path string
	dir  *os.File
}

func (m *v2) IntoFd() *os.File { return m.dir }

func (m *v2) Add(pid int) error {
	if err := m.m.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, m.path, err)
	}
	return nil
}

func (m *v2) Pids() ([]int, error) {
	procs, err := m.m.Procs(true)
	if err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", m.path, err)
	}
	out := make([]int, len(procs))
	for i, p := range procs {
		out[i] = int(p)
	}
	return out, nil
}

func (m *v2) SignalAll(sig syscall.Signal) error {
	if sig == unix.SIGKILL {
		// cgroup.kill (5.14) kills atomically, forks in flight included.
		if err := os.WriteFile(filepath.Join(unifiedRoot, m.path, "cgroup.kill"), []byte("1"), 0); err == nil {
			return nil
		}
	}
	return signalFrozen(m.m.Freeze, m.m.Thaw, m.Pids, sig)
}

func (m *v2) Delete(ctx context.Context) error {
	err := deleteWhenEmpty(ctx, m.path, m.Pids, m.SignalAll, m.m.Delete)
	if m.dir != nil {
		m.dir.Close()
	}
	return err
}

// signalFrozen signals every process while the cgroup is frozen: a frozen
// process cannot exit and be reaped, so its pid cannot be reused between the
// listing and pidfd_open.
func signalFrozen(freeze, thaw func() error, pids func() ([]int, error), sig syscall.Signal) error {
	frozen := freeze() == nil
	defer func() {
		if frozen {
			_ = thaw()
		}
	}()
	list, err := pids()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range list {
		fd, err := unix.PidfdOpen(pid, 0)
		if err == unix.ESRCH {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pidfd_open %d: %w", pid, err))
			continue
		}
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("pidfd_send_signal %d: %w", pid, err))
		}
		unix.Close(fd)
	}
	return errors.Join(errs...)
}

func deleteWhenEmpty(ctx context.Context, path string, pids func() ([]int, error), signal func(syscall.Signal) error, remove func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		list, err := pids()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if len(list) == 0 {
			break
		}
		if i == 0 {
			log.G(ctx).WithField("cgroup", path).Debugf("killing %d processes left in the cgroup", len(list))
		}
		if err := signal(unix.SIGKILL); err != nil {
			log.G(ctx).WithError(err).WithField("cgroup", path).Warn("kill leftover processes")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s: processes %v still there: %w", path, list, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The kernel refuses rmdir for a moment after the last exit.
	for {
		err := remove()
		if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
