// Package cgroups places a container in its cgroup and controls it there, on
// cgroup v1 (including the hybrid layout) and v2, behind one small interface.
// Signals to every process go through pidfds while the cgroup is frozen, so no
// pid can be reused between listing it and signalling it.
//
// Safety rules, because cgroupsPath comes from the bundle:
//   - the path is checked by spec.ValidateCgroupsPath (via PathFor) in the
//     daemon and in the delete face alike;
//   - New refuses (FailedPrecondition) an existing cgroup that is busy:
//     one with processes or child cgroups (the root, /system.slice, another
//     container's). An existing empty one is used but never removed;
//   - what New creates is recorded in the bundle (RecordName) before the
//     first mkdir; Delete and Cleanup rmdir only those directories (and the
//     sub-cgroups the container made inside its own), only on a cgroup
//     filesystem, never a recursive delete of files;
//   - kills reach only processes listed in the container's own cgroup.
//
// resources are written with containerd/cgroups; directories are made and
// removed here, because that library removes with os.RemoveAll.
package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cg "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Manager is a container's cgroup.
type Manager interface {
	// IntoFd is the cgroup v2 directory for CLONE_INTO_CGROUP, or nil when
	// the child must be moved in with Add (v1).
	IntoFd() *os.File
	// Add moves a process into the cgroup (every v1 hierarchy).
	Add(pid int) error
	// Pids lists every process in the cgroup.
	Pids() ([]int, error)
	// SignalAll delivers sig to every process in the cgroup.
	SignalAll(sig syscall.Signal) error
	// Dirs are the absolute directories to act on to kill the container.
	Dirs() Dirs
	// Delete kills what is left, waits for the cgroup to empty and removes
	// the directories this shim created, and the record of them.
	Delete(ctx context.Context) error
	// Controls are pause/resume, live updates, statistics and OOM
	// accounting (control.go).
	Controls
}

// Dirs are the container's cgroup directories, for whoever must freeze or
// kill every process in it (e.g. a guard armed for the daemon's death).
type Dirs struct {
	// Unified: cgroup v2; Procs is the container's one directory, with
	// cgroup.kill and cgroup.freeze.
	Unified bool
	// Procs is the directory whose cgroup.procs (recursively) lists every
	// process of the container.
	Procs string
	// Freezer is the v1 freezer directory (freezer.state); "" on v2 or
	// when no freezer hierarchy is mounted.
	Freezer string
	// All has one directory per hierarchy (v2: just Procs).
	All []string
}

const unifiedRoot = "/sys/fs/cgroup"

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool { return cg.Mode() == cg.Unified }

// New creates the container's cgroup at path (see PathFor) with res
// applied, and records in bundle what it created. FailedPrecondition when
// the cgroup exists and is busy. With systemd (the runtime option
// SystemdCgroup) path is "slice:prefix:name" and the scope is started by the
// first Add (systemd.go); without, a path of that form is a relative
// cgroupfs path, as runc's cgroupfs driver takes it.
func New(bundle, path string, systemd bool, res *specs.LinuxResources) (_ Manager, retErr error) {
	if systemd {
		return newSystemd(bundle, path, res)
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	l, err := resolve(path)
	if err != nil {
		return nil, err
	}
	for _, d := range l.dirs {
		if err := refuseBusy(d); err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", path, err)
		}
	}
	m := &manager{bundle: bundle, rec: record{
		Path: path, Unified: l.unified, Dirs: l.dirs, Freezer: l.freezer, Procs: l.procs,
	}, memory: l.memory, named: l.named}
	defer func() {
		if retErr != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Delete(ctx); err != nil {
				log.L.WithError(err).WithField("cgroup", path).Warn("undo cgroup creation")
			}
		}
	}()
	if err := m.mkdirs(l); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	if l.unified {
		cm, err := cgroup2.Load(l.inner[""])
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", path, err)
		}
		r := cgroup2.ToResources(res)
		if err := cm.ToggleControllers(r.EnabledControllers(), cgroup2.Enable); err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", path, err)
		}
		// The rest too, best effort, as containerd's runc shim does: a
		// later Update may set limits Create did not, and Stats reads
		// every controller's files.
		if all, err := cm.RootControllers(); err == nil {
			if err := cm.ToggleControllers(all, cgroup2.Enable); err != nil {
				log.L.WithError(err).WithField("cgroup", path).Debug("enable every controller")
			}
		}
		if err := cm.Update(r); err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: resources: %w", path, err)
		}
		m.v2 = cm
		if m.into, err = os.OpenFile(l.dirs[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("open cgroup v2 %s: %w", path, err)
		}
		return m, nil
	}
	// The directories exist: cgroup1 only writes the limits (and cpuset's
	// inherited cpus and mems).
	if m.v1, err = cgroup1.New(l.v1Path, res); err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: resources: %w", path, err)
	}
	return m, nil
}

// Cleanup is the delete face's part: it kills what is left in the cgroup
// recorded in bundle and removes what the daemon created. path is the
// container's cgroupsPath (PathFor); a record for another path is refused.
// Without a record the daemon created nothing: nothing is touched.
func Cleanup(ctx context.Context, bundle, path string) error {
	rec, err := readRecord(bundle)
	if errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithField("cgroup", path).Debug("no cgroup record: nothing of ours to remove")
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Path != path {
		return fmt.Errorf("cgroup record in %s is for %q but the spec says %q: cgroup left alone: %w", bundle, rec.Path, path, errdefs.ErrFailedPrecondition)
	}
	for _, d := range rec.Dirs {
		if err := checkLeaf(d); err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
	}
	m := &manager{bundle: bundle, rec: *rec}
	return m.Delete(ctx)
}

type manager struct {
	bundle string
	rec    record
	into   *os.File // v2
	// The library's view of the cgroup, for updates and statistics: v1
	// (one per hierarchy) or v2. Nil in the delete face's manager.
	v1 cgroup1.Cgroup
	v2 *cgroup2.Manager
	// memory is the directory with the memory controller's files ("" on
	// v1 without a memory hierarchy).
	memory string
	// named: v1 controller name → directory.
	named map[string]string
	// systemd driver (rec.Unit set): the resources for the scope, until
	// the first Add starts it (started).
	pending *specs.LinuxResources
	started bool
}

func (m *manager) IntoFd() *os.File { return m.into }

func (m *manager) Dirs() Dirs {
	return Dirs{Unified: m.rec.Unified, Procs: m.rec.Procs, Freezer: m.rec.Freezer, All: slices.Clone(m.rec.Dirs)}
}

func (m *manager) Add(pid int) error {
	if m.rec.Unit != "" && !m.started {
		if err := m.startScope(pid); err != nil {
			return err
		}
		m.started = true
		return nil
	}
	for _, d := range m.rec.Dirs {
		if err := writeProcs(d, pid); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, m.rec.Path, err)
		}
	}
	return nil
}

// writeProcs retries EINVAL: a task still in TASK_NEW cannot move yet
// (runc and containerd/cgroups do the same).
func writeProcs(dir string, pid int) error {
	var err error
	for range 5 {
		if err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); !errors.Is(err, unix.EINVAL) {
			return err
		}
		time.Sleep(30 * time.Millisecond)
	}
	return err
}

func (m *manager) Pids() ([]int, error) {
	pids, err := procsUnder(m.rec.Procs)
	if err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", m.rec.Path, err)
	}
	return pids, nil
}

func (m *manager) SignalAll(sig syscall.Signal) error {
	if m.rec.Unified && sig == unix.SIGKILL {
		// cgroup.kill (5.14) kills atomically, forks in flight included.
		if err := os.WriteFile(filepath.Join(m.rec.Procs, "cgroup.kill"), []byte("1"), 0); err == nil {
			return nil
		}
	}
	// A paused container stays paused: the signal waits in its frozen
	// processes, as with runc. SIGKILL is the exception: a v1-frozen
	// process cannot die, so the cgroup is thawed after it (runc too).
	thaw := func() error { return m.freeze(false) }
	if paused, _ := m.Frozen(); paused && sig != unix.SIGKILL {
		thaw = func() error { return nil }
	}
	return signalFrozen(func() error { return m.freeze(true) }, thaw, m.Pids, sig)
}

func (m *manager) freeze(on bool) error {
	if m.rec.Unified {
		return freezeV2(m.rec.Procs, on)
	}
	if m.rec.Freezer == "" {
		return cgroup1.ErrFreezerNotSupported
	}
	return freezeV1(m.rec.Freezer, on)
}

func (m *manager) Delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := m.killAll(ctx)
	if err == nil {
		err = m.removeDirs(ctx)
	}
	if err == nil && m.rec.Unit != "" {
		err = m.stopScope(ctx)
	}
	if err == nil {
		err = removeRecord(m.bundle)
	}
	if m.into != nil {
		m.into.Close()
		m.into = nil
	}
	return err
}

// mkdirs makes the missing directories, one level at a time, each listed
// in the record before it is made. EEXIST means someone else (a sibling
// container sharing a parent) made it: not ours. ENOENT means a parent that
// existed was removed meanwhile by its owner: look again.
func (m *manager) mkdirs(l *layout) error {
	for range 5 {
		missing, err := l.missing()
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			// Written even when nothing is made: the record also tells the
			// delete face which cgroup's processes are the container's.
			return writeRecord(m.bundle, &m.rec)
		}
		for _, d := range missing {
			if !slices.Contains(m.rec.Created, d) {
				m.rec.Created = append(m.rec.Created, d)
			}
		}
		if err := writeRecord(m.bundle, &m.rec); err != nil {
			return err
		}
		retry, changed := false, false
		for _, d := range missing {
			err := unix.Mkdir(d, 0o755)
			switch {
			case err == nil:
			case errors.Is(err, unix.EEXIST):
				m.rec.Created = slices.DeleteFunc(m.rec.Created, func(c string) bool { return c == d })
				changed = true
			case errors.Is(err, unix.ENOENT):
				retry = true
			default:
				return &os.PathError{Op: "mkdir", Path: d, Err: err}
			}
			if retry {
				break
			}
		}
		if changed {
			if err := writeRecord(m.bundle, &m.rec); err != nil {
				return err
			}
		}
		if !retry {
			return nil
		}
	}
	return fmt.Errorf("cgroup %s: its parents keep disappearing", m.rec.Path)
}

// killAll SIGKILLs every process left in the cgroup and waits until there
// is none.
func (m *manager) killAll(ctx context.Context) error {
	for i := 0; ; i++ {
		list, err := procsUnder(m.rec.Procs)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list cgroup %s: %w", m.rec.Path, err)
		}
		if len(list) == 0 {
			return nil
		}
		if i == 0 {
			log.G(ctx).WithField("cgroup", m.rec.Path).Debugf("killing %d processes left in the cgroup", len(list))
		}
		if err := m.SignalAll(unix.SIGKILL); err != nil {
			log.G(ctx).WithError(err).WithField("cgroup", m.rec.Path).Warn("kill leftover processes")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s: processes %v still there: %w", m.rec.Path, list, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// removeDirs rmdirs what the record says we created, deepest first; below
// a container directory we created, the sub-cgroups the container made in
// it go first. A parent shared with a sibling stays (EBUSY).
func (m *manager) removeDirs(ctx context.Context) error {
	created := slices.Clone(m.rec.Created)
	slices.SortStableFunc(created, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, d := range created {
		leaf := slices.Contains(m.rec.Dirs, d)
		if leaf {
			if err := rmdirChildren(ctx, d); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := rmdirCgroup(ctx, d, leaf); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirChildren removes the cgroups below dir, deepest first.
func rmdirChildren(ctx context.Context, dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		if err := rmdirChildren(ctx, sub); err != nil {
			return err
		}
		if err := rmdirCgroup(ctx, sub, true); err != nil {
			return err
		}
	}
	return nil
}

// rmdirCgroup removes one empty cgroup directory. On a cgroup filesystem
// rmdir removes a cgroup whatever interface files it shows; anywhere else
// it would be a real directory, which is refused. A leaf is retried for a
// while, since the kernel refuses rmdir for a moment after the last exit;
// a parent that is busy belongs to siblings too and stays.
func rmdirCgroup(ctx context.Context, dir string, leaf bool) error {
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return &os.PathError{Op: "statfs", Path: dir, Err: err}
		}
		if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
			return fmt.Errorf("%s is not on a cgroup filesystem: not removed: %w", dir, errdefs.ErrFailedPrecondition)
		}
		err := unix.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case !leaf && (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY)):
			return nil
		case !errors.Is(err, unix.EBUSY):
			return &os.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// refuseBusy: an existing cgroup is the container's only if nothing else
// lives in it. Busy is a process in it or a child cgroup below it.
func refuseBusy(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := checkCgroupfs(dir); err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			return fmt.Errorf("%s exists and has child cgroups (%s): not the container's own: %w", dir, e.Name(), errdefs.ErrFailedPrecondition)
		}
	}
	pids, err := procsUnder(dir)
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("%s exists and holds processes %v: not the container's own: %w", dir, pids, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func checkCgroupfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not on a cgroup filesystem: %w", dir, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// checkLeaf makes sure dir, if it exists, is a cgroup below a hierarchy's
// root (same filesystem as its parent): killing "everything in it" can
// then never mean everything in the hierarchy.
func checkLeaf(dir string) error {
	var st, pst unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if err := checkCgroupfs(dir); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(dir), &pst); err != nil {
		return &os.PathError{Op: "stat", Path: filepath.Dir(dir), Err: err}
	}
	if st.Dev != pst.Dev {
		return fmt.Errorf("%s is the root of a cgroup hierarchy: %w", dir, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// procsUnder lists the processes of dir and of every cgroup below it.
func procsUnder(dir string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // a child cgroup went away
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s/cgroup.procs: %q: %w", p, f, err)
			}
			if !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
		return nil
	})
	return out, err
}

// freezeV1 sets freezer.state and waits until the kernel says it is done
// (FREEZING means some task is not frozen yet).
func freezeV1(dir string, on bool) error {
	want := "THAWED"
	if on {
		want = "FROZEN"
	}
	f := filepath.Join(dir, "freezer.state")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.WriteFile(f, []byte(want), 0); err != nil {
			return err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got == want {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s, want %s", f, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// freezeV2 sets cgroup.freeze and waits for cgroup.events to agree.
func freezeV2(dir string, on bool) error {
	want := "0"
	if on {
		want = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(want), 0); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, _ := strings.Cut(l, " "); k == "frozen" && v == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: frozen is not %s", dir, want)
		}
		time.Sleep(time.Millisecond)
	}
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
