package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// Figure keys. Rate figures carry a payload suffix, "_128" or "_16k".
const (
	figIdleKiB    = "idle_kib_per_tunnel"
	figCPURT      = "cpu_us_per_rt"
	figAchieved   = "achieved_msgs_per_s"
	figP50        = "latency_p50_us"
	figP99        = "latency_p99_us"
	figAddP50     = "latency_p50_added_us"
	figAddP99     = "latency_p99_added_us"
	figHSRate     = "handshakes_per_s"
	figCPUHS      = "cpu_us_per_handshake"
	figMBs        = "bulk_mb_per_s"
	figCPUGB      = "cpu_s_per_gb"
	figProxyPct   = "proxy_cpu_pct"
	figBackendPct = "backend_cpu_pct"
	figLoadPct    = "loadgen_cpu_pct"
)

// figure describes one figure of the report: a table, and a chart unless
// it belongs to a chart of several figures (latency) or to the
// conditions table.
type figure struct {
	Key   string
	Title string
	Unit  string
	// Higher is true when a higher value is better.
	Higher bool
	// Direct is true when direct has this figure, so a ratio to direct
	// means something (throughput, absolute latency).
	Direct bool
	// Prec is the number of decimals shown.
	Prec int
}

// figures lists the report's figures in order, titled from the loads'
// actual settings (a -quick run says so in its titles).
func figures(ls []load) []figure {
	by := map[string]load{}
	for _, l := range ls {
		by[l.Name] = l
	}
	rate := func(name string) string {
		o := by[name].Opts
		return fmt.Sprintf("%s at %s msg/s", fmtBytes(o.Payload), fmtNum(o.Rate, 0))
	}
	idle := by[loadIdle].Opts.Conns
	return []figure{
		{Key: figIdleKiB, Title: fmt.Sprintf("Memory per idle tunnel (PSS, %s tunnels)", fmtNum(float64(idle), 0)), Unit: "KiB", Prec: 2},
		{Key: figCPURT + "_128", Title: "Proxy CPU per round trip, " + rate(loadRate128), Unit: "µs", Prec: 1},
		{Key: figCPURT + "_16k", Title: "Proxy CPU per round trip, " + rate(loadRate16k), Unit: "µs", Prec: 1},
		{Key: figAddP50 + "_128", Title: "Latency p50 added over direct, " + rate(loadRate128), Unit: "µs", Prec: 0},
		{Key: figAddP99 + "_128", Title: "Latency p99 added over direct, " + rate(loadRate128), Unit: "µs", Prec: 0},
		{Key: figAddP50 + "_16k", Title: "Latency p50 added over direct, " + rate(loadRate16k), Unit: "µs", Prec: 0},
		{Key: figAddP99 + "_16k", Title: "Latency p99 added over direct, " + rate(loadRate16k), Unit: "µs", Prec: 0},
		{Key: figP50 + "_128", Title: "Latency p50, " + rate(loadRate128), Unit: "µs", Direct: true, Prec: 0},
		{Key: figP99 + "_128", Title: "Latency p99, " + rate(loadRate128), Unit: "µs", Direct: true, Prec: 0},
		{Key: figP50 + "_16k", Title: "Latency p50, " + rate(loadRate16k), Unit: "µs", Direct: true, Prec: 0},
		{Key: figP99 + "_16k", Title: "Latency p99, " + rate(loadRate16k), Unit: "µs", Direct: true, Prec: 0},
		{Key: figHSRate, Title: fmt.Sprintf("Handshakes per second (%d workers: connect, upgrade, one echo, close)", by[loadHandshake].Opts.Conns), Unit: "1/s", Higher: true, Direct: true, Prec: 0},
		{Key: figCPUHS, Title: "Proxy CPU per handshake", Unit: "µs", Prec: 1},
		{Key: figMBs, Title: fmt.Sprintf("Bulk throughput (%d connections, %s messages; echoed payload, one way)", by[loadBulk].Opts.Conns, fmtBytes(by[loadBulk].Opts.Payload)), Unit: "MB/s", Higher: true, Direct: true, Prec: 0},
		{Key: figCPUGB, Title: "Proxy CPU per GB relayed in bulk (GB relayed = 2 × echoed bytes)", Unit: "CPU s/GB", Prec: 2},
	}
}

// aggregate summarizes every figure per target: figure key → target →
// harness.Stat. Flagged measures are left out of the values but counted in Of, so
// a table shows "2 of 3" instead of quietly averaging a broken run.
func aggregate(ms []Measure, loadOf map[string]string) map[string]map[string]harness.Stat {
	type key struct{ fig, target string }
	vals := map[key][]float64{}
	ran := map[key]int{}
	for _, m := range ms {
		for fig, load := range loadOf {
			if load != m.Load {
				continue
			}
			k := key{fig, m.Target}
			if m.Flag != "" {
				if m.Target != targetDirect || directHas(fig) {
					ran[k]++
				}
				continue
			}
			if v, ok := m.Figures[fig]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
				vals[k] = append(vals[k], v)
				ran[k]++
			}
		}
	}
	out := map[string]map[string]harness.Stat{}
	for k, n := range ran {
		s, _ := harness.Summarize(vals[k]) // N = 0 when every repetition was flagged
		s.Of = n
		if out[k.fig] == nil {
			out[k.fig] = map[string]harness.Stat{}
		}
		out[k.fig][k.target] = s
	}
	return out
}

// figureLoads maps every figure key, the conditions ones included, to the
// load that produces it.
func figureLoads() map[string]string {
	m := map[string]string{figIdleKiB: loadIdle, figHSRate: loadHandshake, figCPUHS: loadHandshake, figMBs: loadBulk, figCPUGB: loadBulk}
	for _, sfx := range []string{"_128", "_16k"} {
		load := "rate" + sfx[1:]
		for _, f := range []string{figCPURT, figAchieved, figP50, figP99, figAddP50, figAddP99} {
			m[f+sfx] = load
		}
	}
	for _, l := range []string{loadIdle, loadRate128, loadRate16k, loadHandshake, loadBulk} {
		for _, f := range []string{figProxyPct, figBackendPct, figLoadPct} {
			m[f+"@"+l] = l
		}
	}
	return m
}

// directHas reports whether direct, which has no proxy process, can have
// the figure at all: not the proxy's CPU or memory, not latency added
// over itself.
func directHas(fig string) bool {
	for _, p := range []string{figIdleKiB, figCPURT, figCPUHS, figCPUGB, figAddP50, figAddP99, figProxyPct} {
		if strings.HasPrefix(fig, p) {
			return false
		}
	}
	return true
}

// conditionKeys copies the per-load CPU percentages under "KEY@LOAD", so
// that aggregate keeps them apart per load.
func conditionKeys(ms []Measure) {
	for i := range ms {
		for _, f := range []string{figProxyPct, figBackendPct, figLoadPct} {
			if v, ok := ms[i].Figures[f]; ok {
				ms[i].Figures[f+"@"+ms[i].Load] = v
			}
		}
	}
}

// ratio returns a/b when both are positive medians, else NaN: a ratio of
// a negative latency difference or of a missing figure means nothing.
func ratio(a, b harness.Stat) float64 {
	if a.N == 0 || b.N == 0 || a.Median <= 0 || b.Median <= 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}

// fmtNum formats v with prec decimals and thousands separators
// ("20,491.5"), NaN as "–".
func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", prec, math.Abs(v))
	intPart, frac := s, ""
	for i := range s {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i:]
			break
		}
	}
	var b []byte
	for i := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, intPart[i])
	}
	sign := ""
	if v < 0 && s != fmt.Sprintf("%.*f", prec, 0.0) {
		sign = "−"
	}
	return sign + string(b) + frac
}
