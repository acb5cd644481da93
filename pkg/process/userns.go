package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mount"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// writeIDMaps writes the maps of the init's new user namespace. /proc/<pid>
// is opened first and the pidfd asked afterwards whether the process still
// exists: if it does, the directory is that of our child, not of a process
// that reused its pid (in native mode an exited child is reaped at once).
func writeIDMaps(p *pidfd.Process, u *spec.UserNS) error {
	dir, err := os.OpenFile("/proc/"+strconv.Itoa(p.Pid()), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("user namespace: %w", err)
	}
	defer dir.Close()
	if err := p.Signal(0); err != nil {
		return fmt.Errorf("user namespace: the init is gone before its maps were written: %w", err)
	}
	// gid_map after uid_map, as every runtime does; setgroups stays
	// "allow" (a privileged writer), so the setup face can set the spec's
	// additional gids.
	if err := writeMap(dir, "uid_map", u.UIDMappings); err != nil {
		return err
	}
	return writeMap(dir, "gid_map", u.GIDMappings)
}

func writeMap(dir *os.File, name string, m []specs.LinuxIDMapping) error {
	var b strings.Builder
	for _, e := range m {
		fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("user namespace: open %s: %w", name, err)
	}
	defer unix.Close(fd)
	// The kernel takes a map in one write only.
	if _, err := unix.Write(fd, []byte(b.String())); err != nil {
		err = fmt.Errorf("user namespace: write %s %q: %w", name, b.String(), os.NewSyscallError("write", err))
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return err
	}
	return nil
}

// idmapStageDir holds the daemon's copies of bind sources for one
// container, under its bundle, until the setup face is Ready (or Delete).
func idmapStageDir(bundle string) string { return filepath.Join(bundle, "autokill-idmap") }

// stageIDMapped makes, in the daemon, the bind sources the setup face could
// not reach or make itself, attaches each under the bundle and points the
// plan's mount there. It must run before clone3: the container's mount
// namespace is a copy of ours at that moment. The setup face then binds the
// staged mount like any source.
//   - An id-mapped bind: the kernel wants privilege over the source
//     filesystem's user namespace, the host's, which the setup face in the
//     container's user namespace lacks. A bind of an id-mapped mount keeps
//     the mapping.
//   - Every other bind of a container with a user namespace: its root is a
//     mapped host uid, which cannot even look up a source below a 0700
//     directory, such as the sandbox's /dev/shm in CRI's state directory
//     (runc opens those sources outside the user namespace too). The clone
//     (open_tree, recursive for rbind) keeps the source's peer group, so
//     propagation works as for a direct bind.
func stageIDMapped(bundle string, plan *spec.Plan) (retErr error) {
	var dir string
	defer func() {
		if retErr != nil && dir != "" {
			_ = unstageIDMapped(bundle)
		}
	}()
	userns := map[string]*os.File{}
	defer func() {
		for _, f := range userns {
			f.Close()
		}
	}()
	for i := range plan.Mounts {
		m := &plan.Mounts[i]
		if m.IDMap == nil && (plan.UserNS == nil || !m.IsBind()) {
			continue
		}
		if dir == "" {
			dir = idmapStageDir(bundle)
			if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("id-mapped mounts: %w", err)
			}
		}
		var ns *os.File
		if m.IDMap != nil {
			key := fmt.Sprint(m.IDMap.UIDMappings, m.IDMap.GIDMappings)
			if ns = userns[key]; ns == nil {
				f, err := mount.NewUserNS(m.IDMap.UIDMappings, m.IDMap.GIDMappings)
				if err != nil {
					return fmt.Errorf("mounts %s: %w", m.Destination, err)
				}
				userns[key], ns = f, f
			}
		}
		st, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("mounts %s: source: %w: %w", m.Destination, err, errdefs.ErrInvalidArgument)
		}
		stage := filepath.Join(dir, strconv.Itoa(i))
		if st.IsDir() {
			err = os.Mkdir(stage, 0o700)
		} else {
			var f *os.File
			if f, err = os.OpenFile(stage, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("mounts %s: %w", m.Destination, err)
		}
		var mnt *os.File
		if ns != nil {
			mnt, err = mount.IDMapped(m.Source, m.Flags&unix.MS_REC != 0, m.IDMap.Recursive, ns)
		} else {
			mnt, err = mount.Clone(m.Source, m.Flags&unix.MS_REC != 0)
		}
		if err != nil {
			return fmt.Errorf("mounts %s: %w", m.Destination, err)
		}
		err = mount.Attach(mnt, stage)
		mnt.Close()
		if err != nil {
			return fmt.Errorf("mounts %s: %w", m.Destination, err)
		}
		m.Source = stage
	}
	return nil
}

// unstageIDMapped detaches what stageIDMapped attached; the container's
// own binds of them are separate mounts and stay.
func unstageIDMapped(bundle string) error {
	dir := idmapStageDir(bundle)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, &os.PathError{Op: "umount", Path: p, Err: err})
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.Remove(dir))
	}
	return errors.Join(errs...)
}

// userNSAttr sets the user namespace part of the init's clone3: a new one
// (CLONE_NEWUSER is in the plan's flags; the trampoline waits for its
// maps), or one joined by path, first of all setns so that the namespaces
// the container creates are unshared after it and belong to it.
func userNSAttr(plan *spec.Plan, attr *pidfd.SpawnAttr, files *[]*os.File) error {
	u := plan.UserNS
	if u == nil {
		return nil
	}
	if u.Path == "" {
		attr.UserNS = true
		return nil
	}
	create := plan.Namespaces.Create
	f, err := os.Open(u.Path)
	if err != nil {
		return fmt.Errorf("join user namespace: %w", err)
	}
	*files = append(*files, f)
	if err := pidfd.CheckNamespace(f, unix.CLONE_NEWUSER); err != nil {
		return fmt.Errorf("join user namespace: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(u.UIDMappings) > 0 {
		// The maps of a namespace are readable only through a process in
		// it: a holder shows them.
		if err := checkJoinedMaps(attr.Exe, f, u); err != nil {
			return err
		}
	}
	attr.Setns = append([]pidfd.Namespace{{File: f, Type: unix.CLONE_NEWUSER}}, attr.Setns...)
	attr.Cloneflags = 0
	attr.Unshare = create
	attr.BecomeRoot = true
	// A new pid namespace must be owned by the joined user namespace (its
	// root mounts the container's /proc), so it is unshared in there, and
	// it has no pid 1 until someone there forks: a launcher does, and hands
	// the init's pidfd back (pidfd.SpawnAttr.Launch).
	attr.Launch = create&unix.CLONE_NEWPID != 0
	return nil
}

// checkJoinedMaps runs a holder (pkg/pidfd) in the user namespace userns
// and compares its maps with the spec's.
func checkJoinedMaps(exe, userns *os.File, u *spec.UserNS) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("user namespace holder: %w", os.NewSyscallError("socketpair", err))
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "holder"), os.NewFile(uintptr(fds[1]), "holder-child")
	defer ours.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		theirs.Close()
		return err
	}
	defer null.Close()
	attr := &pidfd.SpawnAttr{
		Exe:    exe,
		Args:   []string{"autokill-userns-holder"},
		Stdio:  [3]*os.File{null, null, null},
		Sync:   theirs,
		Setns:  []pidfd.Namespace{{File: userns, Type: unix.CLONE_NEWUSER}},
		Holder: true,
	}
	p, err := pidfd.Spawn(attr)
	theirs.Close()
	if err != nil {
		return fmt.Errorf("user namespace holder: %w", err)
	}
	defer func() {
		_ = p.Signal(unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = p.Wait(ctx)
		cancel()
		p.Close()
	}()
	// One byte: it is in its namespaces. Anything else is the trampoline's
	// failure report (setns refused...).
	var b [512]byte
	pfd := []unix.PollFd{{Fd: int32(ours.Fd()), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 10000); err != nil || n == 0 {
		return fmt.Errorf("user namespace holder: no answer (%v)", err)
	}
	n, err := unix.Read(int(ours.Fd()), b[:])
	if err != nil || n != 1 {
		return fmt.Errorf("join user namespace %s: %q (%v): %w", u.Path, b[:max(n, 0)], err, errdefs.ErrInvalidArgument)
	}
	dir, err := os.OpenFile("/proc/"+strconv.Itoa(p.Pid()), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("user namespace holder: %w", err)
	}
	defer dir.Close()
	// It waits for our hang-up, so it lives: the directory is its own.
	if err := p.Signal(0); err != nil {
		return fmt.Errorf("user namespace holder: %w", err)
	}
	if err := sameMap(dir, "uid_map", u.UIDMappings); err != nil {
		return fmt.Errorf("join user namespace %s: %w", u.Path, err)
	}
	if err := sameMap(dir, "gid_map", u.GIDMappings); err != nil {
		return fmt.Errorf("join user namespace %s: %w", u.Path, err)
	}
	return nil
}

// sameMap compares /proc/<pid>/<name> with the spec's mappings, in any order.
func sameMap(dir *os.File, name string, want []specs.LinuxIDMapping) error {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	got, err := parseMap(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	key := func(m specs.LinuxIDMapping) string { return fmt.Sprint(m.ContainerID, m.HostID, m.Size) }
	g, w := make([]string, len(got)), make([]string, len(want))
	for i := range got {
		g[i] = key(got[i])
	}
	for i := range want {
		w[i] = key(want[i])
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		return fmt.Errorf("its %s is %v, the spec says %v: %w", name, got, want, errdefs.ErrInvalidArgument)
	}
	return nil
}

func parseMap(s string) ([]specs.LinuxIDMapping, error) {
	var out []specs.LinuxIDMapping
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %q", l)
		}
		var n [3]uint32
		for i, x := range f {
			v, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", l, err)
			}
			n[i] = uint32(v)
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	return out, nil
}

// releaseUserNS writes the maps of the init's new user namespace and lets
// its trampoline go on.
func releaseUserNS(p *pidfd.Process, conn *initsync.Parent, u *spec.UserNS) error {
	if err := writeIDMaps(p, u); err != nil {
		return err
	}
	return conn.ReleaseUserNS()
}
