package setup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned by lookPath when no executable matches. It is an
// errdefs NotFound, so containerd reports a missing entrypoint as such.
var ErrNotFound error = notFoundError{}

type notFoundError struct{}

func (notFoundError) Error() string        { return "executable file not found in $PATH" }
func (notFoundError) Is(target error) bool { return target == errdefs.ErrNotFound }

// envPath returns the value of PATH in env (the container's environment,
// not ours), and whether it is set.
func envPath(env []string) (string, bool) {
	var v string
	var ok bool
	for _, e := range env {
		if rest, found := strings.CutPrefix(e, "PATH="); found {
			v, ok = rest, true // the last one wins, as with getenv after putenv
		}
	}
	return v, ok
}

// executable checks that p is a regular file the current credentials may
// execute (faccessat2 with AT_EACCESS: the effective ids and capabilities
// that execve will use).
func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.Mode().IsDir() || !st.Mode().IsRegular() {
		return &os.PathError{Op: "exec", Path: p, Err: unix.EACCES}
	}
	if err := unix.Faccessat2(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS); err != nil {
		return &os.PathError{Op: "exec", Path: p, Err: err}
	}
	return nil
}

// lookPath resolves the entrypoint like execvp does, with the PATH of the
// container's env: a name with a slash is taken as is (relative to the
// cwd), otherwise each PATH entry is tried in order (an empty entry is the
// cwd). Without PATH in env, nothing is searched.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
			}
			return "", fmt.Errorf("exec: %q: %w", name, err)
		}
		return name, nil
	}
	pathEnv, _ := envPath(env)
	var denied error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := executable(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, fs.ErrPermission) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", fmt.Errorf("exec: %q: %w", name, denied)
	}
	return "", fmt.Errorf("exec: %q: %w", name, ErrNotFound)
}

// closeExtraFds marks every fd above stderr close-on-exec: the entrypoint
// inherits stdio only (fd 3, the initsync socket, closes on exec, which is
// how the daemon learns that exec worked).
func closeExtraFds() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Before Linux 5.11: walk /proc/self/fd.
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close_range: %v; %w", err, rerr)
	}
	for _, e := range entries {
		var fd int
		if _, serr := fmt.Sscan(e.Name(), &fd); serr == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}
