package cgroups

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// JoinExisting moves a process into a cgroup that exists and creates none.
func TestJoinExisting(t *testing.T) {
	needRoot(t)
	p := fmt.Sprintf("/autokill-unit-join-%d", os.Getpid())
	l, err := resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := sleeper(t)
	if err := JoinExisting(p, cmd.Process.Pid); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("JoinExisting of a missing cgroup: %v, want NotFound", err)
	}
	for _, d := range l.dirs {
		if exists(d) {
			t.Fatalf("JoinExisting created %s", d)
		}
	}
	// One hierarchy is enough (runc's cgroup1.Load keeps the ones where
	// the path exists).
	if err := os.Mkdir(l.dirs[0], 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(l.dirs[0])
	})
	if err := JoinExisting(p, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), ":"+p+"\n") {
		t.Errorf("/proc/pid/cgroup after the join:\n%s", b)
	}
	for _, bad := range []string{"relative", "/a/../..", "/a//b", "slice:x:y"} {
		if err := JoinExisting(bad, cmd.Process.Pid); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("JoinExisting(%q): %v, want InvalidArgument", bad, err)
		}
	}
}
