package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"
)

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{20, 20, 20, 255}
	grey  = color.RGBA{150, 150, 150, 255}
	light = color.RGBA{232, 232, 232, 255}
	// One colour per runtime, the same in every panel.
	runtimeColor = map[string]color.RGBA{
		"autokill": {31, 119, 180, 255},
		"runc":     {255, 127, 14, 255},
		"crun":     {44, 160, 44, 255},
	}
)

const (
	chartW  = 1320
	panelW  = 440
	panelH  = 300
	padding = 14
)

type series struct {
	name   string
	values []float64 // NaN: no bar
	labels []string  // text above each bar ("" → the value)
}

type panel struct {
	title  string
	groups []string
	series []series
	format string // for values, e.g. "%.1f"
}

// writeChart draws, per containerd version, six panels of grouped bars.
func writeChart(path string, rep *report) error {
	header := wrap([]string{
		"taken " + takenOn(rep),
		fmt.Sprintf("shim %s; %s; %s", rep.Shim, rep.Runc, rep.Crun),
	}, chartW-2*padding, 2)
	headerH := 20 + 3*7 + 16 + len(header)*20 + 30
	sectionH := 40 + 2*panelH
	img := image.NewRGBA(image.Rect(0, 0, chartW, headerH+len(rep.Results)*sectionH+10))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)

	y := 16
	drawText(img, padding, y, "io.containerd.autokill.v1 vs io.containerd.runc.v2", 3, black)
	y += 3*7 + 16
	for _, l := range header {
		drawText(img, padding, y, l, 2, black)
		y += 20
	}
	// Legend.
	x := padding
	for _, name := range []string{"autokill", "runc", "crun"} {
		fill(img, image.Rect(x, y, x+16, y+16), runtimeColor[name])
		drawText(img, x+22, y+1, name, 2, black)
		x += 22 + textWidth(name, 2) + 30
	}
	y = headerH
	for i := range rep.Results {
		vr := &rep.Results[i]
		title := "containerd " + shortVersion(vr.Containerd)
		var skipped []string
		for _, r := range vr.Runtimes {
			if r.Skip != "" {
				skipped = append(skipped, r.Name+" does not run here")
			}
		}
		if len(skipped) > 0 {
			title += " (" + strings.Join(skipped, ", ") + ")"
		}
		drawText(img, padding, y+8, title, 2, black)
		fill(img, image.Rect(padding, y+30, chartW-padding, y+31), grey)
		for k, p := range panelsFor(rep, vr) {
			px, py := (k%3)*panelW, y+40+(k/3)*panelH
			drawPanel(img, image.Rect(px, py, px+panelW, py+panelH), p)
		}
		y += sectionH
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func panelsFor(rep *report, vr *versionResult) []panel {
	var names []string
	for _, r := range vr.Runtimes {
		if r.Skip == "" {
			names = append(names, r.Name)
		}
	}
	mk := func(title, format string, groups []string, val func(*rtRes) []float64, lab func(*rtRes) []string) panel {
		p := panel{title: title, groups: groups, format: format}
		for _, n := range names {
			s := series{name: n, values: val(vr.ByRuntime[n])}
			if lab != nil {
				s.labels = lab(vr.ByRuntime[n])
			}
			p.series = append(p.series, s)
		}
		return p
	}
	mem := func(x *rtRes, i int) memRes {
		if i < len(x.Memory) {
			return x.Memory[i]
		}
		return memRes{}
	}
	bmed := func(x *rtRes, f func(burstRes) float64) float64 {
		var v []float64
		for _, b := range x.Burst {
			v = append(v, f(b))
		}
		return summarize(v).Median
	}
	idle := rep.Params.Idle
	return []panel{
		mk(fmt.Sprintf("ctr run --rm true (ms, %d runs)", rep.Params.Runs), "%.0f", []string{"median", "p90", "min"},
			func(x *rtRes) []float64 { return []float64{x.CtrRun.Median, x.CtrRun.P90, x.CtrRun.Min} }, nil),
		mk("phases from events (ms, median)", "%.1f", []string{"create→task create", "task create→start", "exit→delete"},
			func(x *rtRes) []float64 { return []float64{x.CreateTC.Median, x.TCToStart.Median, x.ExitDelete.Median} }, nil),
		mk("shim memory per shim (MiB)", "%.1f", []string{"RSS 1", "PSS 1", fmt.Sprintf("RSS %d", idle), fmt.Sprintf("PSS %d", idle)},
			func(x *rtRes) []float64 {
				return []float64{mem(x, 0).RSSPerShimKB / 1024, mem(x, 0).PSSPerShimKB / 1024, mem(x, 1).RSSPerShimKB / 1024, mem(x, 1).PSSPerShimKB / 1024}
			}, nil),
		mk(fmt.Sprintf("exit notification (ms, %d kills)", rep.Params.ExitRuns), "%.1f", []string{"median", "p99"},
			func(x *rtRes) []float64 { return []float64{x.Exit.Median, x.Exit.P99} }, nil),
		mk(fmt.Sprintf("burst of %d containers (s)", rep.Params.Burst), "%.1f", []string{"all running", "all deleted", "CPU (net)"},
			func(x *rtRes) []float64 {
				return []float64{bmed(x, func(b burstRes) float64 { return b.AllRunningS }), bmed(x, func(b burstRes) float64 { return b.AllDeletedS }), bmed(x, func(b burstRes) float64 { return b.CPUNetS })}
			}, nil),
		mk("shim SIGKILL: container gone (ms)", "%.1f", []string{"time until gone"},
			func(x *rtRes) []float64 {
				if x.Crash.Survived > 0 {
					return []float64{5000}
				}
				return []float64{x.Crash.Gone.Median}
			},
			func(x *rtRes) []string {
				if x.Crash.Survived > 0 {
					return []string{"still run >5 s"}
				}
				return []string{fmt.Sprintf("%.1f", x.Crash.Gone.Median)}
			}),
	}
}

func drawPanel(img *image.RGBA, r image.Rectangle, p panel) {
	in := image.Rect(r.Min.X+padding, r.Min.Y+8, r.Max.X-padding, r.Max.Y-8)
	fill(img, in, color.RGBA{250, 250, 250, 255})
	drawText(img, in.Min.X+6, in.Min.Y+6, p.title, 2, black)
	plot := image.Rect(in.Min.X+10, in.Min.Y+50, in.Max.X-10, in.Max.Y-30)
	maxV := 0.0
	for _, s := range p.series {
		for _, v := range s.values {
			if !math.IsNaN(v) && v > maxV {
				maxV = v
			}
		}
	}
	if maxV <= 0 {
		maxV = 1
	}
	fill(img, image.Rect(plot.Min.X, plot.Max.Y, plot.Max.X, plot.Max.Y+1), grey)
	for g := 1; g <= 4; g++ { // light grid at quarters of the maximum
		gy := plot.Max.Y - g*plot.Dy()/4
		fill(img, image.Rect(plot.Min.X, gy, plot.Max.X, gy+1), light)
	}
	ng, ns := len(p.groups), len(p.series)
	if ng == 0 || ns == 0 {
		return
	}
	groupW := plot.Dx() / ng
	barW := (groupW - 16) / ns
	if barW > 50 {
		barW = 50
	}
	for g, name := range p.groups {
		gx := plot.Min.X + g*groupW + (groupW-barW*ns)/2
		for k, s := range p.series {
			if g >= len(s.values) || math.IsNaN(s.values[g]) {
				continue
			}
			v := s.values[g]
			h := int(math.Round(v / maxV * float64(plot.Dy()-16)))
			if h < 2 {
				h = 2 // visible, however small
			}
			bx := gx + k*barW
			fill(img, image.Rect(bx+1, plot.Max.Y-h, bx+barW-1, plot.Max.Y), runtimeColor[s.name])
			label := fmt.Sprintf(p.format, v)
			if g < len(s.labels) && s.labels[g] != "" {
				label = s.labels[g]
			}
			lx := bx + barW/2 - textWidth(label, 1)/2
			drawText(img, lx, plot.Max.Y-h-10, label, 1, black)
		}
		lw := textWidth(name, 1)
		drawText(img, plot.Min.X+g*groupW+groupW/2-lw/2, plot.Max.Y+8, name, 1, black)
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

// wrap breaks lines at ", " or "; " so that each fits width pixels at scale.
func wrap(lines []string, width, scale int) []string {
	var out []string
	for _, l := range lines {
		for textWidth(l, scale) > width {
			cut := -1
			for i := range l {
				if i > 0 && (strings.HasPrefix(l[i:], ", ") || strings.HasPrefix(l[i:], "; ")) && textWidth(l[:i+1], scale) <= width {
					cut = i + 1
				}
			}
			if cut < 0 {
				break
			}
			out = append(out, l[:cut])
			l = "  " + strings.TrimSpace(l[cut:])
		}
		out = append(out, l)
	}
	return out
}
