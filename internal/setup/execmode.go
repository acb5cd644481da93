package setup

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// The exec face (argv[1] is initsync.ExecArg) runs one process in a running
// container (containerd's exec). The C constructor in execns_linux.c has
// joined the container's namespaces before this Go code runs.

const (
	// ExecPidfd is the fd where the daemon puts a plain pidfd of the
	// container's init, and ExecPlanFd the sealed memfd with the plan.
	ExecPidfd  = 4
	ExecPlanFd = 5
	// maxExecPlan bounds the plan the exec face reads: the process's
	// arguments and environment may take the kernel's ARG_MAX (a quarter of
	// the stack limit), and the spec's JSON escaping may double that.
	maxExecPlan = 64 << 20
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == initsync.ExecArg {
		runtime.LockOSThread()
	}
}

// ExecMain runs the exec face. It never returns. Protocol (initsync, fd 3):
// the daemon sends Joined once the process is in the container's cgroup
// (at once on cgroup v2, where clone3 put it there); the exec face then
// prepares the process and execs it: EOF on the socket is success, a Fail
// message the reason it could not.
func ExecMain() {
	conn := initsync.FromFd(initsync.ChildFd)
	// fd 4, from the constructor on: a procfs instance of the container's
	// pid namespace that no mount of the container can cover.
	execProcfs = os.NewFile(ExecPidfd, "<private procfs>")
	plan, err := readExecPlan(ExecPlanFd)
	if err != nil {
		conn.Fail(err)
		awaitJoined(initsync.ChildFd, time.Second)
		os.Exit(1)
	}
	if err := conn.RecvJoined(); err != nil {
		os.Exit(1)
	}
	ex, err := runExec(plan, conn.SendConsole)
	if err != nil {
		conn.Fail(err)
		os.Exit(1)
	}
	err = ex.exec(initsync.ChildFd)
	conn.Fail(err)
	os.Exit(1)
}

func readExecPlan(fd int) (*spec.ExecPlan, error) {
	f := os.NewFile(uintptr(fd), "<exec plan>")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxExecPlan+1))
	if err != nil {
		return nil, fmt.Errorf("read the exec plan: %w", err)
	}
	if len(b) > maxExecPlan {
		return nil, fmt.Errorf("exec plan larger than %d bytes", maxExecPlan)
	}
	var p spec.ExecPlan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode the exec plan: %w", err)
	}
	if len(p.Process.Args) == 0 {
		return nil, fmt.Errorf("exec plan without args")
	}
	return &p, nil
}

// runExec prepares the exec'd process as the init's is prepared (same
// code: limits, credentials, capabilities on every thread, cwd, lookup).
func runExec(p *spec.ExecPlan, console func(*os.File) error) (*Exec, error) {
	if p.OOMScoreAdj != nil {
		if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
			return nil, err
		}
	}
	// In the container's mount namespace: its devpts.
	if p.Process.Terminal {
		if err := sendConsole(p.Process.ConsoleSize, false, console); err != nil {
			return nil, err
		}
	}
	ex, err := prepareProcess(&p.Process, p.Seccomp, p.LastCap, p.Fallback)
	// Not needed past the credentials, and not to be inherited.
	execProcfs.Close()
	execProcfs = nil
	return ex, err
}
