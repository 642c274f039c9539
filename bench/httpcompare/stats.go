package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// The figures of one (target, load) cell, as Measure fields.
const (
	figReqPerS     = "req_per_s"
	figCPUUsPerReq = "cpu_us_per_req"
	figReqPerCPUS  = "req_per_cpu_s"
	figP50         = "p50_us"
	figP99         = "p99_us"
	figBackendUs   = "backend_cpu_us_per_req"
	figOtherCPU    = "proxy_cpu_other_pct"
)

var allFigures = []string{figReqPerS, figCPUUsPerReq, figReqPerCPUS, figP50, figP99, figBackendUs, figOtherCPU}

// value returns figure fig of m.
func (m Measure) value(fig string) float64 {
	switch fig {
	case figReqPerS:
		return m.Wrk.ReqPerSec
	case figCPUUsPerReq:
		return m.CPUUsPerReq
	case figReqPerCPUS:
		return m.ReqPerCPUS
	case figP50:
		return m.Wrk.P50Us
	case figP99:
		return m.Wrk.P99Us
	case figBackendUs:
		return m.BackendCPUUsPerReq
	case figOtherCPU:
		return m.ProxyCPUOtherPct
	}
	return math.NaN()
}

// minTicks is the least CPU time, in clock ticks, a measurement must
// show to be divided by its requests: a tick is 10 ms at the usual
// CLK_TCK of 100, and below 20 ticks the rounding alone moves CPU µs per
// request by more than 5 %.
const minTicks = 20

// busyNeighbourPct is the share of the target's CPU, used by anything
// else, above which a measurement is flagged (not excluded).
const busyNeighbourPct = 10

// exclusion says why a measurement with numbers must stay out of the
// medians, "" when it counts. High load and a busy neighbour alone do not
// exclude it; they are flagged.
func exclusion(r wrkResult, lost bool, ticks uint64) string {
	var why []string
	if r.Errors() > 0 {
		why = append(why, r.ErrorText())
	}
	if lost {
		why = append(why, "a target process exited")
	}
	if ticks < minTicks {
		why = append(why, fmt.Sprintf("%d CPU ticks, too few to divide", ticks))
	}
	return strings.Join(why, ", ")
}

// counts reports whether m's numbers go into the medians.
func (m Measure) counts() bool {
	return m.Error == "" && m.Wrk != nil && m.Excluded == ""
}

// Summary is load → target → figure → stat.
type Summary map[string]map[string]map[string]harness.Stat

// aggregate summarizes every figure per load and target.
func aggregate(ms []Measure) Summary {
	vals := map[[3]string][]float64{}
	ran := map[[2]string]int{}
	for _, m := range ms {
		ran[[2]string{m.Load, m.Target}]++
		if !m.counts() {
			continue
		}
		for _, f := range allFigures {
			if f == figBackendUs && m.Load != loadProxy {
				continue
			}
			vals[[3]string{m.Load, m.Target, f}] = append(vals[[3]string{m.Load, m.Target, f}], m.value(f))
		}
	}
	out := Summary{}
	for lt, n := range ran {
		load, target := lt[0], lt[1]
		if out[load] == nil {
			out[load] = map[string]map[string]harness.Stat{}
		}
		figs := map[string]harness.Stat{}
		for _, f := range allFigures {
			s, ok := harness.Summarize(vals[[3]string{load, target, f}])
			if !ok {
				continue
			}
			s.Of = n
			figs[f] = s
		}
		out[load][target] = figs
	}
	return out
}

// ratio is a/b of two medians, NaN when either is missing or b is 0.
func ratio(a, b harness.Stat) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}

// overlap reports whether the min–max ranges of a and b overlap: then a
// ratio on one side of 1 is within the run's noise.
func overlap(a, b harness.Stat) bool {
	return a.Min <= b.Max && b.Min <= a.Max
}

// fmtNum formats v with prec decimals and thousands separators; "–" for
// NaN.
func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}
