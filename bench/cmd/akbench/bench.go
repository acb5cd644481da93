package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// report is what results.json holds.
type report struct {
	Date      string          `json:"date"`
	Machine   machine         `json:"machine"`
	Params    params          `json:"params"`
	Shim      string          `json:"shim"`
	ShimBytes int64           `json:"shim_binary_bytes"`
	Runc      string          `json:"runc"`
	Crun      string          `json:"crun"`
	Results   []versionResult `json:"containerd"`
	DurationS float64         `json:"duration_s"`
	// Load averages (1, 5, 15 min) when the run began and ended: other work
	// on the machine shows here (the alternation shares it out fairly).
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

type versionResult struct {
	Containerd string            `json:"containerd"`
	RuncShim   string            `json:"runc_shim"`
	Runtimes   []rt              `json:"runtimes"`
	ByRuntime  map[string]*rtRes `json:"results"`
	// Ratios of autokill to each other runtime, iteration by iteration
	// (the two ran back to back in the same iteration).
	RunRatio map[string]dist `json:"ctr_run_ratio_autokill_over"`
	Notes    []string        `json:"notes,omitempty"`
}

type rtRes struct {
	CtrRun     dist       `json:"ctr_run_ms"`
	CreateTC   dist       `json:"phase_container_create_to_task_create_ms"`
	TCToStart  dist       `json:"phase_task_create_to_task_start_ms"`
	ExitDelete dist       `json:"phase_task_exit_to_task_delete_ms"`
	Memory     []memRes   `json:"memory"`
	Exit       dist       `json:"exit_notification_ms"`
	ExitMissed int        `json:"exit_events_missed"`
	Burst      []burstRes `json:"burst"`
	Crash      crashRes   `json:"crash"`
}

type memRes struct {
	Containers   int     `json:"containers"`
	Shims        int     `json:"shims"`
	RSSPerShimKB float64 `json:"rss_per_shim_kb_median"`
	PSSPerShimKB float64 `json:"pss_per_shim_kb_median"`
	RSSTotalKB   int     `json:"rss_total_kb"`
	PSSTotalKB   int     `json:"pss_total_kb"`
	Threads      float64 `json:"threads_per_shim_median"`
}

type burstRes struct {
	N           int     `json:"containers"`
	AllRunningS float64 `json:"all_running_s"`
	AllDeletedS float64 `json:"all_deleted_s"`
	CPUStartS   float64 `json:"cpu_start_s"`
	CPUDeleteS  float64 `json:"cpu_delete_s"`
	CPUS        float64 `json:"cpu_total_s"`
	// BackgroundCPUs is the machine's busy CPU rate just before the burst
	// (work that is not the benchmark); CPUNetS is CPUS less that rate
	// over the burst's duration.
	BackgroundCPUs float64 `json:"background_cpus"`
	CPUNetS        float64 `json:"cpu_net_of_background_s"`
}

type crashRes struct {
	Trials int `json:"trials"`
	// GoneMs: shim SIGKILL → every process of the container gone, per trial
	// where they went.
	Gone dist `json:"gone_ms"`
	// Survived: trials whose processes still ran after 5 s.
	Survived int `json:"still_running_after_5s"`
	Procs    int `json:"processes_per_container"`
}

const crashWait = 5 * time.Second

func run(ctx context.Context, o options) (rep *report, err error) {
	rep = &report{
		Date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Machine:   describeMachine(),
		Params:    o.p,
		Shim:      shimVersion(o.shim),
		ShimBytes: fileSize(o.shim),
		Runc:      firstLine("runc", "--version"),
		Crun:      firstLine("crun", "--version"),
		LoadStart: loadavg(),
	}
	defer func() {
		if rep != nil {
			rep.LoadEnd = loadavg()
		}
	}()
	if _, err := os.Stat(o.shim); err != nil {
		return nil, fmt.Errorf("shim: %w (run make build)", err)
	}
	if _, err := os.Stat(o.imageTar); err != nil {
		return nil, fmt.Errorf("image: %w (run make image)", err)
	}
	if o.crunHugetlb && !o.noCrun {
		undo, err := mountHugetlb()
		if err != nil {
			logf("crun: not mounting hugetlb: %v", err)
		} else {
			defer undo()
		}
	}
	logf("machine: %d × %s, kernel %s, cgroups %s", rep.Machine.CPUs, rep.Machine.Model, rep.Machine.Kernel, rep.Machine.Cgroups)
	logf("shim %s; %s; %s", rep.Shim, rep.Runc, rep.Crun)
	base := o.dir
	if base == "" {
		if err := os.MkdirAll("/run/akbench", 0o700); err != nil {
			return nil, err
		}
		if base, err = os.MkdirTemp("/run/akbench", "run."); err != nil {
			return nil, err
		}
		defer os.Remove(base)
	}
	for i, v := range o.versions {
		v = strings.TrimSpace(v)
		bd, err := binDirFor(o.repo, v)
		if err != nil {
			return nil, err
		}
		e := &env{o: o, version: v, binDir: bd, dir: filepath.Join(base, fmt.Sprintf("containerd-%d", i))}
		e.sock = filepath.Join(e.dir, "containerd.sock")
		e.ctrPath = filepath.Join(e.binDir, "ctr")
		vr, err := runVersion(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("containerd %s: %w", v, err)
		}
		rep.Results = append(rep.Results, *vr)
	}
	return rep, nil
}

// runVersion runs every scenario on one private containerd, and always tears
// it down: containers, shims, containerd, mounts, cgroups.
func runVersion(ctx context.Context, e *env) (vr *versionResult, err error) {
	vr = &versionResult{
		Containerd: firstLine(filepath.Join(e.binDir, "containerd"), "--version"),
		RuncShim:   shimVersion(filepath.Join(e.binDir, "containerd-shim-runc-v2")),
		ByRuntime:  map[string]*rtRes{},
		RunRatio:   map[string]dist{},
	}
	logf("== %s", vr.Containerd)
	_ = e.script(context.Background(), "purge", e.dir)
	killCgroupLeftovers()
	defer func() {
		// Teardown must run even when ctx was cancelled by a signal.
		bg, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		e.cleanup(bg)
		if perr := e.script(bg, "purge", e.dir); perr != nil {
			logf("purge: %v", perr)
		}
		killCgroupLeftovers()
	}()
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	if _, err := e.ctr(ctx, "images", "import", e.o.imageTar); err != nil {
		return nil, err
	}

	all := []rt{
		{Name: "autokill", Runtime: "io.containerd.autokill.v1"},
		{Name: "runc", Runtime: "io.containerd.runc.v2"},
	}
	if !e.o.noCrun {
		all = append(all, rt{Name: "crun", Runtime: "io.containerd.runc.v2", Binary: "/usr/bin/crun"})
	}
	// Warm-up and probe: one run each (not counted); a runtime whose probe
	// fails is reported as not running here, except ours and runc's.
	var rts []rt
	for _, r := range all {
		_, perr := e.timedCtr(ctx, append(append([]string{"run", "--rm"}, e.runArgs(r)...), e.o.image, "warm-"+r.Name, "true")...)
		if perr != nil {
			if r.Binary == "" || ctx.Err() != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", r.Name, perr)
			}
			r.Skip = explain(ctx, e, reason(perr))
			logf("%s does not run here: %s", r.Name, r.Skip)
			_ = e.remove(ctx, "warm-"+r.Name)
		} else {
			rts = append(rts, r)
			vr.ByRuntime[r.Name] = &rtRes{}
		}
		vr.Runtimes = append(vr.Runtimes, r)
	}

	h, err := e.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	defer h.close()
	// The subscription is live once it delivers an event.
	if err := e.runDetached(ctx, rts[0], "sub-probe", "true"); err != nil {
		return nil, err
	}
	if _, err := h.wait(ctx, "/tasks/exit", "sub-probe", 30*time.Second); err != nil {
		return nil, fmt.Errorf("event subscriber: %w", err)
	}
	if err := e.remove(ctx, "sub-probe"); err != nil {
		return nil, err
	}

	steps := []struct {
		name string
		f    func(context.Context, *env, *hub, []rt, *versionResult) error
	}{
		{"ctr run --rm", scenarioRun},
		{"exit notification", scenarioExit},
		{"shim memory", scenarioMemory},
		{"burst", scenarioBurst},
		{"crash containment", scenarioCrash},
	}
	for _, s := range steps {
		t0 := time.Now()
		logf("-- %s", s.name)
		if err := s.f(ctx, e, h, rts, vr); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		logf("   %s: %.1fs", s.name, time.Since(t0).Seconds())
	}
	return vr, nil
}

// explain adds what we know about a runtime's refusal on this host.
func explain(ctx context.Context, e *env, why string) string {
	switch {
	case strings.Contains(why, "hybrid mode not supported"):
		return why + " (crun 1.8 wants no controller on cgroup2; here cgroup2 carries hugetlb: BENCH_CRUN_HUGETLB=1 mounts a v1 hugetlb hierarchy for the run)"
	case strings.Contains(why, "unknown version specified"):
		v := "?"
		if out, err := e.ctr(ctx, "oci", "spec"); err == nil {
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, `"ociVersion"`) {
					v = strings.Trim(strings.TrimSpace(strings.SplitN(l, ":", 2)[1]), `",`)
				}
			}
		}
		return why + fmt.Sprintf(" (crun 1.8.1 rejects the OCI spec version %s that this ctr writes)", v)
	}
	return why
}

func reason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "OCI runtime create failed: "); i >= 0 {
		s = s[i+len("OCI runtime create failed: "):]
	}
	return strings.TrimSuffix(strings.TrimSpace(s), ": unknown")
}

// scenarioRun: `ctr run --rm IMAGE ID true`, alternating the runtimes in every
// iteration; the phases come from the subscriber's event timestamps.
func scenarioRun(ctx context.Context, e *env, h *hub, rts []rt, vr *versionResult) error {
	n := e.o.p.Runs
	wall := map[string][]float64{}
	for i := 0; i < n; i++ {
		for _, r := range rotate(rts, i) {
			id := fmt.Sprintf("run-%s-%d", r.Name, i)
			d, err := e.timedCtr(ctx, append(append([]string{"run", "--rm"}, e.runArgs(r)...), e.o.image, id, "true")...)
			if err != nil {
				return err
			}
			wall[r.Name] = append(wall[r.Name], ms(d))
		}
	}
	for _, r := range rts[1:] {
		var ratios []float64
		for i := 0; i < n; i++ {
			ratios = append(ratios, wall["autokill"][i]/wall[r.Name][i])
		}
		vr.RunRatio[r.Name] = summarize(ratios)
	}
	// The last delete event may trail ctr's exit by a little.
	if _, err := h.wait(ctx, "/tasks/delete", fmt.Sprintf("run-%s-%d", rts[len(rts)-1].Name, n-1), 3*time.Second); err != nil {
		logf("note: %v", err)
	}
	for _, r := range rts {
		res := vr.ByRuntime[r.Name]
		res.CtrRun = summarize(wall[r.Name])
		var a, b, c []float64
		missing := 0
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("run-%s-%d", r.Name, i)
			cc, ok1 := h.find("/containers/create", id)
			tc, ok2 := h.find("/tasks/create", id)
			ts, ok3 := h.find("/tasks/start", id)
			te, ok4 := h.find("/tasks/exit", id)
			td, ok5 := h.find("/tasks/delete", id)
			if ok1 && ok2 {
				a = append(a, ms(tc.TS.Sub(cc.TS)))
			}
			if ok2 && ok3 {
				b = append(b, ms(ts.TS.Sub(tc.TS)))
			}
			if ok4 && ok5 {
				c = append(c, ms(td.TS.Sub(te.TS)))
			}
			if !(ok1 && ok2 && ok3 && ok4 && ok5) {
				missing++
			}
		}
		if missing > 0 {
			vr.Notes = append(vr.Notes, fmt.Sprintf("%s: %d of %d runs lack some event at the subscriber (phases use the runs that have both ends)", r.Name, missing, n))
		}
		res.CreateTC, res.TCToStart, res.ExitDelete = summarize(a), summarize(b), summarize(c)
		logf("   %-8s ctr run median %.1f ms (p90 %.1f); create→task create %.1f ms, task create→start %.1f ms, exit→delete %.1f ms",
			r.Name, res.CtrRun.Median, res.CtrRun.P90, res.CreateTC.Median, res.TCToStart.Median, res.ExitDelete.Median)
	}
	return nil
}

// scenarioExit: the init of `sleep 1000` SIGKILLed from the host → /tasks/exit
// line read from the subscriber.
func scenarioExit(ctx context.Context, e *env, h *hub, rts []rt, vr *versionResult) error {
	lat := map[string][]float64{}
	for i := 0; i < e.o.p.ExitRuns; i++ {
		for _, r := range rotate(rts, i) {
			id := fmt.Sprintf("exit-%s-%d", r.Name, i)
			if err := e.runDetached(ctx, r, id, "sleep", "1000"); err != nil {
				return err
			}
			st, err := h.wait(ctx, "/tasks/start", id, 30*time.Second)
			if err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond) // let the shim settle after start
			t0 := time.Now()
			if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil {
				return fmt.Errorf("kill %d (%s): %w", st.Pid, id, err)
			}
			ev, err := h.wait(ctx, "/tasks/exit", id, 10*time.Second)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				vr.ByRuntime[r.Name].ExitMissed++
				logf("note: %v", err)
			} else {
				lat[r.Name] = append(lat[r.Name], ms(ev.Arrived.Sub(t0)))
			}
			if err := e.remove(ctx, id); err != nil {
				return err
			}
		}
	}
	for _, r := range rts {
		res := vr.ByRuntime[r.Name]
		res.Exit = summarize(lat[r.Name])
		logf("   %-8s exit → TaskExit median %.2f ms, p99 %.2f ms (missed %d)", r.Name, res.Exit.Median, res.Exit.P99, res.ExitMissed)
	}
	return nil
}

// scenarioMemory: RSS and PSS of the shims with 1 and with N idle containers.
// A container's shim is the parent of its init (runc's shim is the subreaper
// of runc's init; ours clones the init itself).
func scenarioMemory(ctx context.Context, e *env, h *hub, rts []rt, vr *versionResult) error {
	settle, _ := time.ParseDuration(e.o.p.Settle)
	for ci, n := range []int{1, e.o.p.Idle} {
		for _, r := range rotate(rts, ci) {
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("mem-%s-%d-%d", r.Name, n, i)
				if err := e.runDetached(ctx, r, ids[i], "sleep", "100000"); err != nil {
					return err
				}
			}
			time.Sleep(settle)
			ts, err := e.tasks(ctx)
			if err != nil {
				return err
			}
			shims := map[int]bool{}
			for _, id := range ids {
				pid, ok := ts[id]
				if !ok {
					return fmt.Errorf("task %s not listed", id)
				}
				pp, err := ppid(pid)
				if err != nil {
					return err
				}
				shims[pp] = true
			}
			var rss, pss, thr []float64
			m := memRes{Containers: n, Shims: len(shims)}
			for pid := range shims {
				r, p, t, err := memKB(pid)
				if err != nil {
					return err
				}
				rss, pss, thr = append(rss, float64(r)), append(pss, float64(p)), append(thr, float64(t))
				m.RSSTotalKB += r
				m.PSSTotalKB += p
			}
			m.RSSPerShimKB, m.PSSPerShimKB, m.Threads = summarize(rss).Median, summarize(pss).Median, summarize(thr).Median
			vr.ByRuntime[r.Name].Memory = append(vr.ByRuntime[r.Name].Memory, m)
			logf("   %-8s %2d containers, %2d shims: RSS %.1f MiB/shim (total %.1f), PSS %.1f MiB/shim (total %.1f), %.0f threads",
				r.Name, n, m.Shims, m.RSSPerShimKB/1024, float64(m.RSSTotalKB)/1024, m.PSSPerShimKB/1024, float64(m.PSSTotalKB)/1024, m.Threads)
			if err := parallel(len(ids), 4, func(i int) error { return e.remove(ctx, ids[i]) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// scenarioBurst: N `ctr run -d` at once → all running; N deletes at once → all
// deleted; the machine's busy CPU time over each part.
func scenarioBurst(ctx context.Context, e *env, h *hub, rts []rt, vr *versionResult) error {
	n := e.o.p.Burst
	for round := 0; round < e.o.p.BurstRound; round++ {
		order := rotate(rts, round)
		if round%2 == 1 { // A B, then B A
			order = reverse(rotate(rts, round-1))
		}
		for _, r := range order {
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("burst-%s-%d-%d", r.Name, round, i)
			}
			// Let the previous burst's tail settle, then take the machine's
			// background CPU rate (other work on the host) over 2 s.
			time.Sleep(time.Second)
			b0, _ := busyCPU()
			tb := time.Now()
			time.Sleep(2 * time.Second)
			b1, _ := busyCPU()
			background := float64(b1-b0) / float64(time.Since(tb)) // CPUs busy
			c0, _ := busyCPU()
			t0 := time.Now()
			err := parallel(n, n, func(i int) error { return e.runDetached(ctx, r, ids[i], "sleep", "100000") })
			running := time.Since(t0)
			c1, _ := busyCPU()
			if err != nil {
				return err
			}
			t1 := time.Now()
			err = parallel(n, n, func(i int) error { return e.remove(ctx, ids[i]) })
			deleted := time.Since(t1)
			c2, _ := busyCPU()
			if err != nil {
				return err
			}
			b := burstRes{N: n, AllRunningS: round3(running.Seconds()), AllDeletedS: round3(deleted.Seconds()),
				CPUStartS: round3((c1 - c0).Seconds()), CPUDeleteS: round3((c2 - c1).Seconds()), CPUS: round3((c2 - c0).Seconds()),
				BackgroundCPUs: round3(background)}
			b.CPUNetS = round3(b.CPUS - background*time.Since(t0).Seconds())
			vr.ByRuntime[r.Name].Burst = append(vr.ByRuntime[r.Name].Burst, b)
			logf("   %-8s %d at once: all running %.2fs, all deleted %.2fs, CPU %.2fs (%.2fs net of %.2f CPUs of background)", r.Name, n, b.AllRunningS, b.AllDeletedS, b.CPUS, b.CPUNetS, b.BackgroundCPUs)
		}
	}
	return nil
}

func round3(x float64) float64 { return round(x, 3) }

func reverse(r []rt) []rt {
	out := make([]rt, len(r))
	for i := range r {
		out[len(r)-1-i] = r[i]
	}
	return out
}

// scenarioCrash: with containerd stopped, SIGKILL a container's shim and watch
// the container's processes (init `sleep`, plus a second `sleep` it forked)
// through pidfds: gone, and when, or still there after 5 s. containerd is
// restarted afterwards so that it cleans up (runc's delete, our -delete face).
func scenarioCrash(ctx context.Context, e *env, h *hub, rts []rt, vr *versionResult) error {
	k := e.o.p.Crash
	type victim struct {
		r     rt
		id    string
		shim  int
		procs []int
	}
	var vs []victim
	for i := 0; i < k; i++ {
		for _, r := range rotate(rts, i) {
			id := fmt.Sprintf("crash-%s-%d", r.Name, i)
			if err := e.runDetached(ctx, r, id, "sh", "-c", "sleep 1000 & exec sleep 1001"); err != nil {
				return err
			}
			vs = append(vs, victim{r: r, id: id})
		}
	}
	time.Sleep(300 * time.Millisecond) // the background sleep is forked
	ts, err := e.tasks(ctx)
	if err != nil {
		return err
	}
	for i := range vs {
		pid, ok := ts[vs[i].id]
		if !ok {
			return fmt.Errorf("task %s not listed", vs[i].id)
		}
		if vs[i].shim, err = ppid(pid); err != nil {
			return err
		}
		if vs[i].procs, err = pidnsMembers(pid); err != nil {
			return err
		}
	}
	h.close() // the subscriber dies with containerd
	if err := e.stop(ctx); err != nil {
		return err
	}
	gone := map[string][]float64{}
	for _, v := range vs {
		res := vr.ByRuntime[v.r.Name]
		res.Crash.Trials++
		res.Crash.Procs = len(v.procs)
		var fds []int
		for _, p := range v.procs {
			fd, err := unix.PidfdOpen(p, 0)
			if err != nil {
				return fmt.Errorf("pidfd_open %d: %w", p, err)
			}
			fds = append(fds, fd)
		}
		t0 := time.Now()
		if err := unix.Kill(v.shim, unix.SIGKILL); err != nil {
			closeAll(fds)
			return fmt.Errorf("kill shim %d: %w", v.shim, err)
		}
		left := waitExited(fds, crashWait)
		d := time.Since(t0)
		if left == 0 {
			gone[v.r.Name] = append(gone[v.r.Name], ms(d))
		} else {
			res.Crash.Survived++
			for _, fd := range fds { // our mess: clean it up
				_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			}
			waitExited(fds, crashWait)
		}
		closeAll(fds)
	}
	for _, r := range rts {
		res := vr.ByRuntime[r.Name]
		res.Crash.Gone = summarize(gone[r.Name])
		if res.Crash.Survived > 0 {
			logf("   %-8s shim SIGKILLed: processes still running after 5 s in %d of %d trials", r.Name, res.Crash.Survived, res.Crash.Trials)
		} else {
			logf("   %-8s shim SIGKILLed: all %d processes gone after %.2f ms (median of %d)", r.Name, res.Crash.Procs, res.Crash.Gone.Median, res.Crash.Trials)
		}
	}
	// containerd cleans up after dead shims when it comes back.
	if err := e.start(ctx); err != nil {
		return err
	}
	e.cleanup(ctx)
	return nil
}

// waitExited polls pidfds until every process exited or timeout; it returns
// how many are left.
func waitExited(fds []int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	pending := append([]int(nil), fds...)
	for len(pending) > 0 {
		rem := time.Until(deadline)
		if rem <= 0 {
			break
		}
		pfds := make([]unix.PollFd, len(pending))
		for i, fd := range pending {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		}
		_, err := unix.Poll(pfds, int(rem/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		next := pending[:0]
		for i, p := range pfds {
			if p.Revents == 0 {
				next = append(next, pending[i])
			}
		}
		pending = next
	}
	return len(pending)
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// mountHugetlb mounts a cgroup v1 hugetlb hierarchy at /sys/fs/cgroup/hugetlb
// (crun 1.8 refuses a hybrid layout whose cgroup2 has any controller; here
// cgroup2 has hugetlb only because no v1 hierarchy took it). The returned undo
// removes the benchmark's cgroups from it and unmounts it; the kernel gives
// hugetlb back to cgroup2 once the hierarchy has no children left.
func mountHugetlb() (func(), error) {
	c, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("not the hybrid layout: %w", err)
	}
	if strings.TrimSpace(string(c)) != "hugetlb" {
		return nil, fmt.Errorf("cgroup2 controllers are %q, not just hugetlb", strings.TrimSpace(string(c)))
	}
	if sc, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.subtree_control"); strings.TrimSpace(string(sc)) != "" {
		return nil, fmt.Errorf("hugetlb is enabled in cgroup2's subtree_control")
	}
	const mp = "/sys/fs/cgroup/hugetlb"
	if _, err := os.Stat(mp); err == nil {
		return nil, fmt.Errorf("%s exists", mp)
	}
	if err := os.Mkdir(mp, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("cgroup", mp, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hugetlb"); err != nil {
		_ = os.Remove(mp)
		return nil, fmt.Errorf("mount hugetlb: %w", err)
	}
	logf("mounted a cgroup v1 hugetlb hierarchy at %s for crun (undone at the end)", mp)
	return func() {
		for try := 0; try < 5; try++ {
			killCgroupLeftovers()   // removes /sys/fs/cgroup/hugetlb/akbench too
			time.Sleep(time.Second) // a removed cgroup leaves the parent's children list asynchronously
			if err := unix.Unmount(mp, 0); err != nil {
				logf("umount %s: %v", mp, err)
				return
			}
			time.Sleep(500 * time.Millisecond)
			if hugetlbOnV2() {
				_ = os.Remove(mp)
				logf("hugetlb is back on cgroup2")
				return
			}
			// The hierarchy lingers: mount it again, empty it, retry.
			if err := unix.Mount("cgroup", mp, "cgroup", 0, "hugetlb"); err != nil {
				logf("remount hugetlb: %v", err)
				return
			}
		}
		logf("WARNING: hugetlb still on a v1 hierarchy at %s", mp)
	}, nil
}

func hugetlbOnV2() bool {
	c, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	return strings.Contains(string(c), "hugetlb")
}
