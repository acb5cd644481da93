package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
)

const (
	// defaultSocketDir is where containerd's shims put their sockets when
	// containerd names no socket_dir (1.x, 2.0-2.2).
	defaultSocketDir = "/run/containerd/s"
	// socketPathLimit is sun_path's size less the NUL, as containerd checks it.
	socketPathLimit = 106
	// stdinLimit bounds what start and -info read from stdin.
	stdinLimit = 16 << 20

	maxShimVersionEnv = "MAX_SHIM_VERSION"
	ttrpcAddressEnv   = "TTRPC_ADDRESS"
)

// stdinTimeout bounds the wait for stdin's writer to close it.
var stdinTimeout = 5 * time.Second

// groupAnnotations name the group of a container, first match wins: the
// containers of one group (a Kubernetes pod) share one daemon.
var groupAnnotations = []string{
	"io.containerd.runc.v2.group",
	"io.kubernetes.cri.sandbox-id",
}

// runStart is the start face: it makes sure a daemon serves the container's
// group, writes <bundle>/address and prints the address in the form the
// calling containerd reads. containerd 1.6 reads stdout and stderr together
// (CombinedOutput), so on success nothing else may be printed.
func runStart(ctx context.Context, f flags, stdin *os.File, stdout io.Writer) error {
	cloexecFrom(3)
	in := readStdin(stdin)
	params := parseBootstrapParams(in, f.id, f.namespace)

	socketDir := defaultSocketDir
	grpcAddress := f.address
	debug := f.debug
	env := os.Environ()
	if params != nil {
		if d := params.GetSocketDir(); d != "" {
			// A relative directory would put the socket wherever the
			// start face's cwd (the bundle) happens to be.
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				return fmt.Errorf("start: socket directory %q from containerd is not a clean absolute path: %w", d, errdefs.ErrInvalidArgument)
			}
			socketDir = d
		}
		if grpcAddress == "" {
			grpcAddress = params.GetContainerdGrpcAddress()
		}
		if params.GetLogLevel() <= bootstrap.LogLevel_LOG_LEVEL_DEBUG {
			debug = true
		}
		if os.Getenv(ttrpcAddressEnv) == "" && params.GetContainerdTtrpcAddress() != "" {
			env = append(env, ttrpcAddressEnv+"="+params.GetContainerdTtrpcAddress())
		}
	}
	// The daemon waits on sockets, pidfds and fifos; it computes nothing in
	// parallel. One P keeps its thread count, and with it its memory per
	// pod, low on a node with many cores. A GOMAXPROCS the user set in
	// containerd's environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		env = append(env, "GOMAXPROCS=1")
	}

	group, err := groupID(f.bundle, f.id)
	if err != nil {
		return err
	}
	address := socketAddress(socketDir, grpcAddress, f.namespace, group)

	l, err := listen(address)
	if errors.Is(err, errDaemonRunning) {
		// Another container of the group already has a daemon: share it.
		if err := writeAddress(f.bundle, address); err != nil {
			return err
		}
		_, err = stdout.Write(startAnswer(params, os.Getenv(maxShimVersionEnv), address))
		return err
	}
	if err != nil {
		return err
	}
	defer l.Close() // unlinks the socket unless the daemon took it over

	daemon, err := startDaemon(f, grpcAddress, debug, env, l)
	if err != nil {
		return err
	}
	// As containerd's runc shim: the daemon, once started, joins the
	// ShimCgroup of the first container's options, and start fails if it
	// cannot. It serves nothing before start answers, so it has no
	// children yet (the guard, the containers) that would stay behind.
	if cg := startShimCgroup(in, params); cg != "" {
		if err := cgroups.JoinExisting(cg, daemon.Pid); err != nil {
			_ = daemon.Kill()
			_ = daemon.Release()
			return fmt.Errorf("start: runtime option ShimCgroup: %w", err)
		}
	}
	if err := writeAddress(f.bundle, address); err != nil {
		_ = daemon.Kill()
		_ = daemon.Release()
		return err
	}
	adjustOOMScore(daemon.Pid)
	_ = daemon.Release()
	l.SetUnlinkOnClose(false)

	_, err = stdout.Write(startAnswer(params, os.Getenv(maxShimVersionEnv), address))
	return err
}

// readStdin returns what containerd wrote on stdin: BootstrapParams (2.3+),
// runtime options (1.6-2.2 start, -info) or nothing. It reads only a pipe,
// socket or regular file, never a terminal, and gives up after stdinTimeout
// with nothing when the writer keeps it open.
func readStdin(f *os.File) []byte {
	if f == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFREG:
	default:
		return nil
	}
	done := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(f, stdinLimit))
		if err != nil {
			b = nil
		}
		done <- b
	}()
	select {
	case b := <-done:
		return b
	case <-time.After(stdinTimeout):
		return nil
	}
}

// parseBootstrapParams returns the BootstrapParams containerd 2.3+ wrote on
// stdin, or nil. The id and namespace must match the flags: older containerd
// write the runtime options there, a protobuf Any that may decode as
// BootstrapParams by accident (type_url as instance_id).
func parseBootstrapParams(in []byte, id, namespace string) *bootstrap.BootstrapParams {
	if len(in) == 0 {
		return nil
	}
	var p bootstrap.BootstrapParams
	if err := proto.Unmarshal(in, &p); err != nil {
		return nil
	}
	if p.GetInstanceID() != id || p.GetNamespace() != namespace {
		return nil
	}
	return &p
}

// startAnswer is what start prints, by what the calling containerd reads:
//   - 2.3+ (BootstrapParams on stdin): a protobuf BootstrapResult;
//   - 1.7, 2.0-2.2 (MAX_SHIM_VERSION set): JSON {"version":2,...};
//   - 1.6: the plain address.
//
// Version 2 is the task v2 API; every version from 1.7 on accepts it, also in
// the protobuf result (2.x bridges v2 to its v3 client). The plain address has
// no newline: 2.3 does not trim it.
func startAnswer(params *bootstrap.BootstrapParams, maxShimVersion, address string) []byte {
	if params != nil {
		b, err := proto.Marshal(&bootstrap.BootstrapResult{Version: 2, Address: address, Protocol: "ttrpc"})
		if err == nil {
			return b
		}
	}
	if v, err := strconv.Atoi(strings.TrimSpace(maxShimVersion)); err == nil && v >= 2 {
		b, err := json.Marshal(struct {
			Version  int    `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}{2, address, "ttrpc"})
		if err == nil {
			return b
		}
	}
	return []byte(address)
}

// groupID is the id of the daemon's group: the first group annotation of the
// bundle's config.json, else the container's id.
func groupID(bundle, id string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return "", err
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	for _, a := range groupAnnotations {
		if g, ok := spec.Annotations[a]; ok && g != "" {
			return g, nil
		}
	}
	return id, nil
}

// socketAddress derives the group's socket like containerd's shims do:
// sha256 of containerd's gRPC address, the namespace and the group id.
func socketAddress(socketDir, grpcAddress, namespace, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(grpcAddress, namespace, group)))
	return "unix://" + filepath.Join(socketDir, hex.EncodeToString(d[:]))
}

func socketPath(address string) string { return strings.TrimPrefix(address, "unix://") }

var errDaemonRunning = errors.New("a daemon already serves the socket")

// listen creates the group's socket. errDaemonRunning when a live daemon
// answers on it; a stale socket is replaced.
func listen(address string) (*net.UnixListener, error) {
	path := socketPath(address)
	if len(path) > socketPathLimit {
		return nil, fmt.Errorf("%s: unix socket path too long (> %d)", path, socketPathLimit)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			if err := os.Chmod(path, 0o600); err != nil {
				l.Close()
				return nil, err
			}
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt > 0 {
			return nil, err
		}
		if canConnect(path) {
			return nil, errDaemonRunning
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
}

func canConnect(path string) bool {
	c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startDaemon re-executes the shim without the action: a new session, the
// listener as fd 3, cwd the bundle, stdio /dev/null (the daemon opens the log
// fifo). Go creates the listener and its File() copy close-on-exec; only the
// ExtraFile is inherited.
func startDaemon(f flags, grpcAddress string, debug bool, env []string, l *net.UnixListener) (*os.Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	lf, err := l.File()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	args := []string{
		"-namespace", f.namespace,
		"-id", f.id,
		"-address", grpcAddress,
	}
	if f.publishBinary != "" {
		args = append(args, "-publish-binary", f.publishBinary)
	}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = f.bundle
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim daemon: %w", err)
	}
	return cmd.Process, nil
}

// adjustOOMScore gives the daemon containerd's oom_score_adj + 1, as
// containerd's shims do, so the OOM killer takes a shim before containerd.
// Best effort: start may not print anything.
func adjustOOMScore(pid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", os.Getppid()))
	if err != nil {
		return
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || score >= 1000 {
		return
	}
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(score+1)), 0o644)
}

// writeAddress writes <bundle>/address atomically: containerd 1.x reconnects
// from it after a restart, 2.x migrates it into bootstrap.json.
func writeAddress(bundle, address string) error {
	path := filepath.Join(bundle, "address")
	tmp := filepath.Join(bundle, ".address")
	if err := os.WriteFile(tmp, []byte(address), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readAddress reads <bundle>/address.
func readAddress(bundle string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "address"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
