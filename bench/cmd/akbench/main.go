// Command akbench measures the autokill shim (io.containerd.autokill.v1) against
// containerd's runc shim (io.containerd.runc.v2 with runc, and with crun where
// crun runs) on one private containerd with one local image, alternating the
// runtimes inside every iteration so that a noisy machine affects them alike.
//
// It reports and never asserts on a time: it exits non-zero only when the
// benchmark itself breaks (a command fails). hack/bench.sh builds what it needs
// and runs it; `make bench` and `make bench-quick` call hack/bench.sh.
//
// Scenarios, in order, per containerd version:
//
//	run      `ctr run --rm IMAGE ID true`, wall time (+ phases from the events)
//	exit     SIGKILL of a container's init from the host → /tasks/exit at a subscriber
//	memory   shim RSS/PSS with 1 and with N idle containers
//	burst    N containers started at once, then deleted at once; machine CPU time
//	crash    containerd stopped, the shim SIGKILLed: are the container's processes gone?
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// params are the sizes of one benchmark run.
type params struct {
	Mode       string `json:"mode"`
	Runs       int    `json:"ctr_run_runs"`
	ExitRuns   int    `json:"exit_runs"`
	Idle       int    `json:"idle_containers"`
	Burst      int    `json:"burst_containers"`
	BurstRound int    `json:"burst_rounds"`
	Crash      int    `json:"crash_trials"`
	Settle     string `json:"memory_settle"`
}

func paramsFor(mode string) (params, error) {
	switch mode {
	case "full":
		return params{Mode: mode, Runs: 30, ExitRuns: 50, Idle: 20, Burst: 50, BurstRound: 2, Crash: 5, Settle: "2s"}, nil
	case "quick":
		return params{Mode: mode, Runs: 3, ExitRuns: 3, Idle: 3, Burst: 5, BurstRound: 1, Crash: 1, Settle: "300ms"}, nil
	}
	return params{}, fmt.Errorf("unknown mode %q (full or quick)", mode)
}

type options struct {
	repo        string
	dir         string
	out         string
	shim        string
	imageTar    string
	image       string
	versions    []string
	crunHugetlb bool
	noCrun      bool
	p           params
}

func main() {
	var o options
	var versions string
	var runs, exitRuns, idle, burst, crash int
	mode := flag.String("mode", "full", "full (the published numbers) or quick (a smoke run for the test suite)")
	flag.StringVar(&o.repo, "repo", ".", "repository root (for hack/containerd.sh)")
	flag.StringVar(&o.dir, "dir", "", "private containerd directory (created, purged at the end); default a temp dir under /run/akbench")
	flag.StringVar(&o.out, "out", "", "directory for results.md, results.json, chart.png (default: docs/bench for full, a temp dir for quick)")
	flag.StringVar(&o.shim, "shim", "", "absolute path of containerd-shim-autokill-v1 (default REPO/bin/containerd-shim-autokill-v1)")
	flag.StringVar(&o.imageTar, "image-tar", "/var/cache/autokill/images/busybox.tar", "OCI image-layout tar to import")
	flag.StringVar(&o.image, "image", "localhost/autokill/busybox:latest", "image name inside the tar")
	flag.StringVar(&versions, "containerd", "1.6", "comma-separated containerd versions (as hack/lib.sh names them: 1.6, 2.4, 1.7.35...) or bin dirs")
	flag.BoolVar(&o.crunHugetlb, "crun-hugetlb", false, "mount a cgroup v1 hugetlb hierarchy for the run so that crun 1.8 accepts the hybrid layout (changes host state for the duration)")
	flag.BoolVar(&o.noCrun, "no-crun", false, "leave crun out")
	flag.IntVar(&runs, "runs", 0, "override: ctr run --rm iterations")
	flag.IntVar(&exitRuns, "exit-runs", 0, "override: exit-notification iterations")
	flag.IntVar(&idle, "idle", 0, "override: idle containers for the memory scenario")
	flag.IntVar(&burst, "burst", 0, "override: containers in the burst")
	flag.IntVar(&crash, "crash", 0, "override: crash-containment trials")
	flag.Parse()

	p, err := paramsFor(*mode)
	if err != nil {
		fatal(err)
	}
	for _, ov := range []struct {
		v   int
		dst *int
	}{{runs, &p.Runs}, {exitRuns, &p.ExitRuns}, {idle, &p.Idle}, {burst, &p.Burst}, {crash, &p.Crash}} {
		if ov.v > 0 {
			*ov.dst = ov.v
		}
	}
	o.p = p
	o.versions = strings.Split(versions, ",")
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		fatal(err)
	}
	if o.shim == "" {
		o.shim = filepath.Join(o.repo, "bin", "containerd-shim-autokill-v1")
	}
	if o.out == "" {
		if p.Mode == "full" {
			o.out = filepath.Join(o.repo, "docs", "bench")
		} else if o.out, err = os.MkdirTemp("", "akbench-quick."); err != nil {
			fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("must run as root"))
	}

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("got %v: stopping, then cleaning up", s)
		cancel()
	}()

	start := time.Now()
	rep, err := run(ctx, o)
	cancel()
	if err != nil {
		fatal(err)
	}
	rep.DurationS = round(time.Since(start).Seconds(), 1)
	if err := writeReport(o.out, rep); err != nil {
		fatal(err)
	}
	fmt.Println(renderMarkdown(rep))
	logf("done in %.0fs; wrote %s/{results.md,results.json,chart.png}", time.Since(start).Seconds(), o.out)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[akbench %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func fatal(err error) {
	logf("FAIL: %v", err)
	os.Exit(1)
}
