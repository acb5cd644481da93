package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// The fake task's side of process/cgfeat.go.

func (f *fakeTask) Pause(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Status != process.StatusRunning {
		return fmt.Errorf("pause %s: %w", f.state.Status, errdefs.ErrFailedPrecondition)
	}
	f.state.Status = process.StatusPaused
	return nil
}

func (f *fakeTask) Resume(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Status != process.StatusPaused {
		return fmt.Errorf("resume %s: %w", f.state.Status, errdefs.ErrFailedPrecondition)
	}
	f.state.Status = process.StatusRunning
	return nil
}

// fakeUpdates records what Update got, per task (fakeTask's fields are
// service_test.go's).
var fakeUpdates = struct {
	sync.Mutex
	m map[*fakeTask][]*specs.LinuxResources
}{m: map[*fakeTask][]*specs.LinuxResources{}}

func (f *fakeTask) Update(ctx context.Context, res *specs.LinuxResources) error {
	fakeUpdates.Lock()
	defer fakeUpdates.Unlock()
	fakeUpdates.m[f] = append(fakeUpdates.m[f], res)
	return nil
}

func (f *fakeTask) Stats(ctx context.Context) (*anypb.Any, error) {
	return &anypb.Any{TypeUrl: "io.containerd.cgroups.v1.Metrics"}, nil
}

func TestServiceCgroupFeatures(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: "/b/c1"}); err != nil {
		t.Fatal(err)
	}
	_, err := fx.client.Pause(ctx, &taskapi.PauseRequest{ID: "c1"})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := fx.client.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.client.Pause(ctx, &taskapi.PauseRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	st, err := fx.client.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if err != nil || st.Status != tasktypes.Status_PAUSED {
		t.Fatalf("state after pause: %v %v", st, err)
	}
	if _, err := fx.client.Resume(ctx, &taskapi.ResumeRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	_, err = fx.client.Pause(ctx, &taskapi.PauseRequest{ID: "nope"})
	wantCode(t, err, codes.NotFound)

	limit := int64(64 << 20)
	b, _ := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	url := "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
	if _, err := fx.client.Update(ctx, &taskapi.UpdateTaskRequest{ID: "c1", Resources: &anypb.Any{TypeUrl: url, Value: b}}); err != nil {
		t.Fatal(err)
	}
	ft := fx.task("c1")
	fakeUpdates.Lock()
	got := fakeUpdates.m[ft]
	fakeUpdates.Unlock()
	if len(got) != 1 || got[0].Memory == nil || *got[0].Memory.Limit != limit {
		t.Fatalf("resources reaching the task: %+v", got)
	}
	for name, a := range map[string]*anypb.Any{
		"none":     nil,
		"bad json": {TypeUrl: url, Value: []byte("{")},
		"bad type": {TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: b},
	} {
		_, err := fx.client.Update(ctx, &taskapi.UpdateTaskRequest{ID: "c1", Resources: a})
		if code := status.Code(err); code != codes.InvalidArgument {
			t.Errorf("update with %s: %v, want InvalidArgument", name, err)
		}
	}
	sr, err := fx.client.Stats(ctx, &taskapi.StatsRequest{ID: "c1"})
	if err != nil || sr.Stats.GetTypeUrl() != "io.containerd.cgroups.v1.Metrics" {
		t.Fatalf("stats: %v %v", sr, err)
	}
}
