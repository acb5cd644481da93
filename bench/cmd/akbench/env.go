package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// namespace is the containerd namespace of every benchmark container; it also
// names their cgroups (/akbench/<id>), which the final cleanup removes.
const namespace = "akbench"

// cmdTimeout bounds every single ctr command.
const cmdTimeout = 2 * time.Minute

// rt is one runtime under test.
type rt struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	Binary  string `json:"runc_binary,omitempty"`
	// Skip says why it does not run here ("" when it runs).
	Skip string `json:"does_not_run_here,omitempty"`
}

// runArgs are the flags of `ctr run` for runtime r; ctr's IO fifos go under
// the private directory so that the purge removes what ctr leaves behind.
func (e *env) runArgs(r rt) []string {
	a := []string{"--fifo-dir", filepath.Join(e.dir, "fifo"), "--runtime", r.Runtime}
	if r.Binary != "" {
		a = append(a, "--runc-binary", r.Binary)
	}
	return a
}

// env is one private containerd of one version.
type env struct {
	o       options
	version string // as given: 1.6, 2.4.2 or a bin dir
	binDir  string
	dir     string
	sock    string
	ctrPath string
}

// binDirFor maps a containerd version to its bin dir through hack/lib.sh, the
// one place that knows the pinned versions and the cache; a path is a bin dir.
func binDirFor(repo, v string) (string, error) {
	if strings.Contains(v, "/") {
		return v, nil
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", "-c", `. "$1/hack/lib.sh" && ak_bin_dir "$2"`, "bash", repo, v)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("containerd %s: %w: %s", v, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (e *env) script(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(e.o.repo, "hack", "containerd.sh"), args...)
	cmd.Env = append(os.Environ(), "AUTOKILL_SHIM="+e.o.shim)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/containerd.sh %s: %w\n%s", strings.Join(args, " "), err, buf.String())
	}
	return nil
}

func (e *env) start(ctx context.Context) error {
	return e.script(ctx, "start", e.dir, e.binDir)
}

// stop stops containerd; shims keep running.
func (e *env) stop(ctx context.Context) error { return e.script(ctx, "stop", e.dir) }

// ctr runs one ctr command in the benchmark namespace and returns its output.
func (e *env) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	full := append([]string{"--address", e.sock, "-n", namespace}, args...)
	out, err := exec.CommandContext(ctx, e.ctrPath, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// timedCtr is ctr with its wall time (fork to exit of the ctr process).
func (e *env) timedCtr(ctx context.Context, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	full := append([]string{"--address", e.sock, "-n", namespace}, args...)
	cmd := exec.CommandContext(ctx, e.ctrPath, full...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return d, nil
}

func (e *env) runDetached(ctx context.Context, r rt, id string, argv ...string) error {
	args := append([]string{"run", "-d"}, e.runArgs(r)...)
	args = append(append(args, e.o.image, id), argv...)
	_, err := e.ctr(ctx, args...)
	return err
}

// remove force-deletes a container's task (SIGKILL, wait, delete) and the
// container with its snapshot.
func (e *env) remove(ctx context.Context, id string) error {
	if out, err := e.ctr(ctx, "task", "delete", "--force", id); err != nil && !strings.Contains(strings.ToLower(out), "not found") {
		return err
	}
	_, err := e.ctr(ctx, "container", "delete", id)
	return err
}

// tasks maps task id → pid (from `ctr task ls`).
func (e *env) tasks(ctx context.Context) (map[string]int, error) {
	out, err := e.ctr(ctx, "task", "ls")
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for i, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) < 2 {
			continue
		}
		if pid, err := strconv.Atoi(f[1]); err == nil {
			m[f[0]] = pid
		}
	}
	return m, nil
}

// cleanup removes every task and container of the namespace (best effort).
func (e *env) cleanup(ctx context.Context) {
	if e.script(ctx, "status", e.dir) != nil {
		return
	}
	if ts, err := e.tasks(ctx); err == nil {
		ids := keys(ts)
		parallel(len(ids), 8, func(i int) error {
			_, _ = e.ctr(ctx, "task", "delete", "--force", ids[i])
			return nil
		})
	}
	if out, err := e.ctr(ctx, "container", "ls", "-q"); err == nil {
		ids := strings.Fields(out)
		parallel(len(ids), 8, func(i int) error {
			_, _ = e.ctr(ctx, "container", "delete", ids[i])
			return nil
		})
	}
}

// killCgroupLeftovers SIGKILLs whatever still runs in the namespace's cgroups
// (a runc container whose shim the crash scenario killed) and removes them.
func killCgroupLeftovers() {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + namespace)
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				logf("cleanup: SIGKILL leftover pid %d in %s", pid, d)
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for try := 0; try < 20; try++ {
		left := 0
		for _, d := range dirs {
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf("cleanup: some cgroups under /sys/fs/cgroup/*/%s could not be removed", namespace)
}

// parallel runs f(0..n-1) with at most limit at once and returns the first error.
func parallel(n, limit int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, limit)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return first
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- /proc ---------------------------------------------------------------

func ppid(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return strconv.Atoi(f[1])
}

// memKB returns Rss and Pss of a process from smaps_rollup, and its threads.
func memKB(pid int) (rss, pss, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			switch f[0] {
			case "Rss:":
				rss, _ = strconv.Atoi(f[1])
			case "Pss:":
				pss, _ = strconv.Atoi(f[1])
			}
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Threads:"); ok {
				threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	return rss, pss, threads, nil
}

// busyCPU is the machine's non-idle CPU time so far (all cores), from /proc/stat.
func busyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: %q", line)
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// pidnsMembers lists the processes in the pid namespace whose init is pid.
func pidnsMembers(pid int) ([]int, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, d := range ents {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); err == nil && l == ns {
			out = append(out, p)
		}
	}
	return out, nil
}

// --- machine and versions --------------------------------------------------

type machine struct {
	CPUs     int    `json:"cpus"`
	Model    string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Cgroups  string `json:"cgroups"`
	Host     string `json:"hostname"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(l)
		if len(f) >= 2 {
			kb, _ := strconv.Atoi(f[1])
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/1024/1024)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Host, _ = os.Hostname()
	var st unix.Statfs_t
	switch {
	case unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC:
		m.Cgroups = "v2 (unified)"
	case unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC:
		c, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
		m.Cgroups = fmt.Sprintf("v1 hybrid (cgroup2 controllers: %q)", strings.TrimSpace(string(c)))
	default:
		m.Cgroups = "v1"
	}
	return m
}

// firstLine runs a command and returns the first line of its output.
func firstLine(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil && s == "" {
		return "unavailable: " + err.Error()
	}
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// shimVersion condenses `<shim> -v` into "Version (Go version)".
func shimVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-v").CombinedOutput()
	if err != nil {
		return "unavailable: " + err.Error()
	}
	var ver, gov string
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Version":
			ver = strings.TrimSpace(v)
		case "Go version":
			gov = strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("%s (%s)", ver, gov)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
