package shim

import (
	"bytes"
	"context"
	"strings"
	"testing"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

func optionsAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Create hands IoUid/IoGid to the task, refuses what cannot be decoded with
// InvalidArgument before anything is made, passes SystemdCgroup on,
// and does not keep the id of a refused request.
func TestServiceCreateOptions(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	for _, a := range []*anypb.Any{
		optionsAny(t, &runcopts.Options{IoUid: 1000, IoGid: 1001}),
		optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("IoUid = 1000\nIoGid = 1001\n")}),
	} {
		id := "c-" + strings.ReplaceAll(a.TypeUrl, ".", "-")
		if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: "/b/" + id, Options: a}); err != nil {
			t.Fatalf("create with %s: %v", a.TypeUrl, err)
		}
		fx.mu.Lock()
		cfg := fx.created[len(fx.created)-1]
		fx.mu.Unlock()
		if cfg.IOUID != 1000 || cfg.IOGID != 1001 {
			t.Errorf("%s: config %+v, want IoUid 1000 IoGid 1001", a.TypeUrl, cfg)
		}
	}
	for _, tc := range []struct {
		a    *anypb.Any
		want codes.Code
	}{
		{optionsAny(t, &types.Mount{Type: "bind"}), codes.InvalidArgument},
		{optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("Bogus = true")}), codes.InvalidArgument},
	} {
		fx.mu.Lock()
		n := len(fx.created)
		fx.mu.Unlock()
		_, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad", Bundle: "/b/bad", Options: tc.a})
		wantCode(t, err, tc.want)
		fx.mu.Lock()
		if len(fx.created) != n {
			t.Errorf("%s: the task was created", tc.a.TypeUrl)
		}
		fx.mu.Unlock()
	}
	if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad", Bundle: "/b/bad"}); err != nil {
		t.Fatalf("the id of refused requests is not free: %v", err)
	}
	if _, err := fx.client.Create(ctx, &taskapi.CreateTaskRequest{ID: "sd", Bundle: "/b/sd", Options: optionsAny(t, &runcopts.Options{SystemdCgroup: true})}); err != nil {
		t.Fatalf("create with SystemdCgroup: %v", err)
	}
	fx.mu.Lock()
	if cfg := fx.created[len(fx.created)-1]; !cfg.Systemd {
		t.Errorf("SystemdCgroup: config %+v, want Systemd", cfg)
	}
	fx.mu.Unlock()
}

// An option that cannot apply is a warning in the shim log, once per daemon.
func TestCreateOptionsWarnOnce(t *testing.T) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(l))
	ignoredWarned.Delete("NoPivotRoot")
	ignoredWarned.Delete("BinaryName")
	a := optionsAny(t, &runcopts.Options{NoPivotRoot: true, BinaryName: "crun", NoNewKeyring: true})
	for range 3 {
		if _, err := createOptions(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	for _, o := range []string{"NoPivotRoot", "BinaryName"} {
		if n := strings.Count(out, "option="+o); n != 1 {
			t.Errorf("%d warnings for %s, want 1:\n%s", n, o, out)
		}
	}
	if strings.Contains(out, "NoNewKeyring") || !strings.Contains(out, "level=warning") {
		t.Errorf("log:\n%s", out)
	}
}

// The start face finds ShimCgroup in every form containerd sends the
// options to start: an Any on stdin (1.6-2.2) or a Bootstrap extension (2.3+).
func TestStartShimCgroup(t *testing.T) {
	runc := optionsAny(t, &runcopts.Options{ShimCgroup: "/shims"})
	ours := optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte(`ShimCgroup = "/shims"`)})
	for name, tc := range map[string]struct {
		stdin  []byte
		params *bootstrap.BootstrapParams
		want   string
	}{
		"1.6 runc options":    {mustMarshal(t, runc), nil, "/shims"},
		"1.6 runtimeoptions":  {mustMarshal(t, ours), nil, "/shims"},
		"2.4 extension":       {nil, &bootstrap.BootstrapParams{Extensions: []*bootstrap.Extension{{Value: runc}}}, "/shims"},
		"2.4 no extension":    {nil, &bootstrap.BootstrapParams{}, ""},
		"nothing":             {nil, nil, ""},
		"garbage":             {[]byte("\xff\xff"), nil, ""},
		"invalid path":        {mustMarshal(t, optionsAny(t, &runcopts.Options{ShimCgroup: "/a/../b"})), nil, ""},
		"unknown option type": {mustMarshal(t, optionsAny(t, &types.Mount{})), nil, ""},
	} {
		if got := startShimCgroup(tc.stdin, tc.params); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
