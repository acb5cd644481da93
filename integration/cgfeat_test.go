package integration

// Pause/Resume, Update, Stats (metrics) and OOM events, through containerd: ctr where it has
// the command (pause, resume, kill, delete, metrics), containerd's own gRPC API where it has not
// (update: ctr has no such command) or where the test needs what ctr hides (the events in order,
// a Delete that reaches the shim, the error code of a refused update).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// apiConn is a gRPC connection to the private containerd; apiCtx puts the test namespace on a
// request, as containerd's client does.
func apiConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+cd.address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func apiCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout(time.Minute))
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", testNamespace)
}

// taskEvents collects containerd's /tasks/* events of the test namespace, per container, in the
// order containerd delivers them.
type taskEvents struct {
	mu     sync.Mutex
	topics map[string][]string
}

func subscribeTaskEvents(t *testing.T) *taskEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", testNamespace)
	stream, err := eventsapi.NewEventsClient(apiConn(t)).Subscribe(ctx, &eventsapi.SubscribeRequest{
		Filters: []string{fmt.Sprintf(`namespace==%s,topic~="^/tasks/"`, testNamespace)},
	})
	if err != nil {
		t.Fatalf("subscribe to containerd's events: %v", err)
	}
	ev := &taskEvents{topics: map[string][]string{}}
	ready := make(chan struct{})
	go func() {
		close(ready)
		for {
			env, err := stream.Recv()
			if err != nil {
				return
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			c, ok := v.(interface{ GetContainerID() string })
			if !ok {
				continue
			}
			ev.mu.Lock()
			ev.topics[c.GetContainerID()] = append(ev.topics[c.GetContainerID()], env.Topic)
			ev.mu.Unlock()
		}
	}()
	<-ready
	// Subscribe can return before containerd has registered the subscriber: an event of ours,
	// seen coming back, shows that everything published after it will be seen too.
	syncID := fmt.Sprintf("events-sync-%d", idCounter.Add(1))
	a, err := typeurl.MarshalAnyToProto(&eventstypes.TaskOOM{ContainerID: syncID})
	if err != nil {
		t.Fatal(err)
	}
	// One published before the registration is lost: publish again until one comes back.
	client := eventsapi.NewEventsClient(apiConn(t))
	last := time.Time{}
	waitFor(t, timeout(20*time.Second), "the subscription to see our own event", func() bool {
		if len(ev.of(syncID)) > 0 {
			return true
		}
		if time.Since(last) > 250*time.Millisecond {
			last = time.Now()
			if _, err := client.Publish(apiCtx(t), &eventsapi.PublishRequest{Topic: "/tasks/oom", Event: a}); err != nil {
				t.Fatalf("publish the sync event: %v", err)
			}
		}
		return false
	}, nil)
	return ev
}

func (e *taskEvents) of(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.topics[id]...)
}

// wait waits until the events of id hold want in this order (other events may come between).
func (e *taskEvents) wait(t *testing.T, id string, want ...string) {
	t.Helper()
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("events %v of %s", want, id), func() bool {
		return isSubsequence(e.of(id), want)
	}, func() string { return fmt.Sprintf("events: %v", e.of(id)) })
}

func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// cgroupFrozen reads the kernel's freezer state of the container's cgroup.
func cgroupFrozen(t *testing.T, cgroupsPath string) bool {
	t.Helper()
	if cgroupV2Only() {
		return strings.Contains(readTrim(t, filepath.Join("/sys/fs/cgroup", cgroupsPath, "cgroup.events")), "frozen 1")
	}
	return readTrim(t, controllerFile("freezer", cgroupsPath, "freezer.state")) == "FROZEN"
}

// counterScript counts in /tmp/c, 20 times a second: a frozen container stops counting.
const counterScript = `i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done`

func readCounter(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/c", pid))
	if err != nil {
		t.Fatalf("read the container's counter: %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// counting tells whether the container's counter moves within d.
func counting(t *testing.T, pid int, d time.Duration) bool {
	t.Helper()
	before := readCounter(t, pid)
	time.Sleep(d)
	return readCounter(t, pid) != before
}

func TestAPIPauseResume(t *testing.T) {
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	ti := runDetached(t, id, 2, nil, counterScript)
	cg := containerCgroupsPath(t, id)
	waitFor(t, timeout(10*time.Second), "the counter to start", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/c", ti.Pid))
		return err == nil
	}, nil)

	mustCtr(t, "tasks", "pause", id)
	if st, _ := taskStatus(t, id); st.Status != "PAUSED" {
		t.Fatalf("status after pause: %+v, want PAUSED", st)
	}
	if !cgroupFrozen(t, cg) {
		t.Fatalf("cgroup %s not frozen after pause", cg)
	}
	if counting(t, ti.Pid, timeout(500*time.Millisecond)) {
		t.Fatalf("the container kept counting while paused")
	}
	if r := ctrResult(t, "tasks", "pause", id); r.Code == 0 {
		t.Errorf("pause of a paused task succeeded: %s", r)
	}
	ev.wait(t, id, "/tasks/create", "/tasks/start", "/tasks/paused")

	mustCtr(t, "tasks", "resume", id)
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" {
		t.Fatalf("status after resume: %+v, want RUNNING", st)
	}
	if cgroupFrozen(t, cg) {
		t.Fatalf("cgroup %s still frozen after resume", cg)
	}
	if !counting(t, ti.Pid, timeout(2*time.Second)) {
		t.Fatalf("the container does not count after resume")
	}
	if r := ctrResult(t, "tasks", "resume", id); r.Code == 0 {
		t.Errorf("resume of a running task succeeded: %s", r)
	}
	ev.wait(t, id, "/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed")
	if got := ev.of(id); strings.Count(strings.Join(got, " "), "/tasks/paused") != 1 {
		t.Errorf("events %v: want exactly one /tasks/paused (the refused pause sends none)", got)
	}
}

// pausedContainer runs script and pauses it.
func pausedContainer(t *testing.T, script string) (string, taskInfo) {
	t.Helper()
	id := newContainerID(t)
	ti := runDetached(t, id, 1, nil, script)
	mustCtr(t, "tasks", "pause", id)
	waitTaskStatus(t, id, "PAUSED", timeout(10*time.Second))
	return id, ti
}

func TestAPIPausedKill(t *testing.T) {
	t.Run("TERM waits for resume", func(t *testing.T) {
		id, ti := pausedContainer(t, `trap "exit 7" TERM; while :; do sleep 0.05; done`)
		mustCtr(t, "tasks", "kill", "-s", "TERM", id)
		time.Sleep(timeout(500 * time.Millisecond))
		if st, _ := taskStatus(t, id); st.Status != "PAUSED" || !alive(ti.Pid) {
			t.Fatalf("a paused task acted on SIGTERM: %+v", st)
		}
		mustCtr(t, "tasks", "resume", id)
		waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
		if code := deleteTask(t, id); code != 7 {
			t.Fatalf("exit status %d, want 7 (the trap, run once thawed)", code)
		}
	})
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("KILL all=%v", all), func(t *testing.T) {
			ev := subscribeTaskEvents(t)
			id, ti := pausedContainer(t, `sleep 1000 & while :; do sleep 0.05; done`)
			pids := containerProcs(t, id)
			args := []string{"tasks", "kill", "-s", "KILL"}
			if all {
				args = append(args, "--all")
			}
			mustCtr(t, append(args, id)...)
			waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
			waitGone(t, append(pids, ti.Pid), "the killed paused container's processes")
			if code := deleteTask(t, id); code != 137 {
				t.Fatalf("exit status %d, want 137", code)
			}
			if runtimeName == autokillRT {
				ev.wait(t, id, "/tasks/paused", "/tasks/exit", "/tasks/delete")
			} else {
				// containerd's runc shim may exit before it has forwarded
				// the TaskDelete of its last task (lost once of 4 runs on
				// 2.4.2, its delete itself done); ours flushes first.
				ev.wait(t, id, "/tasks/paused", "/tasks/exit")
			}
		})
	}
}

func TestAPIPausedDelete(t *testing.T) {
	id, ti := pausedContainer(t, `while :; do sleep 0.05; done`)
	if r := ctrResult(t, "tasks", "delete", id); r.Code == 0 {
		t.Fatalf("ctr task delete of a paused task succeeded: %s", r)
	}
	// containerd's client refuses that before it asks the shim; its task API does not.
	_, err := tasksapi.NewTasksClient(apiConn(t)).Delete(apiCtx(t), &tasksapi.DeleteTaskRequest{ContainerID: id})
	if err == nil {
		t.Fatalf("the shim deleted a paused task")
	}
	t.Logf("delete of the paused task: %v", err)
	if runtimeName == autokillRT && status.Code(err) != codes.FailedPrecondition {
		t.Errorf("code %s, want FailedPrecondition", status.Code(err))
	}
	if st, _ := taskStatus(t, id); st.Status != "PAUSED" || !alive(ti.Pid) {
		t.Fatalf("after the refused delete: %+v, alive %v", st, alive(ti.Pid))
	}
	pids := containerProcs(t, id)
	mustCtr(t, "tasks", "delete", "--force", id)
	if _, ok := taskStatus(t, id); ok {
		t.Fatalf("task still listed after delete --force")
	}
	waitGone(t, pids, "the force-deleted paused container's processes")
}

// resourcesAny encodes r as containerd's client does for Update (typeurl of
// specs.LinuxResources: JSON).
func resourcesAny(t *testing.T, r any) *anypb.Any {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: b}
}

func updateTask(t *testing.T, id string, r any) error {
	t.Helper()
	_, err := tasksapi.NewTasksClient(apiConn(t)).Update(apiCtx(t), &tasksapi.UpdateTaskRequest{ContainerID: id, Resources: resourcesAny(t, r)})
	return err
}

func TestAPIUpdateResources(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, []string{"--memory-limit", strconv.Itoa(64 << 20)}, "sleep 1000")
	cg := containerCgroupsPath(t, id)
	memFile := controllerFile("memory", cg, memoryLimitFile())
	if got := readTrim(t, memFile); got != strconv.Itoa(64<<20) {
		t.Fatalf("%s = %s before the update", memFile, got)
	}
	if err := updateTask(t, id, map[string]any{"memory": map[string]any{"limit": 96 << 20}}); err != nil {
		t.Fatalf("update memory: %v", err)
	}
	if got := readTrim(t, memFile); got != strconv.Itoa(96<<20) {
		t.Errorf("%s = %s after the update, want %d", memFile, got, 96<<20)
	}
	if err := updateTask(t, id, map[string]any{"cpu": map[string]any{"quota": 50000, "period": 100000}, "pids": map[string]any{"limit": 42}}); err != nil {
		t.Fatalf("update cpu and pids: %v", err)
	}
	if cgroupV2Only() {
		if got := readTrim(t, controllerFile("cpu", cg, "cpu.max")); got != "50000 100000" {
			t.Errorf("cpu.max = %q, want 50000 100000", got)
		}
	} else {
		for f, want := range map[string]string{"cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"} {
			if got := readTrim(t, controllerFile("cpu", cg, f)); got != want {
				t.Errorf("%s = %q, want %s", f, got, want)
			}
		}
	}
	if got := readTrim(t, controllerFile("pids", cg, "pids.max")); got != "42" {
		t.Errorf("pids.max = %q, want 42", got)
	}
	// Paused tasks take updates too (runc's shim allows them in every live state).
	mustCtr(t, "tasks", "pause", id)
	if err := updateTask(t, id, map[string]any{"memory": map[string]any{"limit": 80 << 20}}); err != nil {
		t.Fatalf("update of the paused task: %v", err)
	}
	if got := readTrim(t, memFile); got != strconv.Itoa(80<<20) {
		t.Errorf("%s = %s after the update while paused, want %d", memFile, got, 80<<20)
	}
	mustCtr(t, "tasks", "resume", id)
}

func TestAPIUpdateInvalid(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, []string{"--memory-limit", strconv.Itoa(64 << 20)}, "sleep 1000")
	cg := containerCgroupsPath(t, id)
	memFile := controllerFile("memory", cg, memoryLimitFile())
	for name, r := range map[string]any{
		"cpu period below the kernel's minimum": map[string]any{"cpu": map[string]any{"quota": 500, "period": 999}},
		"memory+swap below memory":              map[string]any{"memory": map[string]any{"limit": 32 << 20, "swap": 16 << 20}},
		"cpus that do not parse":                map[string]any{"cpu": map[string]any{"cpus": "0-x"}},
	} {
		err := updateTask(t, id, r)
		if err == nil {
			t.Errorf("%s: update accepted", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if runtimeName == autokillRT && status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: code %s, want InvalidArgument", name, status.Code(err))
		}
	}
	// runc applies a request until the kernel refuses a value (memory before swap); this runtime
	// checks the whole request first.
	if got := readTrim(t, memFile); runtimeName == autokillRT && got != strconv.Itoa(64<<20) {
		t.Errorf("%s = %s after refused updates, want it unchanged (%d)", memFile, got, 64<<20)
	}
	// The task is unharmed and still takes a good update.
	if err := updateTask(t, id, map[string]any{"memory": map[string]any{"limit": 48 << 20}}); err != nil {
		t.Fatalf("good update after bad ones: %v", err)
	}
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" {
		t.Fatalf("task %+v after the updates", st)
	}
}

func TestAPIMetrics(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 2, []string{"--memory-limit", strconv.Itoa(64 << 20)}, "sleep 1000 & i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; wait")
	// ctr's own decoding: the type must be one ctr knows, or it fails.
	out := mustCtr(t, "tasks", "metrics", "--format", "json", id)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("ctr task metrics --format json: %v\n%s", err, out)
	}
	table := mustCtr(t, "tasks", "metrics", id)
	t.Logf("ctr task metrics:\n%s", table)
	if !strings.Contains(table, "pids.current") {
		t.Errorf("ctr task metrics table has no pids row:\n%s", table)
	}

	r, err := tasksapi.NewTasksClient(apiConn(t)).Metrics(apiCtx(t), &tasksapi.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil || len(r.Metrics) != 1 {
		t.Fatalf("metrics: %v %v", r, err)
	}
	data := r.Metrics[0].Data
	stats, err := typeurl.UnmarshalAny(data)
	if err != nil {
		t.Fatalf("metrics of type %q: %v", data.GetTypeUrl(), err)
	}
	var pids, memUsage, memLimit, cpuUsage uint64
	if cgroupV2Only() {
		s, ok := stats.(*v2stats.Metrics)
		if !ok {
			t.Fatalf("metrics of type %q, want io.containerd.cgroups.v2.Metrics", data.GetTypeUrl())
		}
		pids, memUsage, memLimit, cpuUsage = s.GetPids().GetCurrent(), s.GetMemory().GetUsage(), s.GetMemory().GetUsageLimit(), s.GetCPU().GetUsageUsec()
	} else {
		s, ok := stats.(*v1stats.Metrics)
		if !ok {
			t.Fatalf("metrics of type %q, want io.containerd.cgroups.v1.Metrics", data.GetTypeUrl())
		}
		pids, memUsage, memLimit, cpuUsage = s.GetPids().GetCurrent(), s.GetMemory().GetUsage().GetUsage(), s.GetMemory().GetUsage().GetLimit(), s.GetCPU().GetUsage().GetTotal()
	}
	t.Logf("pids %d, memory %d of %d, cpu %d", pids, memUsage, memLimit, cpuUsage)
	if n := len(taskPids(t, id)); pids != uint64(n) {
		t.Errorf("pids.current %d, but ctr task ps lists %d", pids, n)
	}
	if memLimit != 64<<20 {
		t.Errorf("memory limit %d, want %d", memLimit, 64<<20)
	}
	if memUsage == 0 || memUsage > memLimit {
		t.Errorf("memory usage %d: want above 0 and within the limit", memUsage)
	}
	if cpuUsage == 0 {
		t.Errorf("cpu usage 0 after a busy loop")
	}
}

// oomScript doubles a shell variable until the memory limit stops it: the shell itself is the
// biggest process, so the OOM killer picks it.
const oomScript = `x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done`

func TestAPIOOMInit(t *testing.T) {
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"-d", "--memory-limit", strconv.Itoa(32 << 20)}, id, "sh", "-c", oomScript)...)
	if r.Code != 0 {
		t.Fatalf("ctr run: %s", r)
	}
	waitTaskStatus(t, id, "STOPPED", timeout(60*time.Second))
	ev.wait(t, id, "/tasks/start", "/tasks/oom", "/tasks/exit")
	if code := deleteTask(t, id); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit status %d, want 137 (OOM kill)", code)
	}
	t.Logf("events: %v", ev.of(id))
}

func TestAPIOOMChild(t *testing.T) {
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	script := fmt.Sprintf(`sh -c '%s'; echo $? > /tmp/child; sleep 1000`, oomScript)
	ti := runDetached(t, id, 1, []string{"--memory-limit", strconv.Itoa(32 << 20)}, script)
	ev.wait(t, id, "/tasks/start", "/tasks/oom")
	waitFor(t, timeout(30*time.Second), "the child's exit status", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/child", ti.Pid))
		return err == nil && strings.TrimSpace(string(b)) == "137"
	}, nil)
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" {
		t.Fatalf("the task is %+v after its child's OOM kill, want RUNNING", st)
	}
	if got := ev.of(id); isSubsequence(got, []string{"/tasks/exit"}) {
		t.Fatalf("events %v: an exit of the task", got)
	}
}

// TestCgroupUpdateBlockIO: runc's update applies only the blkio weight; this runtime applies the
// throttles too (cgroups/v3: blkio.throttle.* on v1, io.max on v2), so this is not a TestAPI.
func TestCgroupUpdateBlockIO(t *testing.T) {
	requireAutokillRuntime(t)
	dev := ""
	for _, d := range []string{"vda", "sda", "nvme0n1", "zram0"} {
		if b, err := os.ReadFile("/sys/block/" + d + "/dev"); err == nil {
			dev = strings.TrimSpace(string(b))
			break
		}
	}
	if dev == "" {
		t.Skip("no block device to throttle on this machine")
	}
	maj, min, _ := strings.Cut(dev, ":")
	major, _ := strconv.ParseInt(maj, 10, 64)
	minor, _ := strconv.ParseInt(min, 10, 64)
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "sleep 1000")
	cg := containerCgroupsPath(t, id)
	r := specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1 << 20}}}}
	r.BlockIO.ThrottleReadBpsDevice[0].Major, r.BlockIO.ThrottleReadBpsDevice[0].Minor = major, minor
	if err := updateTask(t, id, &r); err != nil {
		t.Fatalf("update block IO: %v", err)
	}
	file, want := controllerFile("blkio", cg, "blkio.throttle.read_bps_device"), dev+" 1048576"
	if cgroupV2Only() {
		file, want = controllerFile("io", cg, "io.max"), dev+" rbps=1048576"
	}
	if got := readTrim(t, file); !strings.Contains(got, want) {
		t.Fatalf("%s = %q, want %q", file, got, want)
	}
}

func TestAPIOOMExec(t *testing.T) {
	ev := subscribeTaskEvents(t)
	id := newContainerID(t)
	runDetached(t, id, 1, []string{"--memory-limit", strconv.Itoa(32 << 20)}, "sleep 1000")
	r := ctrResult(t, "tasks", "exec", "--exec-id", "oom", id, "sh", "-c", oomScript)
	if r.Code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exec: want exit 137 (OOM kill); %s", r)
	}
	ev.wait(t, id, "/tasks/exec-started", "/tasks/oom", "/tasks/exit")
	if st, _ := taskStatus(t, id); st.Status != "RUNNING" {
		t.Fatalf("the task is %+v after its exec's OOM kill, want RUNNING", st)
	}
	t.Logf("events: %v", ev.of(id))
}
