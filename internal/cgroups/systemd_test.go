package cgroups

import (
	"math"
	"os"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPathForSystemd(t *testing.T) {
	for _, tc := range []struct{ spec, ns, id, want string }{
		{"", "default", "web", "system.slice:autokill:default-web"},
		{"", "k8s.io", "abc-1", "system.slice:autokill:k8s.io-abc-1"},
		{"kubepods.slice:cri-containerd:abc", "k8s.io", "abc", "kubepods.slice:cri-containerd:abc"},
	} {
		got, err := PathFor(tc.spec, tc.ns, tc.id, true)
		if err != nil || got != tc.want {
			t.Errorf("PathFor(%q, %q, %q, systemd) = %q, %v; want %q", tc.spec, tc.ns, tc.id, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		spec    string
		systemd bool
	}{
		{"/default/web", true},  // cgroupfs path, systemd driver
		{"relative", true},      // the same, relative
		{"a.slice:x:y/z", true}, // not a unit name
		{"nodot:x:y", true},     // no .slice
		{"", true},              // (derived with the bad id below)
	} {
		id := "web"
		if tc.spec == "" {
			id = "a b"
		}
		if got, err := PathFor(tc.spec, "default", id, tc.systemd); !errdefs.IsInvalidArgument(err) {
			t.Errorf("PathFor(%q, systemd=%v) = %q, %v; want InvalidArgument", tc.spec, tc.systemd, got, err)
		}
	}
	// The systemd form with the cgroupfs driver: a relative path, as runc's
	// cgroupfs driver takes it (containerd 1.6's CRI writes it).
	if got, err := PathFor("a.slice:x:y", "default", "web", false); err != nil || got != "a.slice:x:y" {
		t.Errorf("PathFor(a.slice:x:y, cgroupfs) = %q, %v; want the relative path", got, err)
	}
}

// The record of a systemd scope names only the unit of its own path.
func TestRecordSystemdChecked(t *testing.T) {
	good := record{Path: "system.slice:autokill:a", Unified: true, Dirs: []string{"/sys/fs/cgroup/system.slice/autokill-a.scope"},
		Procs: "/sys/fs/cgroup/system.slice/autokill-a.scope", Unit: "autokill-a.scope", Slice: "system.slice"}
	if err := good.check(); err != nil {
		t.Fatalf("good record refused: %v", err)
	}
	for name, mut := range map[string]func(r *record){
		"other unit":  func(r *record) { r.Unit = "dbus.service" },
		"other slice": func(r *record) { r.Slice = "user.slice" },
		"other dir":   func(r *record) { r.Dirs = []string{"/sys/fs/cgroup/system.slice"} },
		"created":     func(r *record) { r.Created = []string{"/sys/fs/cgroup/system.slice"} },
		"v1":          func(r *record) { r.Unified = false },
		"bad path":    func(r *record) { r.Path = "/system.slice/autokill-a.scope" },
	} {
		r := good
		r.Dirs = append([]string(nil), good.Dirs...)
		mut(&r)
		if err := r.check(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v; want InvalidArgument", name, err)
		}
	}
}

// Without systemd as the init the driver is refused with
// FailedPrecondition before anything is asked of D-Bus or written; on
// cgroup v1 with systemd, NotImplemented.
func TestSystemdRefusedWithoutSystemd(t *testing.T) {
	_, err := os.Lstat(systemdBooted)
	booted := err == nil
	bundle := t.TempDir()
	_, err = New(bundle, "system.slice:autokill:refused", true, nil)
	switch {
	case !booted:
		if !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("New without systemd: %v; want FailedPrecondition", err)
		}
	case !Unified():
		if !errdefs.IsNotImplemented(err) {
			t.Fatalf("New with systemd on cgroup v1: %v; want NotImplemented", err)
		}
	default:
		t.Skip("systemd runs here: the integration tests drive the driver")
	}
	if _, err := os.Stat(recordPath(bundle)); !os.IsNotExist(err) {
		t.Errorf("a record was written for a refused driver: %v", err)
	}
}

func TestUnitResources(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	got := map[string]any{}
	for _, p := range unitResources(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(96 << 20), Reservation: i64(16 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(50)},
		CPU:    &specs.LinuxCPU{Shares: u64(1024), Quota: i64(25001), Period: u64(100000)},
	}) {
		got[p.Name] = p.Value.Value()
	}
	want := map[string]any{
		"MemoryMax": uint64(64 << 20), "MemorySwapMax": uint64(32 << 20), "MemoryLow": uint64(16 << 20),
		"TasksMax": uint64(50), "CPUWeight": uint64(100), "CPUQuotaPeriodUSec": uint64(100000),
		"CPUQuotaPerSecUSec": uint64(260000),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unitResources = %v\nwant %v", got, want)
	}
	got = map[string]any{}
	for _, p := range unitResources(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(-1), Swap: i64(-1)}, Pids: &specs.LinuxPids{Limit: i64(-1)},
		CPU: &specs.LinuxCPU{Quota: i64(-1)},
	}) {
		got[p.Name] = p.Value.Value()
	}
	inf := uint64(math.MaxUint64)
	want = map[string]any{"MemoryMax": inf, "MemorySwapMax": inf, "TasksMax": inf, "CPUQuotaPerSecUSec": inf}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unitResources (no limits) = %v\nwant %v", got, want)
	}
	if p := unitResources(&specs.LinuxResources{}); len(p) != 0 {
		t.Errorf("nothing to change gave %v", p)
	}
}
