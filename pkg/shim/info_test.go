package shim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// TestRuntimeInfo decodes -info's answer the way containerd 2.x does: a
// protobuf RuntimeInfo whose Features is the OCI features JSON under the type
// URL containerd registers.
func TestRuntimeInfo(t *testing.T) {
	opts, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/x.toml"})
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "stdin")
	os.WriteFile(in, mustMarshal(t, opts), 0o600)
	out := filepath.Join(t.TempDir(), "stdout")
	stdin, _ := os.Open(in)
	defer stdin.Close()
	stdout, _ := os.Create(out)
	if err := runInfo(stdin, stdout); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	b, _ := os.ReadFile(out)

	var info types.RuntimeInfo
	if err := proto.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	mode := pidfd.Probe()
	if info.Name != RuntimeName || info.Annotations[AnnotationMode] != mode.Name() ||
		info.Annotations[AnnotationModeReason] != mode.Reason {
		t.Fatalf("info %v", &info)
	}
	if !proto.Equal(info.Options, opts) {
		t.Fatalf("options not echoed: %v", info.Options)
	}
	if info.Features.GetTypeUrl() != "types.containerd.io/opencontainers/runtime-spec/1/features/Features" {
		t.Fatalf("type url %q", info.Features.GetTypeUrl())
	}
	var f features.Features
	if err := json.Unmarshal(info.Features.GetValue(), &f); err != nil {
		t.Fatal(err)
	}
	if f.OCIVersionMin != "1.0.0" || f.OCIVersionMax == "" || f.Linux == nil {
		t.Fatalf("features %+v", f)
	}
	for _, ns := range []string{"pid", "network", "ipc", "uts", "mount", "cgroup"} {
		if !slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("namespace %s missing", ns)
		}
	}
	// "user" would make CRI run user-namespaced pods (see supportedNamespaces).
	if slices.Contains(f.Linux.Namespaces, "user") || slices.Contains(f.MountOptions, "rro") {
		t.Error("claims user namespaces for CRI or recursive read-only")
	}
	if !slices.Contains(f.MountOptions, "idmap") || !slices.Contains(f.MountOptions, "ridmap") {
		t.Error("id-mapped binds not advertised")
	}
	if len(f.Linux.Capabilities) != 41 || f.Linux.Capabilities[40] != "CAP_CHECKPOINT_RESTORE" {
		t.Errorf("capabilities %v", f.Linux.Capabilities)
	}
	if *f.Linux.Seccomp.Enabled || !*f.Linux.MountExtensions.IDMap.Enabled || !*f.Linux.Cgroup.V1 || !*f.Linux.Cgroup.V2 {
		t.Errorf("linux %+v", f.Linux)
	}
	if f.Annotations[AnnotationMode] != mode.Name() {
		t.Errorf("annotations %v", f.Annotations)
	}
}

func TestDeleteResponse(t *testing.T) {
	r := deleteResponse(process.Exit{Pid: 7, Status: 137, At: time.Unix(1700000000, 5)})
	if r.Pid != 7 || r.ExitStatus != 137 || !r.ExitedAt.AsTime().Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("%v", r)
	}
}
