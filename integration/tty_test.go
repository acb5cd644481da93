package integration

// Issue 8, point 2: terminals for the init (ctr run -t) and for execs
// (ctr task exec -t). ctr runs on a pty of the test's, as under a terminal
// emulator: its session's controlling terminal, so that a resize of it
// reaches ctr as SIGWINCH, as it would from tmux.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
)

// ttyCtr is ctr running on a pty of the test's.
type ttyCtr struct {
	cmd    *exec.Cmd
	master console.Console
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{} // ctr exited
	read   chan struct{} // the pty's output is all read
	err    error
}

func startTTYCtr(t *testing.T, rows, cols uint16, args ...string) *ttyCtr {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	if err := master.Resize(console.WinSize{Height: rows, Width: cols}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout(2*time.Minute))
	t.Cleanup(cancel)
	full := append([]string{"--address", cd.address(), "--namespace", testNamespace}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(cd.binDir, "ctr"), full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &ttyCtr{cmd: cmd, master: master, done: make(chan struct{}), read: make(chan struct{})}
	go func() {
		defer close(c.read)
		b := make([]byte, 64<<10)
		for {
			n, err := master.Read(b)
			c.mu.Lock()
			c.out.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c
}

func (c *ttyCtr) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// expect waits until the output holds want (after the offset of a previous
// expect), and returns the offset past it.
func (c *ttyCtr) expect(t *testing.T, from int, want string) int {
	t.Helper()
	var i int
	waitFor(t, timeout(30*time.Second), fmt.Sprintf("%q on the terminal", want), func() bool {
		o := c.output()
		if from > len(o) {
			return false
		}
		i = strings.Index(o[from:], want)
		return i >= 0
	}, func() string { return fmt.Sprintf("terminal output:\n%q", c.output()) })
	return from + i + len(want)
}

func (c *ttyCtr) send(t *testing.T, s string) {
	t.Helper()
	if _, err := c.master.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (c *ttyCtr) wait(t *testing.T) {
	t.Helper()
	deadline := time.After(timeout(60 * time.Second))
	for _, ch := range []chan struct{}{c.done, c.read} {
		select {
		case <-ch:
		case <-deadline:
			ps := psTable(allProcs())
			// ctr is a Go program: SIGQUIT makes it print where it is stuck
			// onto its terminal.
			_ = c.cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(time.Second)
			o := c.output()
			if i := strings.Index(o, "SIGQUIT"); i > 1000 {
				o = o[:1000] + " [...] " + o[i:]
			}
			if len(o) > 12000 {
				o = o[:12000] + " [...]"
			}
			t.Fatalf("ctr still running (or its output unread); terminal output:\n%s\n%s", o, ps)
		}
	}
}

// interactive drives a shell on the terminal: a command typed, its echo
// and output, the size ctr passed on, a resize seen by stty, and exit.
// With devConsole, /dev/console must be the terminal (the runtime spec's
// bind of the pty onto it, for the init).
func interactive(t *testing.T, c *ttyCtr, devConsole bool) {
	t.Helper()
	// The marker is computed by the shell, so finding it proves the
	// command ran, not only that the input was echoed.
	c.send(t, "echo ready-$((40+2))\r")
	at := c.expect(t, 0, "ready-42")
	// ctr passes its terminal's size right after Start, which typed
	// input may overtake.
	waitFor(t, timeout(30*time.Second), "the initial size inside the container", func() bool {
		c.send(t, "stty size\r")
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(c.output()[at:], "24 80")
	}, func() string { return fmt.Sprintf("terminal output:\n%q", c.output()) })
	at = len(c.output())
	if err := c.master.Resize(console.WinSize{Height: 33, Width: 111}); err != nil {
		t.Fatal(err)
	}
	// ctr forwards the SIGWINCH it gets as ResizePty; give it a moment
	// by asking until the new size shows.
	waitFor(t, timeout(30*time.Second), "the resize inside the container", func() bool {
		c.send(t, "stty size\r")
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(c.output()[at:], "33 111")
	}, func() string { return fmt.Sprintf("terminal output:\n%q", c.output()) })
	if devConsole {
		c.send(t, "[ /dev/console -ef \"$(tty)\" ] && echo console-$((6*7))\r")
		c.expect(t, at, "console-42")
	}
	c.send(t, "tty; exit 3\r")
	c.expect(t, at, "/dev/pts/")
	c.wait(t)
}

// TestAPITerminalRun: ctr run -t is interactive.
func TestAPITerminalRun(t *testing.T) {
	id := newContainerID(t)
	c := startTTYCtr(t, 24, 80, "run", "--rm", "-t", "--runtime", runtimeName, imageRef, id, "sh")
	interactive(t, c, true)
	if ee, ok := c.err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("ctr run -t: %v, want exit 3", c.err)
	}
}

// TestAPIExecTerminal: ctr task exec -t is interactive, and so is a
// second one after the first has ended.
func TestAPIExecTerminal(t *testing.T) {
	id := newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	for i, execID := range []string{"t1", "t2"} {
		c := startTTYCtr(t, 24, 80, "task", "exec", "-t", "--exec-id", execID, id, "sh")
		interactive(t, c, false)
		if ee, ok := c.err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exec %d: ctr task exec -t: %v, want exit 3", i, c.err)
		}
	}
}

// TestTerminalOutputComplete: a megabyte written to the terminal reaches
// ctr whole, though the process exits right after writing it. Ours only:
// containerd's runc shim publishes the exit before its console copy has
// finished, and ctr then stops reading (3 runs in 4 lost the last 25-55
// KB with runc 1.1.5 on containerd 1.6 and 2.2, init and exec alike).
func TestTerminalOutputComplete(t *testing.T) {
	const n = 1 << 20
	script := fmt.Sprintf("head -c %d /dev/zero | tr '\\0' Q; echo; echo END", n)
	check := func(t *testing.T, c *ttyCtr) {
		t.Helper()
		c.wait(t)
		o := c.output()
		if got := strings.Count(o, "Q"); got != n || !strings.Contains(o, "END") {
			if len(o) > 2000 {
				o = o[:1000] + " [...] " + o[len(o)-1000:]
			}
			t.Logf("output: %q", o)
			t.Fatalf("got %d of %d bytes (END seen: %v), ctr: %v", got, n, strings.Contains(o, "END"), c.err)
		}
	}
	t.Run("init", func(t *testing.T) {
		id := newContainerID(t)
		check(t, startTTYCtr(t, 24, 80, "run", "--rm", "-t", "--runtime", runtimeName, imageRef, id, "sh", "-c", script))
	})
	t.Run("exec", func(t *testing.T) {
		id := newContainerID(t)
		runDetached(t, id, 1, nil, "exec sleep 1000")
		for _, execID := range []string{"o1", "o2", "o3"} {
			check(t, startTTYCtr(t, 24, 80, "task", "exec", "-t", "--exec-id", execID, id, "sh", "-c", script))
		}
	})
}

// TestAPITerminalAttach: a task with a terminal, started detached, is
// attached to, detached from (the client killed) and attached to again,
// and what is typed each time reaches it: a client going away is no end
// of input. CloseIO, once the last client has gone too, hangs the
// terminal up: the session gets SIGHUP.
func TestAPITerminalAttach(t *testing.T) {
	id := newContainerID(t)
	// A hung-up terminal reads EOF and its session gets SIGHUP, in
	// either order: both end in exit 7.
	script := `trap "exit 7" HUP; while read l; do echo got-$l; done; exit 7`
	run := startTTYCtr(t, 24, 80, runArgs([]string{"-d", "-t"}, id, "sh", "-c", script)...)
	run.wait(t)
	if run.err != nil {
		t.Fatalf("ctr run -d -t: %v\n%q", run.err, run.output())
	}
	waitTaskStatus(t, id, "RUNNING", timeout(30*time.Second))
	var last *ttyCtr
	for _, word := range []string{"one", "two"} {
		if last != nil {
			// Detached: no client has the fifos open now.
			last.cmd.Process.Kill()
			last.wait(t)
		}
		a := startTTYCtr(t, 24, 80, "task", "attach", id)
		// ctr attaches its fifos after it starts: type until the echo shows.
		waitFor(t, timeout(30*time.Second), "typed input to reach the task", func() bool {
			a.send(t, word+"\r")
			time.Sleep(200 * time.Millisecond)
			return strings.Contains(a.output(), "got-"+word)
		}, func() string { return fmt.Sprintf("terminal output:\n%q", a.output()) })
		if st, ok := taskStatus(t, id); !ok || st.Status != "RUNNING" {
			t.Fatalf("after attach %s: task %+v", word, st)
		}
		last = a
	}
	// Detach the second client only after CloseIO: input ends when both
	// the shim's writer and containerd's are gone.
	ctx, tasks := tasksClient(t)
	if _, err := tasks.CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: id, Stdin: true}); err != nil {
		t.Fatalf("CloseIO: %v", err)
	}
	if st, ok := taskStatus(t, id); !ok || st.Status != "RUNNING" {
		t.Fatalf("after CloseIO with a client attached: task %+v", st)
	}
	last.cmd.Process.Kill()
	last.wait(t)
	waitFor(t, timeout(30*time.Second), "the hung-up task to stop", func() bool {
		st, ok := taskStatus(t, id)
		return ok && st.Status == "STOPPED"
	}, func() string {
		r, err := tasks.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
		if err != nil {
			return err.Error()
		}
		pid := int(r.Process.Pid)
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
		var sig []string
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "Sig") || strings.HasPrefix(l, "ShdPnd") || strings.HasPrefix(l, "State") {
				sig = append(sig, l)
			}
		}
		return fmt.Sprintf("task %s pid %d wchan %s %v; holders of its stdin fifo %s: %v; of a pty master: %v",
			r.Process.Status, pid, wchan, sig, r.Process.Stdin, fdHolders(r.Process.Stdin), append(fdHolders("/dev/ptmx"), fdHolders("/dev/pts/ptmx")...))
	})
	if code := deleteTask(t, id); code != 7 {
		t.Errorf("exit status %d, want 7 (a hung-up terminal)", code)
	}
}

// fdHolders lists the processes with p open, and how (fdinfo flags).
func fdHolders(p string) []string {
	var out []string
	for _, pid := range allProcs() {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == p {
				info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
				flags := ""
				for _, line := range strings.Split(string(info), "\n") {
					if strings.HasPrefix(line, "flags:") {
						flags = strings.TrimSpace(strings.TrimPrefix(line, "flags:"))
					}
				}
				out = append(out, fmt.Sprintf("%d %v fd %s flags %s", pid, procCmdline(pid), fd.Name(), flags))
			}
		}
	}
	return out
}
