package main

import (
	"math"
	"testing"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/bench/harness"
)

func TestAggregateLeavesOutFlagged(t *testing.T) {
	ms := []Measure{
		{Rep: 1, Target: "nginx", Load: loadBulk, Figures: map[string]float64{figMBs: 100}},
		{Rep: 2, Target: "nginx", Load: loadBulk, Figures: map[string]float64{figMBs: 300}},
		{Rep: 3, Target: "nginx", Load: loadBulk, Flag: "load errors: read 3", Figures: map[string]float64{figMBs: 1}},
		{Rep: 1, Target: "sluice", Load: loadBulk, Flag: "nothing echoed"},
	}
	sum := aggregate(ms, figureLoads())
	s := sum[figMBs]["nginx"]
	if s.N != 2 || s.Of != 3 || s.Median != 200 || s.Min != 100 || s.Max != 300 {
		t.Errorf("nginx: %+v", s)
	}
	if s := sum[figMBs]["sluice"]; s.N != 0 || s.Of != 1 {
		t.Errorf("sluice, all flagged: %+v", s)
	}
	// A flagged direct load counts against direct's throughput, but gives
	// direct no row in a proxy-CPU table.
	sum = aggregate(append(ms, Measure{Rep: 1, Target: targetDirect, Load: loadBulk, Flag: "nothing echoed"}), figureLoads())
	if s, ok := sum[figMBs][targetDirect]; !ok || s.Of != 1 {
		t.Errorf("direct MB/s: %+v", s)
	}
	if _, ok := sum[figCPUGB][targetDirect]; ok {
		t.Error("direct has a CPU s/GB row")
	}
	if !math.IsNaN(ratio(sum[figMBs]["sluice"], sum[figMBs]["nginx"])) {
		t.Error("ratio of a figure without values")
	}
	if r := ratio(harness.Stat{Median: 3, N: 1}, harness.Stat{Median: 2, N: 1}); r != 1.5 {
		t.Errorf("ratio 3/2 = %v", r)
	}
	if !math.IsNaN(ratio(harness.Stat{Median: -3, N: 1}, harness.Stat{Median: 2, N: 1})) {
		t.Error("ratio of a negative median")
	}
}

func TestFiguresAndAddedLatency(t *testing.T) {
	res := func(p50, p99 float64) *bench.Result {
		return &bench.Result{Mode: bench.ModeRate, Echoed: 100000, MsgsPerSec: 20000, Latency: bench.Latency{P50: p50, P99: p99}}
	}
	o := bench.Options{Payload: 128}
	d := Measure{Rep: 1, Target: targetDirect, Load: loadRate128, Window: 5, BackendCPU: 1, LoadCPU: 2.5}
	d.Figures = figuresOf(d, res(60, 200), o, false)
	n := Measure{Rep: 1, Target: targetNginx, Load: loadRate128, Window: 5, ProxyCPU: 2.4}
	n.Figures = figuresOf(n, res(85, 190), o, true)
	if _, ok := d.Figures[figCPURT+"_128"]; ok {
		t.Error("direct has a proxy CPU figure")
	}
	if v := n.Figures[figCPURT+"_128"]; math.Abs(v-24) > 1e-9 {
		t.Errorf("CPU per round trip = %v, want 24 µs", v)
	}
	if v := d.Figures[figBackendPct]; v != 20 {
		t.Errorf("backend CPU %% = %v", v)
	}
	ms := []Measure{d, n}
	addOverDirect(ms)
	if v := ms[1].Figures[figAddP50+"_128"]; v != 25 {
		t.Errorf("p50 added = %v", v)
	}
	if v := ms[1].Figures[figAddP99+"_128"]; v != -10 {
		t.Errorf("p99 added = %v (may be negative)", v)
	}

	b := Measure{Target: targetNginx, Load: loadBulk, Window: 5, ProxyCPU: 1.6}
	f := figuresOf(b, &bench.Result{Mode: bench.ModeBulk, Echoed: 1000, MBPerSec: 200}, bench.Options{Payload: 1 << 20}, true)
	// 1000 MiB echoed = 1.048576 GB, relayed twice.
	if v := f[figCPUGB]; math.Abs(v-1.6/(2*1.048576)) > 1e-9 {
		t.Errorf("CPU s/GB = %v", v)
	}
	i := Measure{Target: targetNginx, Load: loadIdle, Window: 3, PSSBefore: 1000, PSSHeld: 19000}
	f = figuresOf(i, &bench.Result{Mode: bench.ModeIdle, Open: 9000, Alive: 9000}, bench.Options{}, true)
	if v := f[figIdleKiB]; v != 2 {
		t.Errorf("KiB per idle tunnel = %v", v)
	}
}

func TestFlagOf(t *testing.T) {
	ok := &bench.Result{Mode: bench.ModeRate, Echoed: 5}
	if f := flagOf(Measure{}, ok); f != "" {
		t.Errorf("clean run flagged: %s", f)
	}
	for _, tc := range []struct {
		m   Measure
		res *bench.Result
	}{
		{Measure{Error: "boom"}, ok},
		{Measure{}, nil},
		{Measure{}, &bench.Result{Mode: bench.ModeRate, Echoed: 5, Errors: map[string]int64{"timeout": 1}}},
		{Measure{}, &bench.Result{Mode: bench.ModeRate}},
		{Measure{}, &bench.Result{Mode: bench.ModeIdle, Open: 10, Alive: 9}},
		{Measure{}, &bench.Result{Mode: bench.ModeIdle}},
	} {
		if flagOf(tc.m, tc.res) == "" {
			t.Errorf("not flagged: %+v %+v", tc.m, tc.res)
		}
	}
	if f := flagOf(Measure{}, &bench.Result{Mode: bench.ModeRate, Echoed: 5, Errors: map[string]int64{"timeout": 0}}); f != "" {
		t.Errorf("zero error count flagged: %s", f)
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		prec int
		want string
	}{
		{20491, 0, "20,491"}, {1234567.891, 2, "1,234,567.89"}, {999, 0, "999"}, {0.66, 2, "0.66"},
		{-1234.5, 1, "−1,234.5"}, {-0.001, 1, "0.0"}, {math.NaN(), 1, "–"},
	} {
		if got := fmtNum(tc.v, tc.prec); got != tc.want {
			t.Errorf("fmtNum(%v, %d) = %q, want %q", tc.v, tc.prec, got, tc.want)
		}
	}
}
