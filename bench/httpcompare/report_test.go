package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/bench/harness"
)

func fakeResults() *Results {
	ms := []Measure{
		measureOf(1, targetNginx, loadStatic, 70000, 14),
		measureOf(1, targetSluice, loadStatic, 80000, 12),
		measureOf(1, targetNginx, loadProxy, 30000, 20),
		{Rep: 1, Target: targetSluice, Load: loadProxy, Error: "sluice: GET http://127.0.0.1:1/api/hello: status 404, body \"\"\nSECONDLINE"},
	}
	ms[1].HighLoad = true
	r := &Results{
		Environment: Environment{Date: "2026-11-21T10:00:00Z", CPUModel: "AMD EPYC", CPUs: 2, Kernel: "6.1.0", Go: "go1.26.8",
			Nginx: "nginx version: nginx/1.22.1", Wrk: "wrk debian/4.1.0-3+b2 [epoll]", LoadStart: "0.4 0.5 0.6", LoadEnd: "1.8 1.6 1.6"},
		Settings: Settings{Command: "bench-http -reps 1", Reps: 1, DurationS: 10, WarmupS: 2, Conns: 64, ProxyCPU: 0, LoadCPU: 1,
			Targets: allTargets, HighLoad: 2.5, WrkCommand: "taskset -c 1 wrk -t1 -c64 -d10s --latency URL"},
		Measures: ms,
	}
	r.Summary = aggregate(ms)
	return r
}

func TestMarkdown(t *testing.T) {
	md := markdown(fakeResults())
	for _, want := range []string{
		"### Static file: `GET /small.txt` (1 KiB)",
		"| nginx | 70,000 | 14.00 | 71,429 | 800 µs | 1,500 µs | 0.0 % | 0 |",
		"| **sluice / nginx** | 1.14× | 0.86× | 1.17× | 1.00× | 1.00× | | |",
		"Goal (sluice ≥ nginx in requests per CPU-second): **met**: sluice serves 83,333 requests per CPU-second, nginx 71,429 (1.17×).",
		"| sluice | – | – | – | – | – | – | – | rep 1 failed |",
		"Goal (sluice ≥ nginx in requests per CPU-second): not measured",
		"- rep 1, sluice, proxy: sluice: GET http://127.0.0.1:1/api/hello: status 404",
		"**Noisy repetitions**: the one-minute load average exceeded 2.5 around rep(s) 1",
		"`bench-http -reps 1`",
		"| wrk | wrk debian/4.1.0-3+b2 [epoll] |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "SECONDLINE") {
		t.Error("a failure's later lines leaked into the report")
	}
	for i, line := range strings.Split(md, "\n") {
		if strings.HasSuffix(line, " ") {
			t.Errorf("line %d ends in a space: %q", i+1, line)
		}
	}
}

func TestGoalVerdicts(t *testing.T) {
	n := map[string]harness.Stat{figReqPerCPUS: {Median: 100, Min: 90, Max: 110, N: 3, Of: 3}}
	for _, tc := range []struct {
		s    harness.Stat
		want string
	}{
		{harness.Stat{Median: 120, Min: 115, Max: 125, N: 3, Of: 3}, "**met**"},
		{harness.Stat{Median: 80, Min: 70, Max: 85, N: 3, Of: 3}, "**not met**"},
		{harness.Stat{Median: 98, Min: 95, Max: 101, N: 3, Of: 3}, "ranges overlap"},
	} {
		got := goal(map[string]map[string]harness.Stat{targetNginx: n, targetSluice: {figReqPerCPUS: tc.s}})
		if !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q lacks %q", tc.s, got, tc.want)
		}
	}
}

func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	before := "# Benchmarks\n\nHand-written.\n"
	if err := os.WriteFile(filepath.Join(dir, "BENCHMARKS.md"), []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	r := fakeResults()
	for range 2 { // twice: the second run must find and replace the section
		if err := writeOutputs(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if !strings.HasPrefix(string(md), before+"\n"+benchSection.Begin()+"\n") || strings.Count(string(md), benchSection.Begin()) != 1 {
		t.Errorf("BENCHMARKS.md:\n%s", md)
	}
	js, err := os.ReadFile(filepath.Join(dir, "bench", "http-results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Measures) != 4 || back.Measures[0].Wrk.ReqPerSec != 70000 || back.Summary[loadStatic][targetSluice][figReqPerS].Median != 80000 {
		t.Errorf("results.json round trip: %+v", back.Measures)
	}
}

func TestRotate(t *testing.T) {
	ts := []string{"a", "b"}
	if got := rotate(ts, 1); got[0] != "b" || got[1] != "a" || ts[0] != "a" {
		t.Errorf("rotate: %v (input %v)", got, ts)
	}
	if _, err := pickTargets("haproxy"); err == nil {
		t.Error("-only haproxy accepted")
	}
	if got, _ := pickTargets(" sluice "); len(got) != 1 || got[0] != targetSluice {
		t.Errorf("-only sluice: %v", got)
	}
}
