package integration

// The private containerd: its config, its process (start, stop, kill), its shims and its log.

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
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
)

// configTemplate is also what hack/containerd.sh fills in: one config for every private containerd.
//
//go:embed testdata/containerd.toml
var configTemplate string

// containerdConfig fills in configTemplate for a containerd of the given major version.
func containerdConfig(major int, dir, level string) (string, error) {
	if strings.ContainsAny(dir, "\"\\\n") {
		return "", fmt.Errorf("containerd directory %q: a TOML string needs no escapes here", dir)
	}
	keep, drop := "@1@", "@2@"
	if major >= 2 {
		keep, drop = drop, keep
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(configTemplate, "\n") {
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, drop) {
			continue
		}
		l = strings.TrimPrefix(l, keep)
		b.WriteString(strings.NewReplacer("@DIR@", dir, "@LEVEL@", level, "@STATE_TIMEOUT@", stateTimeout()).Replace(l))
	}
	return b.String(), nil
}

// stateTimeout is containerd's deadline for a shim's State: its default
// on the host, more on the VM tier's emulated CPU (see the template).
func stateTimeout() string {
	if os.Getenv("AUTOKILL_TIER") == "vm" {
		return "20s"
	}
	return "2s"
}

type containerd struct {
	binDir  string
	dir     string
	version string // "1.6.20~ds1", "2.4.2+unknown"
	major   int
	minor   int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (c *containerd) address() string    { return filepath.Join(c.dir, "containerd.sock") }
func (c *containerd) logPath() string    { return filepath.Join(c.dir, "containerd.log") }
func (c *containerd) configPath() string { return filepath.Join(c.dir, "config.toml") }
func (c *containerd) stateDir() string   { return filepath.Join(c.dir, "state") }

// bundleDir is the bundle of a container (the shim's working directory).
func (c *containerd) bundleDir(id string) string {
	return filepath.Join(c.stateDir(), "io.containerd.runtime.v2.task", testNamespace, id)
}

// versionNumRe takes major and minor from "1.6.20~ds1", "v2.4.2", "2.2.9+unknown".
var versionNumRe = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

// atLeast tells whether the containerd under test is major.minor or newer.
func (c *containerd) atLeast(major, minor int) bool {
	return c.major > major || c.major == major && c.minor >= minor
}

// configure reads the version and writes config.toml (version 2 for 1.x, 3 for 2.x).
func (c *containerd) configure() error {
	out, err := exec.Command(filepath.Join(c.binDir, "containerd"), "--version").Output()
	if err != nil {
		return fmt.Errorf("containerd --version: %v", err)
	}
	// "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
	// "containerd github.com/containerd/containerd/v2 2.4.2+unknown " (built from the module proxy)
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return fmt.Errorf("cannot parse containerd --version: %q", out)
	}
	c.version = f[2]
	m := versionNumRe.FindStringSubmatch(f[2])
	if m == nil {
		return fmt.Errorf("cannot parse containerd version %q", f[2])
	}
	major, _ := strconv.Atoi(m[1])
	c.major = major
	c.minor, _ = strconv.Atoi(m[2])
	level := "info"
	if os.Getenv("AUTOKILL_CONTAINERD_DEBUG") == "1" {
		level = "debug"
	}
	cfg, err := containerdConfig(major, c.dir, level)
	if err != nil {
		return err
	}
	return os.WriteFile(c.configPath(), []byte(cfg), 0o644)
}

func (c *containerd) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// start starts containerd on the configured root/state and waits until ctr version answers.
func (c *containerd) start() error {
	c.mu.Lock()
	if c.cmd != nil {
		select {
		case <-c.exited:
		default:
			c.mu.Unlock()
			return errors.New("containerd is already running")
		}
	}
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "---- integration: starting containerd %s at %s ----\n", c.version, time.Now().Format(time.RFC3339Nano))
	path := c.binDir + ":" + os.Getenv("PATH")
	if shimPath != "" {
		path = filepath.Dir(shimPath) + ":" + path
	}
	cmd := exec.Command(filepath.Join(c.binDir, "containerd"), "--config", c.configPath())
	cmd.Env = append(envWithout(os.Environ(), "PATH", "NOTIFY_SOCKET"), "PATH="+path)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.mu.Unlock()
		return fmt.Errorf("starting containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()

	deadline := time.Now().Add(timeout(60 * time.Second))
	for {
		_, _, code, err := c.ctrRaw(timeout(10*time.Second), "version")
		if err == nil && code == 0 {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited during start-up (%v); log tail:\n%s", cmd.ProcessState, c.logTail(40))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not answer ctr version within %v; log tail:\n%s", timeout(60*time.Second), c.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig (SIGTERM: graceful, SIGKILL: crash) and waits for containerd to exit. Shims keep
// running, as they do when a real containerd stops.
func (c *containerd) stop(sig syscall.Signal) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout(30 * time.Second)):
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("containerd ignored %v for %v; killed", sig, timeout(30*time.Second))
}

// shimProcs lists the shim processes started by this containerd (any runtime), as "pid cmdline".
func (c *containerd) shimProcs() []string {
	var out []string
	for _, p := range allProcs() {
		args := procCmdline(p)
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && argValue(args, "-address") == c.address() {
			out = append(out, fmt.Sprintf("%d %s", p, strings.Join(args, " ")))
		}
	}
	return out
}

func (c *containerd) waitNoShims(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := c.shimProcs()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killShims SIGKILLs the shims left by this containerd (end of the run only).
func (c *containerd) killShims() {
	for _, s := range c.shimProcs() {
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		fmt.Fprintf(os.Stderr, "integration: killing left-over shim %s\n", s)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// ctrRaw runs ctr of the version under test against this containerd, namespace autokill-test.
// err is set only when ctr could not run or timed out.
func (c *containerd) ctrRaw(d time.Duration, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := append([]string{"--address", c.address(), "--namespace", testNamespace}, args...)
	if os.Getenv("AUTOKILL_TIER") == "vm" {
		// ctr's dial gives up after 10 s by default: 50 ctr starting at
		// once on the VM's emulated CPU took longer (either runtime).
		full = append([]string{"--connect-timeout", "60s"}, full...)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "ctr"), full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	stdout, stderr = o.String(), e.String()
	if ctx.Err() != nil {
		return stdout, stderr, -1, fmt.Errorf("ctr %s: timed out after %v", strings.Join(args, " "), d)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout, stderr, ee.ExitCode(), nil
	}
	if err != nil {
		return stdout, stderr, -1, err
	}
	return stdout, stderr, 0, nil
}

func (c *containerd) serverVersion() string {
	out, _, _, _ := c.ctrRaw(timeout(10*time.Second), "version")
	// Server:\n  Version:  1.6.20~ds1\n ...
	if i := strings.Index(out, "Server:"); i >= 0 {
		for _, l := range strings.Split(out[i:], "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Version:" {
				return f[1]
			}
		}
	}
	return "?"
}

func (c *containerd) logSize() int64 {
	st, err := os.Stat(c.logPath())
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns the log written after offset (at most max bytes, the last ones).
func (c *containerd) logSince(offset int64, max int) string {
	b, err := os.ReadFile(c.logPath())
	if err != nil {
		return err.Error()
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	b = b[offset:]
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

func (c *containerd) logTail(lines int) string {
	b, err := os.ReadFile(c.logPath())
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func (c *containerd) dumpLog(w io.Writer, lines int) {
	fmt.Fprintf(w, "==== last %d lines of %s (containerd and shim logs) ====\n%s\n==== end of containerd.log ====\n", lines, c.logPath(), c.logTail(lines))
}

// startContainerd starts the private containerd again on the same root and state.
func startContainerd(t testing.TB) {
	t.Helper()
	if err := cd.start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
}

// stopContainerd stops containerd gracefully (SIGTERM). Shims and containers keep running.
func stopContainerd(t testing.TB) {
	t.Helper()
	if err := cd.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("stop containerd: %v", err)
	}
}

// killContainerd crashes containerd (SIGKILL). Shims and containers keep running.
func killContainerd(t testing.TB) {
	t.Helper()
	if err := cd.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("kill containerd: %v", err)
	}
}
