package setup

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// appArmorAttr is where the thread that execs names the profile its next
// execve enters (aa_change_onexec): the attr directory of that thread in
// a private procfs (privateProcfs), never the container's /proc, where a
// bind over /proc/self/attr would take the write elsewhere and leave the
// process unconfined (CVE-2019-16884).
type appArmorAttr struct {
	dir  *os.File // <procfs>/<pid>/task/<tid>/attr, O_PATH
	name string   // "apparmor/exec", or "exec" before Linux 5.8
}

// openAppArmorAttr takes the handle while the setup face may still make a
// procfs instance (fsopen needs CAP_SYS_ADMIN, which the spec's
// capabilities may drop). The file itself is opened only once the
// credentials are final: procfs lets a task write its attr only through a
// file it opened with the credentials it has at the write.
func openAppArmorAttr() (*appArmorAttr, error) {
	proc, release, err := privateProcfs()
	if err != nil {
		return nil, fmt.Errorf("process.apparmorProfile: %w", err)
	}
	defer release()
	// The attribute is per thread, and this one execs: the setup and exec
	// faces keep their main goroutine on the main thread. By number, as
	// "thread-self" is a symlink that the resolution below refuses.
	rel := strconv.Itoa(unix.Getpid()) + "/task/" + strconv.Itoa(unix.Gettid()) + "/attr"
	dir, err := linux.Openat2(int(proc.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: procResolve,
	})
	if err != nil {
		return nil, fmt.Errorf("process.apparmorProfile: <private procfs>/%s: %w", rel, err)
	}
	a := &appArmorAttr{dir: dir, name: "apparmor/exec"}
	// attr/apparmor/ came with LSM stacking (5.8); before it AppArmor
	// owned the shared attr/exec.
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), "apparmor", &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		a.name = "exec"
	}
	return a, nil
}

// procResolve keeps a lookup in a private procfs to the files it names.
const procResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

func (a *appArmorAttr) Close() { a.dir.Close() }

// changeOnExec makes the next execve of this thread enter profile. It is
// the last step of prepareProcess, with the final credentials: a profile
// that is not loaded fails Create or the exec there (ENOENT), as runc's
// create does, and the startContainer hooks, forked after it, inherit it
// as they do under runc.
func (a *appArmorAttr) changeOnExec(profile string) error {
	path := "<private procfs>/thread-self/attr/" + a.name
	f, err := linux.Openat2(int(a.dir.Fd()), a.name, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: procResolve,
	})
	if err != nil {
		return fmt.Errorf("process.apparmorProfile %q: %s: %w", profile, path, err)
	}
	defer f.Close()
	cmd := spec.AppArmorExecCommand(profile)
	n, err := unix.Write(int(f.Fd()), []byte(cmd))
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("process.apparmorProfile %q: no such profile is loaded (apparmor_parser -r loads one): write %s: %w: %w",
			profile, path, err, errdefs.ErrFailedPrecondition)
	case err != nil:
		// EACCES: the runtime's own confinement may not change to it;
		// EINVAL: AppArmor is not the LSM behind the file.
		return fmt.Errorf("process.apparmorProfile %q: write %s: %w", profile, path, os.NewSyscallError("write", err))
	case n != len(cmd):
		return fmt.Errorf("process.apparmorProfile %q: write %s: %d of %d bytes taken", profile, path, n, len(cmd))
	}
	return nil
}
