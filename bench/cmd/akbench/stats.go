package main

import (
	"math"
	"sort"
	"time"
)

// dist summarizes samples (milliseconds unless the field says otherwise).
type dist struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

func summarize(xs []float64) dist {
	if len(xs) == 0 {
		return dist{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return dist{
		N: len(s), Median: round(med, 3), P90: round(pct(s, 0.90), 3), P99: round(pct(s, 0.99), 3),
		Min: round(s[0], 3), Max: round(s[len(s)-1], 3), Mean: round(sum/float64(len(s)), 3),
	}
}

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// rotate returns the runtimes in the order for iteration i: A B C, B C A, ...
// (for two runtimes: A B, B A, A B, ...), so neither always goes first.
func rotate(rts []rt, i int) []rt {
	out := make([]rt, 0, len(rts))
	for k := range rts {
		out = append(out, rts[(i+k)%len(rts)])
	}
	return out
}
