package shim

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeEvents is containerd's ttrpc Events service: it records what it
// receives and fails the calls the test asks it to.
type fakeEvents struct {
	mu       sync.Mutex
	received []*eventsapi.ForwardRequest
	fail     func(n int, req *eventsapi.ForwardRequest) error // n counts calls from 1
	calls    int
	got      chan struct{}
}

func (f *fakeEvents) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls, req); err != nil {
			return nil, err
		}
	}
	f.received = append(f.received, req)
	select {
	case f.got <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeEvents) topics() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ts []string
	for _, r := range f.received {
		ts = append(ts, r.Envelope.Topic)
	}
	return ts
}

// serveEvents serves svc on sock until the returned stop is called.
func serveEvents(t *testing.T, sock string, svc *fakeEvents) (stop func()) {
	t.Helper()
	s, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(s, svc)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background(), l)
	var once sync.Once
	// Shutdown, not Close: a response in flight still reaches the
	// publisher, or it would rightly send that event again to the next
	// containerd and the test would see it twice.
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func fastPublisher(sock, ns string) *Publisher {
	p := NewPublisher("unix://"+sock, ns)
	p.backoff = time.Millisecond
	p.maxBackoff = 20 * time.Millisecond
	p.timeout = time.Second
	return p
}

func exitEvent(id string, status uint32) typeurl.Any {
	a, err := typeurl.MarshalAnyToProto(&eventstypes.TaskExit{ContainerID: id, ID: id, ExitStatus: status})
	if err != nil {
		panic(err)
	}
	return a
}

func publishN(p *Publisher, n int) []string {
	var want []string
	for i := range n {
		topic := fmt.Sprintf("/tasks/t%03d", i)
		want = append(want, topic)
		p.Publish(context.Background(), topic, exitEvent("c", uint32(i)))
	}
	return want
}

func closeWithin(t *testing.T, p *Publisher, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPublisherOrderAndEnvelope(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ttrpc")
	ev := &fakeEvents{got: make(chan struct{}, 1)}
	serveEvents(t, sock, ev)

	p := fastPublisher(sock, "ns1")
	before := time.Now()
	want := publishN(p, 200)
	closeWithin(t, p, 10*time.Second)

	if got := ev.topics(); !equal(got, want) {
		t.Fatalf("order: got %v", got)
	}
	env := ev.received[0].Envelope
	if env.Namespace != "ns1" || env.Timestamp.AsTime().Before(before.Add(-time.Second)) {
		t.Fatalf("envelope %v", env)
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.(*eventstypes.TaskExit); !ok || e.ContainerID != "c" {
		t.Fatalf("event %#v", v)
	}
}

// TestPublisherRetry: failed sends are retried in place, so a failure never
// reorders events; an event failing every attempt is dropped and the next
// goes on; an error containerd answers for a bad request is not retried.
func TestPublisherRetry(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ttrpc")
	ev := &fakeEvents{got: make(chan struct{}, 1)}
	tries := map[string]int{}
	ev.fail = func(n int, req *eventsapi.ForwardRequest) error {
		topic := req.Envelope.Topic
		tries[topic]++
		switch topic {
		case "/tasks/t001": // fails twice, then passes
			if tries[topic] <= 2 {
				return status.Error(codes.Unavailable, "busy")
			}
		case "/tasks/t003": // never passes
			return status.Error(codes.Unavailable, "busy")
		case "/tasks/t004": // containerd rejects it
			return status.Error(codes.InvalidArgument, "bad namespace")
		}
		return nil
	}
	serveEvents(t, sock, ev)
	p := fastPublisher(sock, "ns1")
	p.attempts = 4
	publishN(p, 6)
	closeWithin(t, p, 10*time.Second)

	want := []string{"/tasks/t000", "/tasks/t001", "/tasks/t002", "/tasks/t005"}
	if got := ev.topics(); !equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if tries["/tasks/t001"] != 3 || tries["/tasks/t003"] != 4 || tries["/tasks/t004"] != 1 {
		t.Fatalf("tries %v", tries)
	}
}

// TestPublisherReconnect: containerd restarts (its ttrpc socket goes away
// and comes back); queued events reach the new one, in order.
func TestPublisherReconnect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ttrpc")
	ev1 := &fakeEvents{got: make(chan struct{}, 1)}
	stop := serveEvents(t, sock, ev1)
	p := fastPublisher(sock, "ns1")
	p.attempts = 50 // 20 ms apart: ≈1 s

	p.Publish(context.Background(), "/tasks/create", exitEvent("c", 0))
	select {
	case <-ev1.got:
	case <-time.After(5 * time.Second):
		t.Fatal("first event not delivered")
	}
	stop()

	for _, topic := range []string{"/tasks/start", "/tasks/exit", "/tasks/delete"} {
		p.Publish(context.Background(), topic, exitEvent("c", 0))
	}
	time.Sleep(100 * time.Millisecond)
	ev2 := &fakeEvents{got: make(chan struct{}, 1)}
	serveEvents(t, sock, ev2)
	closeWithin(t, p, 10*time.Second)

	// Nothing lost, order kept, at least once: the old containerd may
	// still take an event while it shuts down, and one whose reply the
	// restart cut (delivered, but the publisher saw "ttrpc: closed") is
	// sent again to the new one.
	before, after := ev1.topics(), ev2.topics()
	var seen []string
	for _, topic := range append(before, after...) {
		if len(seen) == 0 || seen[len(seen)-1] != topic {
			seen = append(seen, topic)
		}
	}
	if !equal(seen, []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}) || len(after) == 0 || after[len(after)-1] != "/tasks/delete" {
		t.Fatalf("before the restart %v, after it %v", before, after)
	}
}

// TestPublisherCloseBounded: with containerd gone, Close gives up at its
// deadline instead of hanging, and Publish after Close drops.
func TestPublisherCloseBounded(t *testing.T) {
	p := fastPublisher(filepath.Join(t.TempDir(), "nothing"), "ns1")
	p.attempts = 1 << 20
	publishN(p, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Close(ctx); err == nil {
		t.Fatal("close reported a drained queue")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("close took %v", d)
	}
	p.Publish(context.Background(), "/tasks/late", exitEvent("c", 0)) // must not block or panic
}
