package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHarnessContainerdRestart exercises the harness helpers that the crash tests build on:
// shimPid, containerProcs/cgroupProcs, zombiesOf, and stopping/killing and restarting containerd
// on the same root and state while a container keeps running under its shim.
func TestHarnessContainerdRestart(t *testing.T) {
	id := newContainerID(t)
	ti := runDetached(t, id, 3, nil, "sleep 1000 & sleep 1000 & wait")

	sp := shimPid(t, id)
	if pi, err := procStat(ti.Pid); err != nil || pi.PPid != sp {
		t.Errorf("init %d: parent %d (%v), want the shim daemon %d", ti.Pid, pi.PPid, err, sp)
	}
	if _, err := os.Stat(filepath.Join(cd.bundleDir(id), "config.json")); err != nil {
		t.Errorf("bundle of %s: %v", id, err)
	}
	procs := containerProcs(t, id)
	byCgroup := cgroupProcs(t, containerCgroupsPath(t, id))
	pids := taskPids(t, id)
	if len(procs) != 3 || len(byCgroup) != 3 || len(pids) != 3 {
		t.Fatalf("want 3 processes everywhere: containerProcs %v, cgroupProcs %v, ctr task ps %v\n%s", procs, byCgroup, pids, psTable(procs))
	}

	for _, stop := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}} {
		if err := cd.stop(stop.sig); err != nil {
			t.Fatalf("stop containerd with %s: %v", stop.name, err)
		}
		for _, p := range append(procs, sp) {
			if !alive(p) {
				t.Fatalf("pid %d died when containerd got %s:\n%s", p, stop.name, psTable(append(procs, sp)))
			}
		}
		startContainerd(t)
		st, ok := taskStatus(t, id)
		if !ok || st.Status != "RUNNING" || st.Pid != ti.Pid {
			t.Fatalf("after containerd restart (%s): task %+v listed=%v, want RUNNING pid %d", stop.name, st, ok, ti.Pid)
		}
		if got := taskPids(t, id); len(got) != 3 {
			t.Errorf("after containerd restart (%s): ctr task ps %v, want 3 pids", stop.name, got)
		}
		if got := shimPid(t, id); got != sp {
			t.Errorf("after containerd restart (%s): shim pid %d, want the same daemon %d", stop.name, got, sp)
		}
	}

	mustCtr(t, "tasks", "kill", "-s", "KILL", id)
	waitTaskStatus(t, id, "STOPPED", timeout(30*time.Second))
	waitFor(t, timeout(10*time.Second), "no zombie children of the shim", func() bool {
		return len(zombiesOf(sp)) == 0
	}, func() string { return "zombies: " + psTable(pidsOf(zombiesOf(sp))) })
	if st := deleteTask(t, id); st != 137 {
		t.Errorf("exit status %d, want 137", st)
	}
}

func pidsOf(ps []procInfo) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.Pid)
	}
	return out
}

// TestHarnessConfigTemplate: both majors' configs come out of the shared template complete, with
// the version each containerd needs (a version 4 file would silently ignore [grpc]).
func TestHarnessConfigTemplate(t *testing.T) {
	for major, want := range map[int]string{1: "version = 2\n", 2: "version = 3\n"} {
		cfg, err := containerdConfig(major, "/d", "info")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cfg, want) || strings.Contains(cfg, "@") || strings.Count(cfg, "disabled_plugins") != 1 ||
			!strings.Contains(cfg, `address = "/d/containerd.sock"`) || !strings.Contains(cfg, `level = "info"`) {
			t.Errorf("containerd %d.x config:\n%s", major, cfg)
		}
	}
	if _, err := containerdConfig(2, `/a"b`, "info"); err == nil {
		t.Error(`a directory with " was accepted`)
	}
}
