package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunPassesStateArgsEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	// A pidfd without CLOEXEC, as a careless caller might hold one.
	pfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	leak, err := unix.Dup(pfd)
	unix.Close(pfd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leak)
	p := script(t, "ls -l /proc/self/fd >"+out+".fds\n"+`{ cat; echo; echo "$1|$K"; } >`+out+"\n")
	st := &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b"}
	if err := RunAll(context.Background(), "createRuntime", []spec.Hook{{Path: p, Args: []string{"argv0", "x"}, Env: []string{"K=V"}}}, st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"id":"c1"`) || !strings.Contains(lines[0], `"status":"creating"`) {
		t.Fatalf("hook saw %q", b)
	}
	// argv[0] of a script is its path (binfmt_script), so only $1 is checked.
	if lines[1] != "x|V" {
		t.Fatalf("argv/env: %q", lines[1])
	}
	fds, err := os.ReadFile(out + ".fds")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(fds), "pidfd") || strings.Contains(string(fds), fmt.Sprintf(" %d -> ", leak)) {
		t.Fatalf("the hook inherited the caller's fd %d:\n%s", leak, fds)
	}
}

func TestRunFailureCarriesStderr(t *testing.T) {
	p := script(t, "echo no network for you >&2\nexit 3\n")
	err := RunAll(context.Background(), "prestart", []spec.Hook{{Path: p}}, &specs.State{})
	if err == nil || !strings.Contains(err.Error(), "no network for you") || !strings.Contains(err.Error(), "prestart hook 0") ||
		!strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunTimeoutKills(t *testing.T) {
	p := script(t, "echo started >&2\nsleep 30\n")
	start := time.Now()
	err := Run(context.Background(), spec.Hook{Path: p, Timeout: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "timeout of 1s") || !strings.Contains(err.Error(), "started") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

// Without sealFds the leak test above must fail: it is not vacuous.
func TestLeakTestCanFail(t *testing.T) {
	saved := sealFds
	sealFds = func() error { return nil }
	defer func() { sealFds = saved }()
	pfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	leak, _ := unix.Dup(pfd)
	unix.Close(pfd)
	defer unix.Close(leak)
	out := filepath.Join(t.TempDir(), "fds")
	if err := Run(context.Background(), spec.Hook{Path: script(t, "ls -l /proc/self/fd >"+out+"\n")}, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "pidfd") {
		t.Fatalf("a non-CLOEXEC pidfd did not reach the hook without sealFds:\n%s", b)
	}
}
