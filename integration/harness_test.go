package integration

// Test harness: a private containerd per test binary run, the image imported into it, and
// helpers to drive ctr and to look at host processes.
//
// Environment (the test binary's contract):
//
//	AUTOKILL_SHIM               absolute path of containerd-shim-autokill-v1; its directory goes first
//	                            on containerd's PATH. Required when AUTOKILL_RUNTIME is the autokill
//	                            runtime (the default); optional otherwise.
//	AUTOKILL_CONTAINERD_BIN_DIR directory holding containerd and ctr of the version under test (and,
//	                            for the runc reference runtime, containerd-shim-runc-v2). Required.
//	AUTOKILL_IMAGE_TAR          OCI image-layout tar of localhost/autokill/busybox:latest. Required.
//	AUTOKILL_RUNTIME            runtime under test, default io.containerd.autokill.v1
//	                            (io.containerd.runc.v2 validates the tests against the reference).
//	AUTOKILL_TIMEOUT_SCALE      integer factor for every liveness timeout (default 1; slow VMs: 10).
//	AUTOKILL_CONTAINERD_DEBUG   1: containerd log level debug (containerd then passes -debug to shims).
//	AUTOKILL_KEEP_DIR           1: keep the private containerd's directory after the run.
//
// The binary must run as root. It creates its containerd directory (root, state, sockets, log) with
// os.MkdirTemp, so under $TMPDIR (default /tmp), which must allow overlayfs (not an overlay itself).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	testNamespace  = "autokill-test"
	imageRef       = "localhost/autokill/busybox:latest"
	autokillRT     = "io.containerd.autokill.v1"
	defaultRuntime = autokillRT
)

var (
	shimPath     string // AUTOKILL_SHIM (may be empty for a non-autokill runtime)
	binDir       string // AUTOKILL_CONTAINERD_BIN_DIR
	imageTar     string // AUTOKILL_IMAGE_TAR
	runtimeName  string // AUTOKILL_RUNTIME
	timeoutScale = 1
	cd           *containerd // the private containerd of this run
)

// timeout scales a liveness timeout by AUTOKILL_TIMEOUT_SCALE.
func timeout(d time.Duration) time.Duration { return d * time.Duration(timeoutScale) }

func TestMain(m *testing.M) {
	flag.Parse()
	code, err := mainSetupAndRun(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func mainSetupAndRun(m *testing.M) (int, error) {
	if err := readEnv(); err != nil {
		return 2, err
	}
	dir, err := os.MkdirTemp("", "autokill-it-")
	if err != nil {
		return 2, err
	}
	// Searchable like /run/containerd: the root of a user-namespaced
	// container (host uid 100000) must reach its bundle's rootfs.
	if err := os.Chmod(dir, 0o711); err != nil {
		return 2, err
	}
	cd = &containerd{binDir: binDir, dir: dir}
	if err := cd.configure(); err != nil {
		return 2, err
	}
	keep := os.Getenv("AUTOKILL_KEEP_DIR") == "1"
	failed := false
	defer func() {
		if failed {
			cd.dumpLog(os.Stderr, 200)
		}
		if err := cd.stop(syscall.SIGTERM); err != nil {
			fmt.Fprintf(os.Stderr, "integration: stopping containerd: %v\n", err)
		}
		cd.killShims()
		unmountUnder(dir)
		if keep {
			fmt.Printf("integration: kept %s\n", dir)
		} else if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "integration: removing %s: %v\n", dir, err)
		}
	}()

	if err := cd.start(); err != nil {
		failed = true
		return 1, err
	}
	fmt.Printf("integration: containerd %s (%s), server %s\n", cd.version, binDir, cd.serverVersion())
	fmt.Printf("integration: kernel %s, %s\n", kernelRelease(), cgroupLayout())
	fmt.Printf("integration: runtime %s, shim %q, image %s, dir %s\n", runtimeName, shimPath, imageTar, dir)

	out, errOut, code, err := cd.ctrRaw(timeout(2*time.Minute), "images", "import", imageTar)
	if err != nil || code != 0 {
		failed = true
		return 1, fmt.Errorf("ctr images import %s: exit %d, %v\nstdout:\n%s\nstderr:\n%s", imageTar, code, err, out, errOut)
	}
	out, _, code, _ = cd.ctrRaw(timeout(time.Minute), "images", "ls", "-q")
	if code != 0 || !containsLine(out, imageRef) {
		failed = true
		return 1, fmt.Errorf("image %s not listed after import; ctr images ls -q:\n%s", imageRef, out)
	}

	code = m.Run()
	if code != 0 {
		failed = true
		return code, nil
	}
	// Every test deletes its containers; their shims must be gone.
	if leaks := cd.waitNoShims(timeout(15 * time.Second)); len(leaks) > 0 {
		failed = true
		return 1, fmt.Errorf("shim processes left after all containers were deleted:\n%s", strings.Join(leaks, "\n"))
	}
	return 0, nil
}

func readEnv() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (containers, mounts, cgroups)")
	}
	runtimeName = os.Getenv("AUTOKILL_RUNTIME")
	if runtimeName == "" {
		runtimeName = defaultRuntime
	}
	if s := os.Getenv("AUTOKILL_TIMEOUT_SCALE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("AUTOKILL_TIMEOUT_SCALE=%q: want an integer >= 1", s)
		}
		timeoutScale = n
	}
	shimPath = os.Getenv("AUTOKILL_SHIM")
	if shimPath == "" && runtimeName == autokillRT {
		return errors.New("AUTOKILL_SHIM is not set: absolute path of containerd-shim-autokill-v1 (e.g. $PWD/bin/containerd-shim-autokill-v1)")
	}
	if shimPath != "" {
		if !filepath.IsAbs(shimPath) {
			return fmt.Errorf("AUTOKILL_SHIM=%q is not an absolute path", shimPath)
		}
		if err := isExecutable(shimPath); err != nil {
			return fmt.Errorf("AUTOKILL_SHIM: %w", err)
		}
		if filepath.Base(shimPath) != "containerd-shim-autokill-v1" {
			return fmt.Errorf("AUTOKILL_SHIM=%q: the binary must be named containerd-shim-autokill-v1 for containerd to find it", shimPath)
		}
	}
	binDir = os.Getenv("AUTOKILL_CONTAINERD_BIN_DIR")
	if binDir == "" {
		return errors.New("AUTOKILL_CONTAINERD_BIN_DIR is not set: directory with containerd and ctr (hack/lib.sh's ak_bin_dir maps a version to it: /usr/bin for Debian's 1.6, $AUTOKILL_CACHE/containerd-<version>/bin for the others)")
	}
	for _, b := range []string{"containerd", "ctr"} {
		if err := isExecutable(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("AUTOKILL_CONTAINERD_BIN_DIR: %w", err)
		}
	}
	imageTar = os.Getenv("AUTOKILL_IMAGE_TAR")
	if imageTar == "" {
		return errors.New("AUTOKILL_IMAGE_TAR is not set: OCI image-layout tar of " + imageRef + " (hack/build-image.sh makes it)")
	}
	if st, err := os.Stat(imageTar); err != nil {
		return fmt.Errorf("AUTOKILL_IMAGE_TAR: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("AUTOKILL_IMAGE_TAR=%q is not a regular file", imageTar)
	}
	return nil
}

func isExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// The private containerd.

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

// ---------------------------------------------------------------------------------------------
// Helpers for tests.

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

// cgroupProcs lists host processes whose cgroup (in any hierarchy, v1 or v2) is cgroupsPath or
// below it, by reading /proc/*/cgroup. It works without containerd and without the shim.
func cgroupProcs(t testing.TB, cgroupsPath string) []int {
	t.Helper()
	cgroupsPath = "/" + strings.Trim(cgroupsPath, "/")
	var pids []int
	for _, pid := range allProcs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue // gone
		}
		for _, l := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(l, ":", 3)
			if len(parts) == 3 && (parts[2] == cgroupsPath || strings.HasPrefix(parts[2], cgroupsPath+"/")) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// pidNamespace returns the pid namespace identity ("pid:[4026532...]") of a host process.
func pidNamespace(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
}

// pidNamespaceProcs lists host processes in the pid namespace ns (as returned by pidNamespace).
func pidNamespaceProcs(ns string) []int {
	var pids []int
	for _, pid := range allProcs() {
		if n, err := pidNamespace(pid); err == nil && n == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// containerProcs lists all host processes of a running container: the union of its cgroup members
// and the members of its init's pid namespace.
func containerProcs(t testing.TB, id string) []int {
	t.Helper()
	set := map[int]bool{}
	for _, p := range cgroupProcs(t, containerCgroupsPath(t, id)) {
		set[p] = true
	}
	if ti, ok := taskStatus(t, id); ok && ti.Pid > 0 && ti.Status != "STOPPED" {
		if ns, err := pidNamespace(ti.Pid); err == nil {
			for _, p := range pidNamespaceProcs(ns) {
				set[p] = true
			}
		}
	}
	var pids []int
	for p := range set {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	return pids
}

type procInfo struct {
	Pid, PPid int
	State     string
	Comm      string
	Flags     uint64 // the kernel's PF_* flags
}

func (p procInfo) String() string {
	return fmt.Sprintf("pid %d ppid %d state %s comm %s", p.Pid, p.PPid, p.State, p.Comm)
}

// procStat parses /proc/PID/stat.
func procStat(pid int) (procInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procInfo{}, fmt.Errorf("bad /proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 2 {
		return procInfo{}, fmt.Errorf("bad /proc/%d/stat: %q", pid, s)
	}
	ppid, _ := strconv.Atoi(f[1])
	var flags uint64
	if len(f) > 6 {
		flags, _ = strconv.ParseUint(f[6], 10, 64)
	}
	return procInfo{Pid: pid, PPid: ppid, State: f[0], Comm: s[open+1 : closing], Flags: flags}, nil
}

// zombies lists every zombie (state Z) on the host.
func zombies() []procInfo {
	var zs []procInfo
	for _, pid := range allProcs() {
		if pi, err := procStat(pid); err == nil && pi.State == "Z" {
			zs = append(zs, pi)
		}
	}
	return zs
}

// zombiesOf lists the zombies whose parent is ppid.
func zombiesOf(ppid int) []procInfo {
	var zs []procInfo
	for _, z := range zombies() {
		if z.PPid == ppid {
			zs = append(zs, z)
		}
	}
	return zs
}

// alive tells whether pid exists and is not a zombie.
func alive(pid int) bool {
	pi, err := procStat(pid)
	return err == nil && pi.State != "Z" && pi.State != "X"
}

// exiting tells whether the process is in the kernel's exit path (PF_EXITING): killed, never to
// run user code again, but not yet a zombie.
func exiting(pid int) bool {
	const pfExiting = 0x4
	pi, err := procStat(pid)
	return err == nil && pi.Flags&pfExiting != 0
}

// shimPid returns the PID of the shim daemon serving container id: the containerd-shim-* process
// of this containerd whose command line carries "-id <id>" and is neither the short-lived
// `start`/`delete` face nor the container setup face. It polls until exactly one matches.
func shimPid(t testing.TB, id string) int {
	t.Helper()
	var found []string
	var pid int
	waitFor(t, timeout(20*time.Second), "the shim daemon of "+id, func() bool {
		found, pid = nil, 0
		for _, p := range allProcs() {
			args := procCmdline(p)
			if len(args) < 2 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
				continue
			}
			if argValue(args, "-address") != cd.address() || argValue(args, "-id") != id {
				continue
			}
			if last := args[len(args)-1]; last == "start" || last == "delete" || slicesContains(args, "__autokill_init") {
				continue
			}
			if !alive(p) {
				continue
			}
			found = append(found, fmt.Sprintf("%d %s", p, strings.Join(args, " ")))
			pid = p
		}
		return len(found) == 1
	}, func() string { return "candidates: " + strings.Join(found, "; ") })
	return pid
}

// waitFor polls cond every 50ms until it is true or d passes; then it fails the test with desc and
// what diag (if not nil) tells.
func waitFor(t testing.TB, d time.Duration, desc string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if diag != nil {
				msg = "; " + diag()
			}
			t.Fatalf("timed out after %v waiting for %s%s", d, desc, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// psTable renders the given processes (pid, ppid, state, cmdline) for failure messages.
func psTable(pids []int) string {
	var b strings.Builder
	for _, p := range pids {
		pi, err := procStat(p)
		if err != nil {
			fmt.Fprintf(&b, "%d (gone)\n", p)
			continue
		}
		fmt.Fprintf(&b, "%d ppid=%d %s %s\n", p, pi.PPid, pi.State, strings.Join(procCmdline(p), " "))
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// Image helpers.

// extractImageRootfs unpacks the image's (single-layer) rootfs from AUTOKILL_IMAGE_TAR into dir.
// It is for tests that hand ctr a spec with an absolute root.path (ctr run --config).
func extractImageRootfs(t testing.TB, dir string) {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(imageTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", imageTar, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			blobs[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	var manifest struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	blob := func(d string) []byte {
		b, ok := blobs["blobs/"+strings.Replace(d, ":", "/", 1)]
		if !ok {
			t.Fatalf("%s: blob %s missing", imageTar, d)
		}
		return b
	}
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) == 0 {
		t.Fatalf("%s: bad index.json: %v", imageTar, err)
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatalf("%s: bad manifest: %v", imageTar, err)
	}
	for _, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		if err != nil {
			t.Fatal(err)
		}
		if err := untar(zr, dir); err != nil {
			t.Fatalf("unpacking layer %s: %v", l.Digest, err)
		}
	}
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode).Perm()
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported entry %s (type %c)", h.Name, h.Typeflag)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Small utilities.

func allProcs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func procCmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// argValue returns the value after flag in args ("-id X" or "-id=X"; also "--id").
func argValue(args []string, flagName string) string {
	for i, a := range args {
		if (a == flagName || a == "-"+flagName) && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flagName+"="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(a, "-"+flagName+"="); ok {
			return v
		}
	}
	return ""
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func envWithout(env []string, names ...string) []string {
	var out []string
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// cgroupV2Only tells whether /sys/fs/cgroup is a cgroup2 mount (unified mode).
func cgroupV2Only() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

func cgroupLayout() string {
	if cgroupV2Only() {
		return "cgroup v2 (unified)"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		return "cgroup v1 (hybrid)"
	}
	return "cgroup v1 (legacy)"
}

// unmountUnder lazily unmounts every mount point below dir (deepest first).
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, m := range mps {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}
