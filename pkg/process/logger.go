package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// logger is a binary:// logging process, containerd's protocol: the binary
// reads the container's stdout on fd 3 and stderr on fd 4, and closes fd 5
// once it is ready.
//
// It is a helper the shim starts while it holds autokill pidfds: os/exec
// passes it only the three ExtraFiles, and every pidfd is CLOEXEC, so it can
// never keep a container alive after the shim dies.
type logger struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // the container's ends
}

const loggerReadyTimeout = 10 * time.Second

func startLogger(ctx context.Context, u *url.URL, id, ns string) (_ *logger, retErr error) {
	if u.Path == "" {
		return nil, fmt.Errorf("logging binary %q: no path: %w", u, errdefs.ErrInvalidArgument)
	}
	// Arguments are the query's key/value pairs, in a stable order.
	var args []string
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k)
		if v := q.Get(k); v != "" {
			args = append(args, v)
		}
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return nil, err
	}
	files = append(files, outR, errR, readyR, readyW)
	defer func() {
		if retErr != nil {
			outW.Close()
			errW.Close()
		}
	}()
	cmd := exec.Command(u.Path, args...)
	cmd.Env = append(os.Environ(), "CONTAINER_ID="+id, "CONTAINER_NAMESPACE="+ns)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start logging binary %s: %w", u.Path, startErrClass(err))
	}
	readyW.Close()
	files = files[:3]
	done := make(chan error, 1)
	go func() {
		// EOF once the binary closed fd 5 (or died).
		_, err := readyR.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(loggerReadyTimeout):
		// os.Process holds a pidfd (Go 1.23+): this is pidfd_send_signal.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("logging binary %s not ready after %v", u.Path, loggerReadyTimeout)
	}
	log.G(ctx).WithField("pid", cmd.Process.Pid).Debug("logging binary ready")
	return &logger{cmd: cmd, stdout: outW, stderr: errW}, nil
}

// startErrClass gives a logging binary that cannot be started its errdefs
// class: the URI names a missing file (NotFound) or one that is not an
// executable (InvalidArgument).
func startErrClass(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.ENOEXEC), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return err
}

// wait collects the logging binary, which exits once the container's last
// writer closed its pipes.
func (l *logger) wait() error {
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("logging binary: %w", err)
		}
		return nil
	case <-time.After(loggerReadyTimeout):
		_ = l.cmd.Process.Kill()
		<-done
		return fmt.Errorf("logging binary did not exit %v after the container; killed", loggerReadyTimeout)
	}
}
