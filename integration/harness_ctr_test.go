package integration

// ctr invocations and what they tell of containers and tasks.

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ctr runs ctr (namespace autokill-test) with a liveness timeout of 2 minutes (scaled). It returns
// stdout and the exit code; stderr is logged when non-empty. A timeout fails the test.
func ctr(t testing.TB, args ...string) (stdout string, exitCode int) {
	t.Helper()
	r := ctrResult(t, args...)
	if r.Stderr != "" {
		t.Logf("ctr %s: stderr: %s", strings.Join(args, " "), strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, r.Code
}

type ctrRun struct {
	Args           []string
	Stdout, Stderr string
	Code           int
}

func (r ctrRun) String() string {
	return fmt.Sprintf("ctr %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// ctrResult is ctr with stderr returned too.
func ctrResult(t testing.TB, args ...string) ctrRun {
	t.Helper()
	return ctrTimeout(t, timeout(2*time.Minute), args...)
}

func ctrTimeout(t testing.TB, d time.Duration, args ...string) ctrRun {
	t.Helper()
	if !cd.running() {
		t.Fatalf("ctr %s: containerd is not running", strings.Join(args, " "))
	}
	o, e, code, err := cd.ctrRaw(d, args...)
	r := ctrRun{Args: args, Stdout: o, Stderr: e, Code: code}
	if err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	return r
}

// mustCtr runs ctr and fails the test unless it exits 0. It returns stdout.
func mustCtr(t testing.TB, args ...string) string {
	t.Helper()
	r := ctrResult(t, args...)
	if r.Code != 0 {
		t.Fatalf("unexpected failure: %s", r)
	}
	return r.Stdout
}

// ctrSupportsFlag tells whether `ctr <cmd...> --help` mentions --flag.
func ctrSupportsFlag(t testing.TB, flagName string, cmd ...string) bool {
	t.Helper()
	r := ctrResult(t, append(cmd, "--help")...)
	return strings.Contains(r.Stdout+r.Stderr, "--"+flagName+" ") || strings.Contains(r.Stdout+r.Stderr, "--"+flagName+",")
}

var idCounter atomic.Int64

// newContainerID returns a fresh container ID for t and registers a cleanup that deletes the
// container (killing its task first) and, when t failed, logs what containerd and the shim logged
// during the test.
func newContainerID(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	name = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "-")
	name = strings.Trim(name, "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	id := fmt.Sprintf("%s-%d", name, idCounter.Add(1))
	logStart := cd.logSize()
	t.Cleanup(func() {
		if !cd.running() {
			t.Logf("cleanup of %s: containerd was not running; starting it", id)
			if err := cd.start(); err != nil {
				t.Errorf("cleanup of %s: %v", id, err)
				return
			}
		}
		removeContainer(t, id)
		if t.Failed() {
			t.Logf("containerd.log during %s:\n%s", t.Name(), cd.logSince(logStart, 12000))
		}
	})
	return id
}

// removeContainer kills and deletes the task (if any) and deletes the container (if any); it
// fails the test if the container is still listed afterwards.
func removeContainer(t testing.TB, id string) {
	t.Helper()
	if !containsLine(mustCtr(t, "containers", "ls", "-q"), id) {
		return
	}
	if st, ok := taskStatus(t, id); ok {
		if st.Status != "STOPPED" {
			ctrResult(t, "tasks", "kill", "--all", "-s", "KILL", id)
			waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
		}
		if r := ctrResult(t, "tasks", "delete", id); r.Code != 0 && !strings.Contains(r.Stderr, "exit code") {
			t.Errorf("cleanup: %s", r)
		}
	}
	if r := ctrResult(t, "containers", "delete", id); r.Code != 0 {
		t.Errorf("cleanup: %s", r)
	}
	if containsLine(mustCtr(t, "containers", "ls", "-q"), id) {
		t.Errorf("cleanup: container %s still listed", id)
	}
}

type taskInfo struct {
	ID     string
	Pid    int
	Status string // RUNNING, STOPPED, CREATED, PAUSED, ...
}

// taskStatus reads `ctr task ls`; ok is false when the task is not listed.
func taskStatus(t testing.TB, id string) (taskInfo, bool) {
	t.Helper()
	for _, ti := range taskList(t) {
		if ti.ID == id {
			return ti, true
		}
	}
	return taskInfo{}, false
}

func taskList(t testing.TB) []taskInfo {
	t.Helper()
	out := mustCtr(t, "tasks", "ls")
	var res []taskInfo
	for i, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) < 3 {
			continue // header "TASK PID STATUS"
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("ctr tasks ls: bad pid in line %q\n%s", l, out)
		}
		res = append(res, taskInfo{ID: f[0], Pid: pid, Status: f[2]})
	}
	return res
}

// waitTaskStatus polls `ctr task ls` until the task has the status.
func waitTaskStatus(t testing.TB, id, status string, d time.Duration) taskInfo {
	t.Helper()
	var last taskInfo
	var ok bool
	waitFor(t, d, fmt.Sprintf("task %s to be %s", id, status), func() bool {
		last, ok = taskStatus(t, id)
		return ok && last.Status == status
	}, func() string { return fmt.Sprintf("last seen: listed=%v %+v", ok, last) })
	return last
}

var exitCodeRe = regexp.MustCompile(`exit with non-zero exit code (\d+)`)

// deleteTask runs `ctr task delete ID` on a stopped task and returns the task's exit status.
// ctr 2.x exits with the status; ctr 1.6 exits 0 and logs "exit with non-zero exit code N".
func deleteTask(t testing.TB, id string) int {
	t.Helper()
	r := ctrResult(t, "tasks", "delete", id)
	if m := exitCodeRe.FindStringSubmatch(r.Stderr); m != nil {
		n, _ := strconv.Atoi(m[1])
		if r.Code != 0 && r.Code != n {
			t.Fatalf("ctr task delete: exit code %d but logged status %d\n%s", r.Code, n, r)
		}
		return n
	}
	if r.Code != 0 && strings.Contains(r.Stderr, "ctr:") {
		t.Fatalf("ctr task delete failed: %s", r)
	}
	return r.Code
}

// taskPids lists the host PIDs of a task's processes as `ctr task ps` reports them.
func taskPids(t testing.TB, id string) []int {
	t.Helper()
	out := mustCtr(t, "tasks", "ps", id)
	var pids []int
	for i, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) == 0 {
			continue // header "PID INFO"
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("ctr tasks ps %s: bad line %q\n%s", id, l, out)
		}
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// containerSpec returns the OCI spec containerd holds for the container (ctr containers info).
func containerSpec(t testing.TB, id string) map[string]any {
	t.Helper()
	out := mustCtr(t, "containers", "info", id)
	var info struct {
		Spec map[string]any `json:"Spec"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("ctr containers info %s: %v\n%s", id, err, out)
	}
	return info.Spec
}

// containerCgroupsPath is linux.cgroupsPath of the container's spec ("/autokill-test/<id>" with ctr).
func containerCgroupsPath(t testing.TB, id string) string {
	t.Helper()
	spec := containerSpec(t, id)
	linux, _ := spec["linux"].(map[string]any)
	p, _ := linux["cgroupsPath"].(string)
	if p == "" {
		t.Fatalf("container %s has no linux.cgroupsPath in its spec", id)
	}
	return p
}
