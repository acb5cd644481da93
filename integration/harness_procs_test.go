package integration

// Host processes read from /proc: cgroups, pid namespaces, states, the shim daemon, polling.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
			if daemonID, ok := shimDaemon(p); ok && daemonID == id {
				found = append(found, fmt.Sprintf("%d %s", p, strings.Join(procCmdline(p), " ")))
				pid = p
			}
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

// shimDaemon tells whether p is a live shim daemon (not a start or delete face, not a setup face) of
// the harness's containerd, and the id it was started for: the first container of its group.
func shimDaemon(p int) (id string, ok bool) {
	args := procCmdline(p)
	if len(args) < 2 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
		return "", false
	}
	if argValue(args, "-address") != cd.address() {
		return "", false
	}
	if last := args[len(args)-1]; last == "start" || last == "delete" || slices.Contains(args, "__autokill_init") {
		return "", false
	}
	if !alive(p) {
		return "", false
	}
	return argValue(args, "-id"), true
}
