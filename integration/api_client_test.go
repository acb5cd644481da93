package integration

// containerd's own gRPC API, for what ctr cannot say: a full exec process
// spec, and the task events in the order containerd received them.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// apiClient dials the private containerd's gRPC socket; ctx carries the
// test namespace.
func apiClient(t *testing.T) (context.Context, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+cd.address(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The exec tests send process specs near the kernel's argv limit.
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20), grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		t.Fatalf("dial containerd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), timeout(3*time.Minute))
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", testNamespace), conn
}

func tasksClient(t *testing.T) (context.Context, tasksapi.TasksClient) {
	ctx, conn := apiClient(t)
	return ctx, tasksapi.NewTasksClient(conn)
}

// taskEvent is one task event as containerd published it.
type taskEvent struct {
	Topic string
	Exec  string // exec id; "" for the init (TaskExit's ID is the container's)
	Pid   uint32
	Code  uint32
}

func (e taskEvent) String() string {
	if e.Exec == "" {
		return e.Topic
	}
	return e.Topic + " " + e.Exec
}

// eventLog collects the task events of one container from containerd's
// event service, from the moment subscribe returns.
type eventLog struct {
	mu  sync.Mutex
	evs []taskEvent
	err error
}

func subscribe(t *testing.T, id string) *eventLog {
	t.Helper()
	ctx, conn := apiClient(t)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := eventsapi.NewEventsClient(conn).Subscribe(ctx, &eventsapi.SubscribeRequest{
		Filters: []string{"namespace==" + testNamespace},
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	// Subscribe returns before the server has registered us; an event
	// of our own making shows when it has.
	l := &eventLog{}
	ready := make(chan struct{})
	go func() {
		first := true
		for {
			env, err := stream.Recv()
			if first {
				first = false
				close(ready)
			}
			if err != nil {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
				return
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			ev := taskEvent{Topic: env.Topic}
			var cid string
			switch e := v.(type) {
			case *eventstypes.TaskExecAdded:
				cid, ev.Exec = e.ContainerID, e.ExecID
			case *eventstypes.TaskExecStarted:
				cid, ev.Exec, ev.Pid = e.ContainerID, e.ExecID, e.Pid
			case *eventstypes.TaskExit:
				cid, ev.Pid, ev.Code = e.ContainerID, e.Pid, e.ExitStatus
				if e.ID != e.ContainerID {
					ev.Exec = e.ID
				}
			case interface{ GetContainerID() string }:
				cid = e.GetContainerID()
			}
			if cid != id {
				continue
			}
			l.mu.Lock()
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
	// containerd registers the subscriber before its first event: a
	// throwaway container's create is that event.
	probe := id + "-probe"
	mustCtr(t, "containers", "create", "--runtime", runtimeName, imageRef, probe, "true")
	mustCtr(t, "containers", "delete", probe)
	select {
	case <-ready:
	case <-time.After(timeout(30 * time.Second)):
		t.Fatal("event subscription: no event within 30s")
	}
	return l
}

func (l *eventLog) events() []taskEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]taskEvent(nil), l.evs...)
}

// waitFor waits until the log holds an event matching f.
func (l *eventLog) waitFor(t *testing.T, desc string, f func(taskEvent) bool) {
	t.Helper()
	waitFor(t, timeout(30*time.Second), desc, func() bool {
		for _, e := range l.events() {
			if f(e) {
				return true
			}
		}
		return false
	}, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Sprintf("events %v (stream error %v)", l.evs, l.err)
	})
}

func (l *eventLog) String() string {
	var s []string
	for _, e := range l.events() {
		s = append(s, e.String())
	}
	return strings.Join(s, ", ")
}
