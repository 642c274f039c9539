package main

import (
	"math"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/bench/harness"
)

func TestRatioAndOverlap(t *testing.T) {
	a := harness.Stat{Median: 120, Min: 110, Max: 130, N: 3}
	b := harness.Stat{Median: 100, Min: 90, Max: 112, N: 3}
	if r := ratio(a, b); math.Abs(r-1.2) > 1e-9 {
		t.Errorf("ratio %v, want 1.2", r)
	}
	if !overlap(a, b) || overlap(a, harness.Stat{Min: 1, Max: 2}) {
		t.Error("overlap")
	}
	for _, bad := range [][2]harness.Stat{{a, {}}, {{}, b}, {a, {N: 1}}} {
		if !math.IsNaN(ratio(bad[0], bad[1])) {
			t.Errorf("ratio(%+v, %+v) is a number", bad[0], bad[1])
		}
	}
}

func TestExclusion(t *testing.T) {
	if e := exclusion(wrkResult{Requests: 9}, false, minTicks); e != "" {
		t.Errorf("clean run excluded: %q", e)
	}
	e := exclusion(wrkResult{Read: 4}, true, minTicks-1)
	for _, want := range []string{"4 read", "process exited", "too few"} {
		if !strings.Contains(e, want) {
			t.Errorf("exclusion %q lacks %q", e, want)
		}
	}
}

// measure builds a counted measurement.
func measureOf(rep int, target, load string, rps, cpuUs float64) Measure {
	return Measure{Rep: rep, Target: target, Load: load,
		Wrk:         &wrkResult{ReqPerSec: rps, Requests: uint64(rps * 10), P50Us: 800, P99Us: 1500},
		CPUUsPerReq: cpuUs, ReqPerCPUS: 1e6 / cpuUs, BackendCPUUsPerReq: 3}
}

func TestAggregate(t *testing.T) {
	ms := []Measure{
		measureOf(1, targetNginx, loadStatic, 70000, 14),
		measureOf(2, targetNginx, loadStatic, 72000, 13),
		measureOf(3, targetNginx, loadStatic, 68000, 15),
		measureOf(1, targetSluice, loadStatic, 80000, 12),
		{Rep: 2, Target: targetSluice, Load: loadStatic, Error: "did not start"},
		measureOf(3, targetSluice, loadStatic, 10, 1), // excluded below
		measureOf(1, targetNginx, loadProxy, 30000, 20),
	}
	ms[5].Excluded = "3 timeout"
	sum := aggregate(ms)
	n := sum[loadStatic][targetNginx][figReqPerS]
	if n != (harness.Stat{Median: 70000, Min: 68000, Max: 72000, N: 3, Of: 3}) {
		t.Errorf("nginx static req/s: %+v", n)
	}
	s := sum[loadStatic][targetSluice][figCPUUsPerReq]
	if s != (harness.Stat{Median: 12, Min: 12, Max: 12, N: 1, Of: 3}) {
		t.Errorf("sluice static CPU: %+v (failed and excluded runs must count in Of only)", s)
	}
	if _, ok := sum[loadStatic][targetNginx][figBackendUs]; ok {
		t.Error("backend CPU summarized for the static load")
	}
	if b := sum[loadProxy][targetNginx][figBackendUs]; b.Median != 3 {
		t.Errorf("backend CPU for the proxied load: %+v", b)
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		prec int
		want string
	}{
		{71468.97, 0, "71,469"}, {1234567.891, 2, "1,234,567.89"}, {999, 0, "999"},
		{-1234.5, 1, "-1,234.5"}, {0.5, 2, "0.50"}, {math.NaN(), 0, "–"},
	} {
		if got := fmtNum(tc.v, tc.prec); got != tc.want {
			t.Errorf("fmtNum(%v, %d) = %q, want %q", tc.v, tc.prec, got, tc.want)
		}
	}
}
