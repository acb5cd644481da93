package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	line := `2026-11-28 13:54:00.847274036 +0000 UTC akbench /tasks/create {"container_id":"run-autokill-3","bundle":"/x","pid":25719}`
	ev, ok := parseEvent(line, time.Now())
	if !ok {
		t.Fatal("not parsed")
	}
	if ev.Topic != "/tasks/create" || ev.ID != "run-autokill-3" || ev.Pid != 25719 {
		t.Errorf("got %+v", ev)
	}
	if want := time.Date(2026, 11, 28, 13, 54, 0, 847274036, time.UTC); !ev.TS.Equal(want) {
		t.Errorf("TS = %v, want %v", ev.TS, want)
	}
	ev, ok = parseEvent(`2026-11-28 13:54:00.7 +0000 UTC akbench /containers/create {"id":"c1","image":"i"}`, time.Now())
	if !ok || ev.ID != "c1" {
		t.Errorf("containers/create: %+v %v", ev, ok)
	}
	if _, ok := parseEvent("ctr: connection refused", time.Now()); ok {
		t.Error("garbage parsed")
	}
}

func TestSummarize(t *testing.T) {
	var xs []float64
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	d := summarize(xs)
	if d.N != 100 || d.Median != 50.5 || d.P90 != 90 || d.P99 != 99 || d.Min != 1 || d.Max != 100 {
		t.Errorf("got %+v", d)
	}
	if (summarize(nil) != dist{}) {
		t.Error("empty")
	}
}

func TestRotateAlternates(t *testing.T) {
	rts := []rt{{Name: "a"}, {Name: "b"}}
	first := map[string]int{}
	for i := 0; i < 10; i++ {
		first[rotate(rts, i)[0].Name]++
	}
	if first["a"] != 5 || first["b"] != 5 {
		t.Errorf("first places %v", first)
	}
}

// TestReport renders a synthetic report: the markdown table and the PNG chart.
func TestReport(t *testing.T) {
	res := func(scale float64) *rtRes {
		return &rtRes{
			CtrRun:   dist{N: 3, Median: 150 * scale, P90: 160 * scale, Min: 140 * scale, Max: 170 * scale},
			CreateTC: dist{Median: 50 * scale}, TCToStart: dist{Median: 6 * scale}, ExitDelete: dist{Median: 13 * scale},
			Memory: []memRes{{Containers: 1, Shims: 1, RSSPerShimKB: 14000, PSSPerShimKB: 12000, RSSTotalKB: 14000, PSSTotalKB: 12000, Threads: 9},
				{Containers: 3, Shims: 3, RSSPerShimKB: 14000, PSSPerShimKB: 6000, RSSTotalKB: 42000, PSSTotalKB: 18000, Threads: 9}},
			Exit:  dist{Median: 2.5 * scale, P99: 3 * scale},
			Burst: []burstRes{{N: 5, AllRunningS: 0.4 * scale, AllDeletedS: 0.3 * scale, CPUS: 1.5 * scale}},
			Crash: crashRes{Trials: 1, Gone: dist{N: 1, Median: 3}, Procs: 2},
		}
	}
	runc := res(1.3)
	runc.Crash = crashRes{Trials: 1, Survived: 1, Procs: 2}
	rep := &report{
		Date: "2026-11-28 14:00 UTC", Machine: machine{CPUs: 2, Model: "Test CPU", Kernel: "6.18"},
		Params: params{Mode: "quick", Runs: 3, ExitRuns: 3, Idle: 3, Burst: 5, BurstRound: 1, Crash: 1},
		Results: []versionResult{{
			Containerd: "containerd github.com/containerd/containerd 1.6.20~ds1 x",
			Runtimes:   []rt{{Name: "autokill"}, {Name: "runc"}, {Name: "crun", Skip: "nope"}},
			ByRuntime:  map[string]*rtRes{"autokill": res(1), "runc": runc},
			RunRatio:   map[string]dist{"runc": {Median: 0.77}},
		}},
	}
	dir := t.TempDir()
	if err := writeReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## containerd 1.6.20~ds1", "| `ctr run --rm true`, median of 3 (ms) | 150.0 | 195.0 |", "still running after 5 s", "crun", "does not run here: nope"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	f, err := os.Open(filepath.Join(dir, "chart.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != chartW {
		t.Errorf("chart width %d", img.Bounds().Dx())
	}
}

func TestWrap(t *testing.T) {
	lines := wrap([]string{strings.Repeat("word, ", 40)}, 300, 2)
	if len(lines) < 2 {
		t.Fatalf("not wrapped: %q", lines)
	}
	for _, l := range lines {
		if textWidth(l, 2) > 300+textWidth("  ", 2) {
			t.Errorf("too wide: %q", l)
		}
	}
}
