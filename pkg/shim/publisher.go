package shim

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// Publisher forwards task events to containerd's ttrpc Events service, in
// the order of the Publish calls: Publish appends to a FIFO queue and one
// goroutine forwards its head, retrying with backoff and reconnecting (a
// containerd restart breaks the connection) before it moves on.
type Publisher struct {
	namespace string
	dial      func(ctx context.Context) (net.Conn, error)

	// retry policy: attempts per event and the backoff between them.
	attempts   int
	backoff    time.Duration
	maxBackoff time.Duration
	timeout    time.Duration // per Forward call

	mu     sync.Mutex
	queue  []*types.Envelope
	wake   chan struct{} // signalled (non-blocking) when queue grows or closing
	closed bool

	stop context.CancelFunc // aborts the forwarder (Close's deadline passed)
	done chan struct{}      // closed when the forwarder has returned

	client *ttrpc.Client // forwarder goroutine only
}

var _ process.Publisher = (*Publisher)(nil)

// NewPublisher starts a publisher that forwards to containerd's ttrpc socket
// at address (TTRPC_ADDRESS), tagging every event with namespace.
func NewPublisher(address, namespace string) *Publisher {
	path := socketPath(address)
	return newPublisher(namespace, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	})
}

func newPublisher(namespace string, dial func(context.Context) (net.Conn, error)) *Publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		namespace:  namespace,
		dial:       dial,
		attempts:   8,
		backoff:    100 * time.Millisecond,
		maxBackoff: 5 * time.Second, // 8 attempts span ≈16 s: a containerd restart
		timeout:    5 * time.Second,
		wake:       make(chan struct{}, 1),
		stop:       cancel,
		done:       make(chan struct{}),
	}
	go p.run(ctx)
	return p
}

// Publish queues event under topic. It never blocks; the timestamp is taken
// now, when the event happened.
func (p *Publisher) Publish(ctx context.Context, topic string, event typeurl.Any) {
	env := &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.namespace,
		Topic:     topic,
		Event:     toAny(event),
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		log.G(ctx).WithField("topic", topic).Warn("publisher closed: event dropped")
		return
	}
	p.queue = append(p.queue, env)
	p.mu.Unlock()
	p.signal()
}

func toAny(a typeurl.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	if pa, ok := a.(*anypb.Any); ok {
		return pa
	}
	return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops taking events and waits until the queue is forwarded or ctx
// ends; then it abandons what is left.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.stop()
		<-p.done
		return ctx.Err()
	}
}

// next returns the head of the queue, waiting for one; nil once closed and
// drained or when ctx ends.
func (p *Publisher) next(ctx context.Context) *types.Envelope {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			env := p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
			p.mu.Unlock()
			return env
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return nil
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	defer p.disconnect()
	for {
		env := p.next(ctx)
		if env == nil {
			return
		}
		p.deliver(ctx, env)
	}
}

// deliver forwards one event, retrying; after the last attempt, or when
// containerd answered with an error that a retry cannot fix, it logs and
// drops the event.
func (p *Publisher) deliver(ctx context.Context, env *types.Envelope) {
	delay := p.backoff
	for attempt := 1; ; attempt++ {
		err := p.forward(ctx, env)
		if err == nil {
			return
		}
		entry := log.G(ctx).WithError(err).WithField("topic", env.Topic).WithField("attempt", attempt)
		if permanent(err) || attempt >= p.attempts {
			entry.Error("forward event: dropped")
			return
		}
		entry.Warn("forward event: will retry")
		p.disconnect()
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			entry.Error("forward event: dropped at close")
			return
		}
		delay = min(2*delay, p.maxBackoff)
	}
}

// permanent tells an error containerd answered with (the request is wrong)
// from a broken or busy connection.
func permanent(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.PermissionDenied, codes.Unimplemented, codes.OutOfRange:
		return true
	}
	return false
}

func (p *Publisher) forward(ctx context.Context, env *types.Envelope) error {
	if p.client == nil {
		dctx, cancel := context.WithTimeout(ctx, p.timeout)
		conn, err := p.dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		p.client = ttrpc.NewClient(conn)
	}
	fctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, err := eventsapi.NewTTRPCEventsClient(p.client).Forward(fctx, &eventsapi.ForwardRequest{Envelope: env})
	if errors.Is(err, ttrpc.ErrClosed) {
		p.disconnect()
	}
	return err
}

func (p *Publisher) disconnect() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}
