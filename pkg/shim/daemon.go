package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

const (
	// logOpenTimeout bounds the wait for containerd's end of the log fifo;
	// containerd opens it before it runs start, so it is there at once.
	logOpenTimeout = 10 * time.Second
	// serverDrainTimeout bounds the wait for in-flight requests (the
	// Shutdown response) when the daemon exits.
	serverDrainTimeout = 2 * time.Second
	// eventsDrainTimeout bounds the wait for the events queue to empty.
	eventsDrainTimeout = 10 * time.Second
)

// runDaemon is the long-lived shim: it serves the task API on the listener
// start passed as fd 3 (or -socket) until Shutdown finds no task left or a
// SIGTERM/SIGINT arrives. Containers die with it (that is the point of the
// runtime), so containerd only stops it when it has nothing left to serve.
//
// There is no reaper: no SIGCHLD handler, no child subreaper. Exits come from
// pidfds in pkg/process.
func runDaemon(ctx context.Context, f flags) error {
	// The heap is most of an idle daemon's private memory, and the daemon
	// is idle nearly always: collecting at 40 % growth rather than Go's
	// 100 % keeps the peak heap lower for CPU it has to spare.
	debug.SetGCPercent(40)
	cloexecFrom(3) // fd 3 is read below; nothing inherited goes further

	// A write to the log fifo after containerd went away (a restart) must
	// fail with EPIPE, not kill the shim: Go kills a process on EPIPE on
	// fd 2 unless SIGPIPE is notified. Notify, not Ignore: an ignored
	// signal stays ignored in the containers it execs.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)
	exitSignals := make(chan os.Signal, 1)
	signal.Notify(exitSignals, unix.SIGTERM, unix.SIGINT)

	setupLogger(ctx, f)
	logger := log.G(ctx).WithFields(log.Fields{
		"runtime":   RuntimeName,
		"namespace": f.namespace,
		"id":        f.id,
		"pid":       os.Getpid(),
	})
	ctx = log.WithLogger(ctx, logger)

	mode := pidfd.Probe()
	logger.WithFields(log.Fields{"mode": mode.Name(), "reason": mode.Reason}).Info("shim daemon starting")
	// Off the Create path: the first container should not pay for it.
	if err := process.Prepare(); err != nil {
		logger.WithError(err).Warn("prepare the setup face")
	}

	l, err := daemonListener(f.socket)
	if err != nil {
		logger.WithError(err).Error("no listener")
		return err
	}
	socket := l.Addr().String()

	pub := NewPublisher(os.Getenv(ttrpcAddressEnv), f.namespace)
	shutdown := make(chan struct{})
	svc := newService(processCreate, pub, func() { close(shutdown) })
	svc.namespace = f.namespace
	server, err := newDaemonServer(svc)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, l) }()

	select {
	case <-shutdown:
		logger.Info("shutdown requested")
	case s := <-exitSignals:
		logger.WithField("signal", s).Info("exit signal")
	case err := <-served:
		logger.WithError(err).Error("ttrpc server failed")
	}

	// Let the Shutdown response reach containerd, then stop serving.
	sctx, cancel := context.WithTimeout(ctx, serverDrainTimeout)
	if err := server.Shutdown(sctx); err != nil {
		logger.WithError(err).Debug("ttrpc server shutdown")
		server.Close()
	}
	cancel()
	if socket != "" {
		_ = os.Remove(socket)
	}
	ectx, cancel := context.WithTimeout(ctx, eventsDrainTimeout)
	if err := pub.Close(ectx); err != nil {
		logger.WithError(err).Warn("events left unsent")
	}
	cancel()
	logger.Info("shim daemon exiting")
	return nil
}

// newDaemonServer is the daemon's ttrpc server for the task service:
//   - only peers with the daemon's effective uid and gid may connect, as
//     containerd's own shims require: the socket's file mode is the only
//     other guard, and an abstract or re-permissioned socket would let any
//     local user drive every container of the group;
//   - a panic in a request is recovered into an Internal error with its stack
//     in the log: it would otherwise kill the daemon and, by design, every
//     container it serves. The recovering interceptor is the outermost, so it
//     also catches a panic in the error conversion below it (an error type
//     whose Error method panics);
//   - errdefs errors become gRPC codes, the only place that does.
//
// A panic on a goroutine a handler started is not a request's and still
// ends the daemon.
func newDaemonServer(svc taskapi.TTRPCTaskService) (*ttrpc.Server, error) {
	s, err := ttrpc.NewServer(
		ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()),
		ttrpc.WithChainUnaryServerInterceptor(recoverInterceptor, errorInterceptor),
	)
	if err != nil {
		return nil, fmt.Errorf("ttrpc server: %w", err)
	}
	taskapi.RegisterTTRPCTaskService(s, svc)
	return s, nil
}

func recoverInterceptor(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).WithFields(log.Fields{
				"method": info.FullMethod,
				"panic":  fmt.Sprint(r),
				"stack":  string(debug.Stack()),
			}).Error("request panicked; the daemon goes on")
			resp, err = nil, errgrpc.ToGRPC(fmt.Errorf("%s: panic: %v: %w", info.FullMethod, r, errdefs.ErrInternal))
		}
	}()
	return m(ctx, um)
}

func errorInterceptor(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	resp, err := m(ctx, um)
	if err != nil {
		log.G(ctx).WithError(err).WithField("method", info.FullMethod).Debug("request failed")
	}
	return resp, errgrpc.ToGRPC(err)
}

// setupLogger sends the log to the fifo <bundle>/log that containerd reads
// and copies into its own log, and makes it fd 2 as well so that a panic
// lands there too. Without the fifo (a daemon run by hand) it logs to stderr.
func setupLogger(ctx context.Context, f flags) {
	_ = log.SetFormat(log.TextFormat)
	if f.debug {
		_ = log.SetLevel("debug")
	}
	octx, cancel := context.WithTimeout(ctx, logOpenTimeout)
	defer cancel()
	// Blocking open (bounded by octx): containerd's reader is already open.
	// fifo's non-blocking mode defers the open, which OpenFifoDup2 cannot use.
	if _, err := fifo.OpenFifoDup2(octx, filepath.Join(f.bundle, "log"), unix.O_WRONLY, 0, int(os.Stderr.Fd())); err != nil {
		log.G(ctx).WithError(err).Warn("open shim log fifo")
	}
	log.L.Logger.SetOutput(os.Stderr)
}

// daemonListener is the listener start passed as fd 3, or a new one on path.
func daemonListener(path string) (net.Listener, error) {
	if path != "" {
		return net.Listen("unix", path)
	}
	f := os.NewFile(3, "socket")
	if f == nil {
		return nil, errors.New("no listener on fd 3")
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener on fd 3: %w", err)
	}
	return l, nil
}
