package cgroups

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cg "github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPathFor(t *testing.T) {
	for _, tc := range []struct{ spec, ns, id, want string }{
		{"", "default", "web", "/default/web"},
		{"", "k8s.io", "abc-1", "/k8s.io/abc-1"},
		{"/given/path", "default", "web", "/given/path"},
		{"relative/path", "", "", "relative/path"},
	} {
		got, err := PathFor(tc.spec, tc.ns, tc.id, false)
		if err != nil || got != tc.want {
			t.Errorf("PathFor(%q, %q, %q) = %q, %v; want %q", tc.spec, tc.ns, tc.id, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ spec, ns, id string }{
		{"", "", "web"},
		{"", "default", ""},
		{"", "..", "web"},
		{"", "default", "."},
		{"", "a/b", "web"},
		{"", "default", "../../tmp"},
		{"", "default", "x\x00y"},
		{"/../../../tmp/x", "default", "web"},
		{"/a//b", "default", "web"},
	} {
		if got, err := PathFor(tc.spec, tc.ns, tc.id, false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("PathFor(%q, %q, %q) = %q, %v; want InvalidArgument", tc.spec, tc.ns, tc.id, got, err)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	bundle := t.TempDir()
	r := &record{
		Path: "/ns/id", Dirs: []string{"/sys/fs/cgroup/memory/ns/id", "/sys/fs/cgroup/freezer/ns/id"},
		Freezer: "/sys/fs/cgroup/freezer/ns/id", Procs: "/sys/fs/cgroup/freezer/ns/id",
		Created: []string{"/sys/fs/cgroup/memory/ns", "/sys/fs/cgroup/memory/ns/id"},
	}
	if _, err := readRecord(bundle); !errorsIsNotExist(err) {
		t.Fatalf("no record yet: %v, want ErrNotExist", err)
	}
	if err := writeRecord(bundle, r); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != r.Path || !slices.Equal(got.Dirs, r.Dirs) || !slices.Equal(got.Created, r.Created) || got.Procs != r.Procs {
		t.Errorf("read back %+v, want %+v", got, r)
	}
	ents, _ := os.ReadDir(bundle)
	if len(ents) != 1 || ents[0].Name() != RecordName {
		t.Errorf("bundle holds %v, want just %s (no temp file left)", ents, RecordName)
	}
	if err := removeRecord(bundle); err != nil {
		t.Fatal(err)
	}
	if err := removeRecord(bundle); err != nil {
		t.Errorf("removing an absent record: %v", err)
	}
}

// A record that aims anywhere but below a hierarchy root is not acted on.
func TestRecordRefusesForeignDirs(t *testing.T) {
	for _, r := range []record{
		{Path: "/x", Dirs: []string{"/tmp/x"}, Procs: "/tmp/x"},
		{Path: "/x", Dirs: []string{"/sys/fs/cgroup/memory"}, Procs: "/sys/fs/cgroup/memory"},
		{Path: "/x", Dirs: []string{"/sys/fs/cgroup/memory/x"}, Procs: "/sys/fs/cgroup/memory/x", Created: []string{"/sys/fs/cgroup/memory/../../../tmp"}},
		{Path: "/x", Unified: true, Dirs: []string{"/sys/fs/cgroup"}, Procs: "/sys/fs/cgroup"},
		{Path: "/x"},
	} {
		bundle := t.TempDir()
		if err := writeRecord(bundle, &r); err != nil {
			t.Fatal(err)
		}
		if _, err := readRecord(bundle); !errdefs.IsInvalidArgument(err) {
			t.Errorf("record %+v: %v, want InvalidArgument", r, err)
		}
	}
}

// rmdir of a real directory would remove an empty host directory: only a
// cgroup filesystem is acted on.
func TestRmdirOnlyOnCgroupfs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := rmdirCgroup(context.Background(), dir, true)
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("rmdirCgroup(%s) = %v, want FailedPrecondition", dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("%s removed: %v", dir, err)
	}
}

func errorsIsNotExist(err error) bool { return err != nil && os.IsNotExist(unwrapAll(err)) }

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// The tests below use the host's real cgroup hierarchies.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
}

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// New creates the path (parents too), records it, applies limits; Delete
// kills what is inside and removes exactly what New created.
func TestNewDeleteRealCgroup(t *testing.T) {
	needRoot(t)
	base := fmt.Sprintf("/autokill-unit-%d", os.Getpid())
	path := base + "/c1"
	bundle := t.TempDir()
	limit := int64(42)
	m, err := New(bundle, path, false, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := readRecord(bundle)
	if err != nil {
		t.Fatalf("no record after New: %v", err)
	}
	d := m.Dirs()
	if len(rec.Created) != 2*len(d.All) {
		t.Errorf("record created %v, want parent and leaf in each of %v", rec.Created, d.All)
	}
	pidsDir := d.Procs
	if !d.Unified {
		for _, a := range d.All {
			if strings.Contains(a, "/pids/") {
				pidsDir = a
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(pidsDir, "pids.max")); err != nil || strings.TrimSpace(string(b)) != "42" {
		t.Errorf("pids.max = %q, %v; want 42", b, err)
	}
	cmd := sleeper(t)
	if err := m.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := m.Pids(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("Pids() = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process in the cgroup: %v, want killed", err)
	}
	for _, c := range rec.Created {
		if exists(c) {
			t.Errorf("%s still there after Delete", c)
		}
	}
	if exists(recordPath(bundle)) {
		t.Error("record still there after Delete")
	}
}

// A cgroup with processes or with child cgroups is not the container's:
// New refuses it and touches nothing.
func TestNewRefusesBusyCgroup(t *testing.T) {
	needRoot(t)
	other := fmt.Sprintf("/autokill-unit-busy-%d", os.Getpid())
	om, err := New(t.TempDir(), other, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := sleeper(t)
	if err := om.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	defer om.Delete(context.Background())
	parent := fmt.Sprintf("/autokill-unit-parent-%d", os.Getpid())
	pm, err := New(t.TempDir(), parent+"/child", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Delete(context.Background())

	for _, p := range []string{other, "/", parent} {
		bundle := t.TempDir()
		limit := int64(3)
		_, err := New(bundle, p, false, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}})
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("New(%q) = %v, want FailedPrecondition", p, err)
		}
		if exists(recordPath(bundle)) {
			t.Errorf("New(%q) wrote a record", p)
		}
	}
	if pids, err := om.Pids(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("other cgroup's processes: %v, %v", pids, err)
	}
	for _, d := range om.Dirs().All {
		if b, err := os.ReadFile(filepath.Join(d, "pids.max")); err == nil && strings.TrimSpace(string(b)) != "max" {
			t.Errorf("%s/pids.max = %q: the refused New wrote limits into it", d, b)
		}
	}
}

// An existing empty cgroup is used, but it is not ours to remove.
func TestNewAdoptsEmptyCgroupWithoutOwningIt(t *testing.T) {
	needRoot(t)
	path := fmt.Sprintf("/autokill-unit-adopt-%d", os.Getpid())
	pre, err := New(t.TempDir(), path, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Delete(context.Background())
	bundle := t.TempDir()
	m, err := New(bundle, path, false, nil)
	if err != nil {
		t.Fatalf("New on an existing empty cgroup: %v", err)
	}
	if rec, _ := readRecord(bundle); rec == nil || len(rec.Created) != 0 {
		t.Errorf("record %+v, want nothing created", rec)
	}
	if err := m.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Dirs().All {
		if !exists(d) {
			t.Errorf("%s removed, but it was not created by this manager", d)
		}
	}
}

// The delete face trusts the record only for the path the spec names, and
// only below a hierarchy's root.
func TestCleanupWithoutOrForeignRecord(t *testing.T) {
	needRoot(t)
	bundle := t.TempDir()
	if err := Cleanup(context.Background(), bundle, "/whatever"); err != nil {
		t.Errorf("no record: %v, want nothing done", err)
	}
	path := fmt.Sprintf("/autokill-unit-cleanup-%d", os.Getpid())
	m, err := New(bundle, path, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := sleeper(t)
	if err := m.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(context.Background(), bundle, "/another"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("record for %s, spec says /another: %v, want FailedPrecondition", path, err)
	}
	if pids, _ := m.Pids(); len(pids) != 1 {
		t.Errorf("processes after a refused Cleanup: %v", pids)
	}
	if err := Cleanup(context.Background(), bundle, path); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the container's process survived Cleanup")
	}
	for _, d := range m.Dirs().All {
		if exists(d) {
			t.Errorf("%s still there after Cleanup", d)
		}
	}
}

// Relative paths are below the daemon's own cgroup, as with runc's cgroupfs
// driver (v2: below its parent); absolute ones below each hierarchy's root.
func TestResolveRelativeAndAbsolute(t *testing.T) {
	own, ownUnified, err := cg.ParseCgroupFileUnified("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := resolve("rel/c")
	if err != nil {
		t.Fatal(err)
	}
	abs, err := resolve("/abs/c")
	if err != nil {
		t.Fatal(err)
	}
	if rel.unified {
		if want := filepath.Join(unifiedRoot, path.Dir(ownUnified), "rel/c"); rel.dirs[0] != want {
			t.Errorf("relative: %s, want %s", rel.dirs[0], want)
		}
		if want := filepath.Join(unifiedRoot, "abs/c"); abs.dirs[0] != want {
			t.Errorf("absolute: %s, want %s", abs.dirs[0], want)
		}
		return
	}
	for name, inner := range rel.inner {
		base, ok := own[name]
		if !ok {
			base = own["name="+name]
		}
		if want := path.Join(base, "rel/c"); inner != want {
			t.Errorf("relative, %s: %s, want %s", name, inner, want)
		}
		if abs.inner[name] != "/abs/c" {
			t.Errorf("absolute, %s: %s, want /abs/c", name, abs.inner[name])
		}
	}
	for i, d := range rel.dirs {
		if !strings.HasPrefix(d, rel.roots[i]+"/") {
			t.Errorf("%s is not below its hierarchy %s", d, rel.roots[i])
		}
	}
	if _, err := resolve("/a/../b"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("resolve of a path with ..: %v, want InvalidArgument", err)
	}
}
