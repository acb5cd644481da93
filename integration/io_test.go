package integration

// Issue 8, point 3: IO. A client's end of a process's IO is opened here as
// containerd's client (cio) opens it: the fifos of a FIFOSet, through
// containerd/fifo, stdin for writing and stdout/stderr for reading, each
// open completing once the shim holds the other side. Attaching again is
// what cio.NewAttach does: the fifo paths from the tasks API's Get, opened
// the same way. Every test passes with io.containerd.runc.v2 too.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/fifo"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
)

// procIO names a process's fifos, as a cio.FIFOSet does.
type procIO struct{ Stdin, Stdout, Stderr string }

// newProcIO makes the three fifos in a directory of the test's.
func newProcIO(t *testing.T, name string) procIO {
	t.Helper()
	dir := t.TempDir()
	p := procIO{
		Stdin:  filepath.Join(dir, name+"-stdin"),
		Stdout: filepath.Join(dir, name+"-stdout"),
		Stderr: filepath.Join(dir, name+"-stderr"),
	}
	for _, f := range []string{p.Stdin, p.Stdout, p.Stderr} {
		if err := syscall.Mkfifo(f, 0o700); err != nil {
			t.Fatalf("mkfifo %s: %v", f, err)
		}
	}
	return p
}

// collector reads a stream to its end, keeping every byte it read.
type collector struct {
	mu   sync.Mutex
	b    []byte
	err  error
	done chan struct{}
}

func collect(r io.Reader) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			c.mu.Lock()
			c.b = append(c.b, buf[:n]...)
			if err != nil {
				c.err = err
			}
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *collector) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

// attachment is one client's end of a process's IO.
type attachment struct {
	stdin          io.WriteCloser
	stdout, stderr io.ReadCloser
	out, errOut    *collector
}

// attachFifos opens p as cio's copyIO does (stdin for writing, stdout and
// stderr for reading; the opens complete in the background once the shim
// has its ends).
func attachFifos(t *testing.T, p procIO) *attachment {
	t.Helper()
	ctx := context.Background()
	a := &attachment{}
	var err error
	if a.stdin, err = fifo.OpenFifo(ctx, p.Stdin, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700); err != nil {
		t.Fatalf("open stdin fifo: %v", err)
	}
	if a.stdout, err = fifo.OpenFifo(ctx, p.Stdout, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700); err != nil {
		t.Fatalf("open stdout fifo: %v", err)
	}
	if a.stderr, err = fifo.OpenFifo(ctx, p.Stderr, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700); err != nil {
		t.Fatalf("open stderr fifo: %v", err)
	}
	a.out, a.errOut = collect(a.stdout), collect(a.stderr)
	t.Cleanup(func() { a.detach(t) })
	return a
}

func (a *attachment) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(a.stdin, s); err != nil {
		t.Fatalf("write %q to stdin: %v", s, err)
	}
}

// closeStdin closes the client's stdin writer (cio's Stdin closing at EOF).
func (a *attachment) closeStdin(t *testing.T) {
	t.Helper()
	if a.stdin != nil {
		if err := a.stdin.Close(); err != nil {
			t.Errorf("close stdin: %v", err)
		}
		a.stdin = nil
	}
}

// detach closes every fifo end of this client, as cio's Cancel and Close
// do, and waits for its readers to return: afterwards the collectors hold
// exactly what this client took out of the fifos.
func (a *attachment) detach(t *testing.T) {
	if a.stdin != nil {
		a.stdin.Close()
		a.stdin = nil
	}
	for _, r := range []io.Closer{a.stdout, a.stderr} {
		if r != nil {
			r.Close()
		}
	}
	a.stdout, a.stderr = nil, nil
	for _, c := range []*collector{a.out, a.errOut} {
		select {
		case <-c.done:
		case <-time.After(timeout(10 * time.Second)):
			t.Errorf("a reader of a detached client did not return")
		}
	}
}

// waitEOF waits until stdout and stderr have reached EOF (every writer gone).
func (a *attachment) waitEOF(t *testing.T) {
	t.Helper()
	for _, c := range []*collector{a.out, a.errOut} {
		select {
		case <-c.done:
		case <-time.After(timeout(30 * time.Second)):
			t.Fatalf("no EOF on the process's output; stdout so far:\n%s", tail(a.out.String(), 2000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "[...]" + s[len(s)-n:]
	}
	return s
}

// ioAPI is the containerd client's view: the tasks API plus what it needs
// to create a task (the container's snapshot mounts).
type ioAPI struct {
	ctx   context.Context
	conn  *grpc.ClientConn
	tasks tasksapi.TasksClient
}

func newIOAPI(t *testing.T) *ioAPI {
	ctx, conn := apiClient(t)
	return &ioAPI{ctx: ctx, conn: conn, tasks: tasksapi.NewTasksClient(conn)}
}

// createTask creates the task of a container made with `ctr containers
// create`, as the client's NewTask does: the rootfs is the mounts of the
// container's snapshot.
func (c *ioAPI) createTask(t *testing.T, id string, p procIO) (*tasksapi.CreateTaskResponse, error) {
	t.Helper()
	ct, err := containersapi.NewContainersClient(c.conn).Get(c.ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		t.Fatalf("get container %s: %v", id, err)
	}
	m, err := snapshotsapi.NewSnapshotsClient(c.conn).Mounts(c.ctx, &snapshotsapi.MountsRequest{
		Snapshotter: ct.Container.Snapshotter, Key: ct.Container.SnapshotKey,
	})
	if err != nil {
		t.Fatalf("mounts of snapshot %s: %v", ct.Container.SnapshotKey, err)
	}
	return c.tasks.Create(c.ctx, &tasksapi.CreateTaskRequest{
		ContainerID: id, Rootfs: m.Mounts, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr,
	})
}

// createContainer makes the container record (spec and snapshot) with ctr.
// "--": ctr 1.6's containers create would take the command's flags
// (sh -c) for its own.
func createContainer(t *testing.T, id string, args ...string) {
	t.Helper()
	mustCtr(t, append([]string{"containers", "create", "--runtime", runtimeName, "--", imageRef, id}, args...)...)
}

// startTask creates and starts a container's task with IO p.
func (c *ioAPI) startTask(t *testing.T, id string, p procIO) uint32 {
	t.Helper()
	if _, err := c.createTask(t, id, p); err != nil {
		t.Fatalf("create task %s: %v", id, err)
	}
	return c.start(t, id)
}

// start starts a created task.
func (c *ioAPI) start(t *testing.T, id string) uint32 {
	t.Helper()
	st, err := c.tasks.Start(c.ctx, &tasksapi.StartRequest{ContainerID: id})
	if err != nil {
		t.Fatalf("start task %s: %v", id, err)
	}
	return st.Pid
}

// execSpec is the process of an exec: args, PATH, cwd /, root.
func execSpec(t *testing.T, args ...string) *specs.Process {
	return &specs.Process{Args: args, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Cwd: "/"}
}

// exec registers an exec with IO p (Stdout and Stderr may be URIs).
func (c *ioAPI) exec(t *testing.T, id, execID string, p procIO, args ...string) error {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(execSpec(t, args...))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.tasks.Exec(c.ctx, &tasksapi.ExecProcessRequest{
		ContainerID: id, ExecID: execID, Spec: a, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr,
	})
	return err
}

func (c *ioAPI) startExec(t *testing.T, id, execID string) uint32 {
	t.Helper()
	st, err := c.tasks.Start(c.ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		t.Fatalf("start exec %s: %v", execID, err)
	}
	return st.Pid
}

// get is the tasks API's Get of the init (execID "") or an exec: what the
// client's container.Task and task.LoadProcess read, fifo paths included.
func (c *ioAPI) get(t *testing.T, id, execID string) *tasktypes.Process {
	t.Helper()
	r, err := c.tasks.Get(c.ctx, &tasksapi.GetRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		t.Fatalf("get %s %q: %v", id, execID, err)
	}
	return r.Process
}

func (c *ioAPI) closeIO(t *testing.T, id, execID string) {
	t.Helper()
	if _, err := c.tasks.CloseIO(c.ctx, &tasksapi.CloseIORequest{ContainerID: id, ExecID: execID, Stdin: true}); err != nil {
		t.Fatalf("CloseIO %s %q: %v", id, execID, err)
	}
}

func (c *ioAPI) wait(t *testing.T, id, execID string) uint32 {
	t.Helper()
	w, err := c.tasks.Wait(c.ctx, &tasksapi.WaitRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		t.Fatalf("wait %s %q: %v", id, execID, err)
	}
	return w.ExitStatus
}

// attachAgain is cio.NewAttach: the paths the tasks API reports, opened
// anew. They must be the ones the process was created with.
func (c *ioAPI) attachAgain(t *testing.T, id, execID string, want procIO) *attachment {
	t.Helper()
	p := c.get(t, id, execID)
	if got := (procIO{p.Stdin, p.Stdout, p.Stderr}); got != want || p.Terminal {
		t.Fatalf("Get %s %q reports IO %+v (terminal %v), want %+v", id, execID, got, p.Terminal, want)
	}
	return attachFifos(t, want)
}

// running: the process has not exited.
func (c *ioAPI) running(t *testing.T, id, execID string) bool {
	t.Helper()
	return c.get(t, id, execID).Status == tasktypes.Status_RUNNING
}

// ---------------------------------------------------------------------------------------------
// stdin and CloseIO

// TestAPIIOStdinCloseIO: a process reading its stdin fifo (cat) gets all
// that was written, more than a pipe holds, also what was written before
// Start; the client closing its writer is not EOF (the shim keeps stdin
// open, so a client can go and another attach), CloseIO is, once the client
// has closed too. Both orders, for the init and for an exec.
func TestAPIIOStdinCloseIO(t *testing.T) {
	for _, target := range []string{"init", "exec"} {
		for _, order := range []string{"client closes first", "CloseIO first"} {
			t.Run(target+"/"+order, func(t *testing.T) {
				stdinCloseIO(t, target, order == "CloseIO first")
			})
		}
	}
}

func stdinCloseIO(t *testing.T, target string, closeIOFirst bool) {
	id := newContainerID(t)
	c := newIOAPI(t)
	p := newProcIO(t, id)
	script := []string{"sh", "-c", "cat; echo end"}
	execID := ""
	a := attachFifos(t, p)
	data := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16) // 200 KiB: three pipes' worth
	if target == "init" {
		createContainer(t, id, script...)
		if _, err := c.createTask(t, id, p); err != nil {
			t.Fatalf("create task: %v", err)
		}
		// Written before Start: it waits in the fifo. (An exec's
		// fifos are opened by its Start, in both runtimes.)
		a.send(t, "early:")
		c.start(t, id)
	} else {
		runDetached(t, id, 1, nil, "exec sleep 1000")
		execID = "cat"
		if err := c.exec(t, id, execID, p, script...); err != nil {
			t.Fatalf("exec: %v", err)
		}
		c.startExec(t, id, execID)
		a.send(t, "early:")
	}
	want := "early:" + string(data)
	go func() {
		// cat reads while we write: a write blocks while the pipe is full.
		if _, err := a.stdin.Write(data); err != nil {
			t.Errorf("write stdin: %v", err)
		}
	}()
	waitFor(t, timeout(30*time.Second), "cat to echo everything", func() bool {
		return len(a.out.String()) >= len(want)
	}, func() string { return fmt.Sprintf("%d of %d bytes", len(a.out.String()), len(want)) })

	first, second := func() { a.closeStdin(t) }, func() { c.closeIO(t, id, execID) }
	if closeIOFirst {
		first, second = second, first
	}
	first()
	// Nothing ends stdin yet: the other writer is still open.
	time.Sleep(timeout(500 * time.Millisecond))
	if !c.running(t, id, execID) || strings.HasSuffix(a.out.String(), "end\n") {
		t.Fatalf("cat saw EOF before both the client and CloseIO closed stdin (closeIOFirst=%v); stdout ends %q", closeIOFirst, tail(a.out.String(), 40))
	}
	second()
	if st := c.wait(t, id, execID); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
	a.waitEOF(t)
	if got := a.out.String(); got != want+"end\n" {
		t.Errorf("stdout: %d bytes ending %q, want %d bytes ending %q", len(got), tail(got, 40), len(want)+4, tail(want+"end\n", 40))
	}
	if e := a.errOut.String(); e != "" {
		t.Errorf("stderr: %q", e)
	}
	// Closing again, and closing a stopped process, is not an error.
	c.closeIO(t, id, execID)
}

// TestIOCloseIOBeforeExecStart: a CloseIO that comes before an exec's
// Start (ctr's stdin reaching EOF while the exec is being set up) is kept
// and applied when Start opens the IO: the exec reads what was written,
// then EOF. Ours only: runc's shim has no stdin writer yet to close, so
// its exec would wait for input forever.
func TestIOCloseIOBeforeExecStart(t *testing.T) {
	requireAutokillRuntime(t)
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	c := newIOAPI(t)
	p := newProcIO(t, id)
	a := attachFifos(t, p)
	if err := c.exec(t, id, "cat", p, "sh", "-c", "cat; echo end"); err != nil {
		t.Fatalf("exec: %v", err)
	}
	c.closeIO(t, id, "cat")
	go func() {
		// Completes once Start has opened the fifo's read end.
		if _, err := io.WriteString(a.stdin, "abc"); err != nil {
			t.Errorf("write stdin: %v", err)
		}
		a.closeStdin(t)
	}()
	c.startExec(t, id, "cat")
	waitFor(t, timeout(30*time.Second), "cat to see EOF and exit", func() bool { return !c.running(t, id, "cat") },
		func() string { return "stdout " + a.out.String() })
	if st := c.wait(t, id, "cat"); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
	a.waitEOF(t)
	if got := a.out.String(); got != "abcend\n" {
		t.Errorf("stdout %q, want %q", got, "abcend\n")
	}
}

// ---------------------------------------------------------------------------------------------
// attach, detach, attach again

// chatter counts on stdout (prefix $1, a line every 20 ms) and answers
// each stdin line with "got LINE"; "quit" ends it with status 7, EOF on
// stdin prints "eof" and ends it with 9.
var chatter = []string{"sh", "-c", `
(i=0; while :; do i=$((i+1)); echo "$1$i"; usleep 20000; done) &
while read -r l; do
	echo "got $l"
	if [ "$l" = quit ]; then kill $!; exit 7; fi
done
echo eof
kill $!
exit 9`, "sh"}

// stream is everything a process wrote to stdout, across the clients that
// attached one after the other: their bytes in order.
type stream struct {
	prefix string
	done   []byte        // what detached clients read
	cur    func() string // what the attached one read so far
}

func (s *stream) String() string {
	if s.cur == nil {
		return string(s.done)
	}
	return string(s.done) + s.cur()
}

func (s *stream) attached(a *attachment) { s.cur = a.out.String }

// detached adds what a detached client read.
func (s *stream) detached(a *attachment) {
	s.done = append(s.done, a.out.String()...)
	s.cur = nil
}

// check parses the stream: counter lines must count 1, 2, 3 ... without a
// gap or a repeat (nothing lost, nothing taken by a third reader), every
// other line is "got ..." or "eof". It returns the last count and the
// other lines.
func (s *stream) check(t *testing.T) (last int, other []string) {
	t.Helper()
	out := s.String()
	lines := strings.Split(out, "\n")
	lines = lines[:len(lines)-1] // the last is partial (or empty)
	re := regexp.MustCompile("^" + s.prefix + `(\d+)$`)
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if n != last+1 {
				t.Fatalf("stdout of %s: %s%d follows %s%d: output was lost or stolen; stream:\n%s", s.prefix, s.prefix, n, s.prefix, last, tail(out, 3000))
			}
			last = n
			continue
		}
		if !strings.HasPrefix(l, "got ") && l != "eof" {
			t.Fatalf("stdout of %s: unexpected line %q: output was lost or mangled; stream:\n%s", s.prefix, l, tail(out, 3000))
		}
		other = append(other, l)
	}
	return last, other
}

// waitCount waits until the counter is past n, and checks the stream.
func (s *stream) waitCount(t *testing.T, n int) int {
	t.Helper()
	var last int
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("%s to count past %d", s.prefix, n), func() bool {
		last, _ = s.check(t)
		return last > n
	}, func() string { return "stdout:\n" + tail(s.String(), 1000) })
	return last
}

// waitLine waits for a "got"/"eof" line, and fails on "eof" unless it is
// the one waited for.
func (s *stream) waitLine(t *testing.T, line string) {
	t.Helper()
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("%q from %s", line, s.prefix), func() bool {
		_, other := s.check(t)
		for _, o := range other {
			if o == "eof" && line != "eof" {
				t.Fatalf("%s saw EOF on stdin; stdout:\n%s", s.prefix, tail(s.String(), 1000))
			}
			if o == line {
				return true
			}
		}
		return false
	}, func() string { return "stdout:\n" + tail(s.String(), 1000) })
}

// TestAPIIOAttachDetach: a client attaches, reads, types, and detaches;
// the process writes on while nobody is attached (the fifo's pipe holds
// it: the shim neither reads it nor lets the writer block on SIGPIPE);
// the next client, attaching with the paths the tasks API reports, reads
// on exactly where the first stopped and its input reaches the process,
// which never saw EOF on stdin. For the init the last client is `ctr task
// attach`, which gets the exit status.
func TestAPIIOAttachDetach(t *testing.T) {
	for _, target := range []string{"init", "exec"} {
		t.Run(target, func(t *testing.T) {
			id := newContainerID(t)
			c := newIOAPI(t)
			p := newProcIO(t, id)
			s := &stream{prefix: "c"}
			execID := ""
			a := attachFifos(t, p)
			s.attached(a)
			if target == "init" {
				createContainer(t, id, append(chatter, "c")...)
				c.startTask(t, id, p)
			} else {
				runDetached(t, id, 1, nil, "exec sleep 1000")
				execID = "chat"
				if err := c.exec(t, id, execID, p, append(chatter, "c")...); err != nil {
					t.Fatalf("exec: %v", err)
				}
				c.startExec(t, id, execID)
			}
			n := s.waitCount(t, 5)
			a.send(t, "one\n")
			s.waitLine(t, "got one")
			for round := 2; round <= 3; round++ {
				a.detach(t)
				s.detached(a)
				n, _ = s.check(t)
				// Written while nobody is attached: about 25 lines.
				time.Sleep(500 * time.Millisecond)
				if !c.running(t, id, execID) {
					t.Fatalf("round %d: the process ended while detached; stdout:\n%s", round, tail(s.String(), 1000))
				}
				a = c.attachAgain(t, id, execID, p)
				s.attached(a)
				if got := s.waitCount(t, n+20); got < n+20 {
					t.Fatalf("round %d: counter at %d", round, got)
				}
				line := fmt.Sprintf("round%d", round)
				a.send(t, line+"\n")
				s.waitLine(t, "got "+line)
			}
			if target == "exec" {
				a.send(t, "quit\n")
				if st := c.wait(t, id, execID); st != 7 {
					t.Errorf("exec exit status %d, want 7", st)
				}
				a.waitEOF(t)
				s.waitLine(t, "got quit")
				s.check(t)
				return
			}
			// The last client is ctr's: cio.NewAttach over the same
			// paths, stdin from us, output to us, until the exit.
			a.detach(t)
			s.detached(a)
			ca := startCtrAttach(t, id)
			s.cur = ca.out.String
			s.waitCount(t, n+20)
			ca.send(t, "ctr\n")
			s.waitLine(t, "got ctr")
			ca.send(t, "quit\n")
			if code := ca.wait(t); code != 7 {
				t.Errorf("ctr task attach: exit %d, want the task's 7; stderr:\n%s", code, ca.errOut.String())
			}
			s.waitLine(t, "got quit")
			s.check(t)
		})
	}
}

// ctrAttach is `ctr task attach` with stdin and stdout of the test's.
type ctrAttach struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	out, errOut *collector
	done        chan struct{}
}

func startCtrAttach(t *testing.T, id string) *ctrAttach {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout(2*time.Minute))
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, filepath.Join(cd.binDir, "ctr"), "--address", cd.address(), "--namespace", testNamespace, "tasks", "attach", id)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &ctrAttach{cmd: cmd, stdin: in, out: collect(out), errOut: collect(errOut), done: make(chan struct{})}
	t.Cleanup(func() {
		in.Close()
		select {
		case <-a.out.done:
		case <-time.After(timeout(10 * time.Second)):
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	return a
}

func (a *ctrAttach) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(a.stdin, s); err != nil {
		t.Fatalf("write to ctr task attach: %v", err)
	}
}

// wait returns ctr's exit code once it has exited and its output is read.
func (a *ctrAttach) wait(t *testing.T) int {
	t.Helper()
	for _, c := range []*collector{a.out, a.errOut} {
		select {
		case <-c.done:
		case <-time.After(timeout(60 * time.Second)):
			t.Fatalf("ctr task attach did not end; stdout:\n%s\nstderr:\n%s", tail(a.out.String(), 1000), a.errOut.String())
		}
	}
	err := a.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ctr task attach: %v", err)
	}
	return 0
}

// ---------------------------------------------------------------------------------------------
// file:// and binary://

// loggerScript is a binary:// logging binary (containerd's protocol: the
// container's stdout on fd 3, stderr on fd 4, ready once fd 5 is closed,
// which it does first: its copies must not hold it). It records its
// arguments and environment and copies the streams to files named after
// CONTAINER_ID. (When it ends differs: ours ends when the process's
// writers are gone, runc's shim holds the pipes until Delete and then
// sends SIGTERM.)
const loggerScript = `#!/bin/sh
exec 5>&-
d=$(dirname "$0")
echo "$CONTAINER_NAMESPACE $CONTAINER_ID $*" > "$d/$CONTAINER_ID.args"
cat <&3 > "$d/$CONTAINER_ID.out" &
cat <&4 > "$d/$CONTAINER_ID.err" &
wait
`

func writeLogger(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "logger")
	if err := os.WriteFile(path, []byte(loggerScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// waitLogger waits until the logger, run for name, has recorded args and
// copied "out\n" and "err\n".
func waitLogger(t *testing.T, dir, name, args string) {
	t.Helper()
	read := func(ext string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name+ext))
		return string(b)
	}
	waitFor(t, timeout(30*time.Second), "the logging binary to get args "+args+" and both streams", func() bool {
		return strings.TrimSpace(read(".args")) == args && read(".out") == "out\n" && read(".err") == "err\n"
	}, func() string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return fmt.Sprintf("files in %s: %v; args %q, stdout %q, stderr %q", dir, names, read(".args"), read(".out"), read(".err"))
	})
}

// hasLines: log holds each of lines as a line (stdout and stderr share the
// file; their order is not ours to promise).
func hasLines(log string, lines ...string) bool {
	for _, l := range lines {
		if !containsLine(log, l) {
			return false
		}
	}
	return true
}

// waitLogFile waits until the log file holds both lines (runc's shim may
// still be copying when the exit is reported). runc's shim may lose
// stderr: it copies both streams into one file, and the stdout copy
// closes that file when it ends, even while the stderr copy still has to
// write (its copyPipes hands stdout the bare file; seen for an exec with
// the shims of 1.6 and 2.4.2).
func waitLogFile(t *testing.T, log string) {
	t.Helper()
	want := []string{"out", "err"}
	if runtimeName != autokillRT {
		want = want[:1]
	}
	var b []byte
	var err error
	waitFor(t, timeout(10*time.Second), fmt.Sprintf("the lines %v in %s", want, log), func() bool {
		b, err = os.ReadFile(log)
		return err == nil && hasLines(string(b), want...)
	}, func() string { return fmt.Sprintf("%v, %q", err, b) })
	if !hasLines(string(b), "err") {
		t.Logf("%s lost stderr: %q", runtimeName, b)
	}
}

const logScript = "echo out; echo err >&2; exit 3"

// TestAPIIOLogURI: file:// and binary:// for the init (`ctr run --log-uri`,
// what cio.LogFile and cio.BinaryIO send) and for an exec (the tasks API):
// the file (its directory created) or the logging binary gets stdout and
// stderr, the binary its query as arguments and the ids in its
// environment.
func TestAPIIOLogURI(t *testing.T) {
	t.Run("file init", func(t *testing.T) {
		id := newContainerID(t)
		log := filepath.Join(t.TempDir(), "new-dir", "init.log")
		r := ctrResult(t, runArgs([]string{"--rm", "--log-uri", "file://" + log}, id, "sh", "-c", logScript)...)
		if r.Code != 3 {
			t.Fatalf("want exit 3: %s", r)
		}
		waitLogFile(t, log)
	})
	t.Run("binary init", func(t *testing.T) {
		id := newContainerID(t)
		dir, logger := writeLogger(t)
		r := ctrResult(t, runArgs([]string{"--rm", "--log-uri", "binary://" + logger + "?k=v"}, id, "sh", "-c", logScript)...)
		if r.Code != 3 {
			t.Fatalf("want exit 3: %s", r)
		}
		waitLogger(t, dir, id, testNamespace+" "+id+" k v")
	})
	t.Run("file exec", func(t *testing.T) {
		id := newContainerID(t)
		runDetached(t, id, 1, nil, "exec sleep 1000")
		c := newIOAPI(t)
		log := filepath.Join(t.TempDir(), "new-dir", "exec.log")
		uri := "file://" + log
		if err := c.exec(t, id, "log", procIO{Stdout: uri, Stderr: uri}, "sh", "-c", logScript); err != nil {
			t.Fatalf("exec: %v", err)
		}
		c.startExec(t, id, "log")
		if st := c.wait(t, id, "log"); st != 3 {
			t.Errorf("exit status %d, want 3", st)
		}
		if _, err := c.tasks.DeleteProcess(c.ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "log"}); err != nil {
			t.Fatalf("delete exec: %v", err)
		}
		waitLogFile(t, log)
	})
	t.Run("binary exec", func(t *testing.T) {
		id := newContainerID(t)
		runDetached(t, id, 1, nil, "exec sleep 1000")
		c := newIOAPI(t)
		dir, logger := writeLogger(t)
		uri := "binary://" + logger + "?k=v"
		if err := c.exec(t, id, "log", procIO{Stdout: uri, Stderr: uri}, "sh", "-c", logScript); err != nil {
			t.Fatalf("exec: %v", err)
		}
		c.startExec(t, id, "log")
		if st := c.wait(t, id, "log"); st != 3 {
			t.Errorf("exit status %d, want 3", st)
		}
		if _, err := c.tasks.DeleteProcess(c.ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "log"}); err != nil {
			t.Fatalf("delete exec: %v", err)
		}
		// CONTAINER_ID is the exec's id, as runc's shim sets it.
		waitLogger(t, dir, "log", testNamespace+" log k v")
	})
}

// TestAPIIOLogBinaryMissing: a logging binary that does not exist fails
// Create (the init) or Start (an exec, whose IO is opened there by both
// runtimes), naming the binary, and leaves nothing behind: no task, no
// shim, no mount, no process; the container runs on after a failed exec,
// and the exec id can be used again.
func TestAPIIOLogBinaryMissing(t *testing.T) {
	const missing = "/no/such/logger"
	uri := "binary://" + missing
	checkErr := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s with %s succeeded", what, uri)
		}
		if !strings.Contains(err.Error(), missing) || !strings.Contains(strings.ToLower(err.Error()), "no such file") {
			t.Errorf("%s: %v; want the binary's path and the reason", what, err)
		}
		if c := codeOf(grpcErr(err)); runtimeName == autokillRT && c != "NotFound" {
			t.Errorf("%s: %v is %s, want NotFound", what, err, c)
		}
	}
	t.Run("init", func(t *testing.T) {
		id := newContainerID(t)
		createContainer(t, id, "sh", "-c", "exit 0")
		c := newIOAPI(t)
		_, err := c.createTask(t, id, procIO{Stdout: uri, Stderr: uri})
		checkErr(t, "create", err)
		if _, ok := taskStatus(t, id); ok {
			t.Errorf("task %s listed after its failed create", id)
		}
		waitFor(t, timeout(30*time.Second), "no shim, mount or bundle left", func() bool {
			for _, s := range cd.shimProcs() {
				if argValue(strings.Fields(s), "-id") == id {
					return false
				}
			}
			_, err := os.Stat(cd.bundleDir(id))
			return len(bundleMounted(t, id)) == 0 && os.IsNotExist(err)
		}, func() string {
			return fmt.Sprintf("shims %v, mounts %v", cd.shimProcs(), bundleMounted(t, id))
		})
	})
	t.Run("exec", func(t *testing.T) {
		id := newContainerID(t)
		ti := runDetached(t, id, 1, nil, "exec sleep 1000")
		before := containerProcs(t, id)
		c := newIOAPI(t)
		err := c.exec(t, id, "log", procIO{Stdout: uri, Stderr: uri}, "echo", "hi")
		if err == nil {
			_, err = c.tasks.Start(c.ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: "log"})
		}
		checkErr(t, "exec", err)
		if got := containerProcs(t, id); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("failed exec left processes: before %v, after %v\n%s", before, got, psTable(got))
		}
		_, err = c.tasks.DeleteProcess(c.ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "log"})
		if code := codeOf(grpcErr(err)); code != "ok" && code != "NotFound" {
			t.Errorf("delete the failed exec: %v", err)
		}
		if st, _ := taskStatus(t, id); st.Status != "RUNNING" || st.Pid != ti.Pid {
			t.Errorf("task after the failed exec: %+v, want running pid %d", st, ti.Pid)
		}
		if r := execIn(t, id, "log", nil, "echo", "hi"); r.Code != 0 || r.Stdout != "hi\n" {
			t.Errorf("exec id reused after the failed one: %s", r)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// containerd restart

// TestAPIIOContainerdRestart: containerd stops (SIGTERM) or crashes
// (SIGKILL) while an init and an exec chatter. Their IO goes on meanwhile
// (it never passes through containerd); once containerd is back its
// tasks API reports both processes with their fifos, a client attaches
// again and reads on where the last stopped, its input arrives, a new exec
// runs, and Kill, Wait, Delete and the exit events work for both.
func TestAPIIOContainerdRestart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(strings.ToUpper(sig.String()), func(t *testing.T) {
			id := newContainerID(t)
			c := newIOAPI(t)
			pi, pe := newProcIO(t, "init"), newProcIO(t, "exec")
			si, se := &stream{prefix: "c"}, &stream{prefix: "x"}
			ai := attachFifos(t, pi)
			si.attached(ai)
			createContainer(t, id, append(chatter, "c")...)
			pid := c.startTask(t, id, pi)
			ae := attachFifos(t, pe)
			se.attached(ae)
			if err := c.exec(t, id, "chat", pe, append(chatter, "x")...); err != nil {
				t.Fatalf("exec: %v", err)
			}
			epid := c.startExec(t, id, "chat")
			for _, x := range []struct {
				s *stream
				a *attachment
			}{{si, ai}, {se, ae}} {
				x.s.waitCount(t, 5)
				x.a.send(t, "before\n")
				x.s.waitLine(t, "got before")
			}

			if err := cd.stop(sig); err != nil {
				t.Fatalf("stop containerd: %v", err)
			}
			for _, x := range []struct {
				s *stream
				a *attachment
			}{{si, ai}, {se, ae}} {
				n, _ := x.s.check(t)
				x.s.waitCount(t, n+20)
				x.a.send(t, "down\n")
				x.s.waitLine(t, "got down")
			}
			startContainerd(t)
			// A client of the new containerd (the old connection may
			// sit in grpc's reconnect backoff).
			c = newIOAPI(t)

			for _, x := range []struct {
				execID string
				pid    uint32
				p      procIO
				s      *stream
				a      **attachment
			}{{"", pid, pi, si, &ai}, {"chat", epid, pe, se, &ae}} {
				if p := c.get(t, id, x.execID); p.Pid != x.pid || p.Status != tasktypes.Status_RUNNING {
					t.Fatalf("after the restart, Get %q: pid %d %v, want running pid %d", x.execID, p.Pid, p.Status, x.pid)
				}
				(*x.a).detach(t)
				x.s.detached(*x.a)
				n, _ := x.s.check(t)
				*x.a = c.attachAgain(t, id, x.execID, x.p)
				x.s.attached(*x.a)
				x.s.waitCount(t, n+20)
				(*x.a).send(t, "up\n")
				x.s.waitLine(t, "got up")
			}
			if r := execIn(t, id, "after", nil, "echo", "hi"); r.Code != 0 || r.Stdout != "hi\n" {
				t.Errorf("exec after the restart: %s", r)
			}

			ev := subscribe(t, id)
			if _, err := c.tasks.Kill(c.ctx, &tasksapi.KillRequest{ContainerID: id, ExecID: "chat", Signal: uint32(syscall.SIGKILL)}); err != nil {
				t.Fatalf("kill the exec: %v", err)
			}
			if st := c.wait(t, id, "chat"); st != 137 {
				t.Errorf("exec exit status %d, want 137", st)
			}
			ev.waitFor(t, "the exec's TaskExit", func(e taskEvent) bool {
				return e.Topic == "/tasks/exit" && e.Exec == "chat" && e.Code == 137
			})
			if _, err := c.tasks.DeleteProcess(c.ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: "chat"}); err != nil {
				t.Errorf("delete the exec: %v", err)
			}
			ai.send(t, "quit\n")
			if st := c.wait(t, id, ""); st != 7 {
				t.Errorf("init exit status %d, want 7", st)
			}
			ev.waitFor(t, "the init's TaskExit", func(e taskEvent) bool {
				return e.Topic == "/tasks/exit" && e.Exec == "" && e.Code == 7
			})
			d, err := c.tasks.Delete(c.ctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
			if err != nil || d.ExitStatus != 7 {
				t.Errorf("delete: %v, status %v, want 7", err, d.GetExitStatus())
			}
			if runtimeName == autokillRT {
				// runc's shim may lose it: seen with 2.4.2 after a
				// SIGKILL restart, its shim exits (Shutdown) before it
				// forwarded TaskDelete. Ours forwards its queue first.
				ev.waitFor(t, "TaskDelete", func(e taskEvent) bool { return e.Topic == "/tasks/delete" })
			}
			ai.waitEOF(t)
			ae.waitEOF(t)
			si.waitLine(t, "got quit")
			se.check(t)
		})
	}
}
