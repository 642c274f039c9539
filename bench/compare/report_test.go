package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/bench"
)

// fakeResults is a small run: two reps, nginx, sluice and direct.
func fakeResults() (*Results, []figure) {
	ls := loads(false)
	r := &Results{
		Environment: Environment{Date: "2026-11-21T10:00:00Z", CPUModel: "AMD EPYC", CPUs: 2, Kernel: "6.1.0", Go: "go1.26.8", Nginx: "nginx version: nginx/1.22.1", LoadStart: "1.4 1.5 1.6", LoadEnd: "1.8 1.6 1.6"},
		Settings:    Settings{Command: "bench-compare -reps 2", Reps: 2, ProxyCPU: 0, LoadCPU: 1, Targets: []string{targetDirect, targetNginx, targetSluice}, Loads: ls, Backend: "echo -quiet -loops 1"},
		Configs:     map[string]string{targetNginx: nginxConfig("/p", 1, "127.0.0.1:2", true, nil), targetSluice: sluiceConfig(1, "127.0.0.1:2")},
	}
	for rep := 1; rep <= 2; rep++ {
		for _, t := range r.Settings.Targets {
			p := 1.0
			if t == targetSluice {
				p = 1.2
			}
			proxied := t != targetDirect
			for _, l := range ls {
				if l.Name == loadIdle && !proxied {
					continue
				}
				m := Measure{Rep: rep, Target: t, Load: l.Name, Window: 5, BackendCPU: 1, LoadCPU: 3, ProxyCPU: p * float64(rep)}
				res := &bench.Result{Mode: l.Opts.Mode, Echoed: 100000, Open: 9000, Alive: 9000, Handshakes: 20000, HandshakesPerSec: 4000,
					MsgsPerSec: 20000, MBPerSec: 900, Latency: bench.Latency{P50: 60 * p, P99: 300 * p}}
				if !proxied {
					res.Latency = bench.Latency{P50: 50, P99: 320}
				}
				if l.Name == loadIdle {
					m.PSSBefore, m.PSSHeld = 5000, 5000+int64(9000*2*p)
				}
				if t == targetSluice && l.Name == loadBulk && rep == 2 {
					m.Flag = "load errors: read 1"
				}
				m.Result = res
				m.Figures = figuresOf(m, res, l.Opts, proxied)
				r.Measures = append(r.Measures, m)
			}
		}
	}
	addOverDirect(r.Measures)
	conditionKeys(r.Measures)
	r.Summary = aggregate(r.Measures, figureLoads())
	return r, figures(ls)
}

func TestMarkdownAndOutputs(t *testing.T) {
	r, figs := fakeResults()
	md := markdown(r, figs)
	for _, s := range []string{
		"## Side by side with nginx and HAProxy",
		"Access logging is off in all three proxies",
		"CPU 0", "CPU 1",
		"| target | median | min–max | reps | ratio to nginx |",
		"ratio to direct",
		"| sluice | 2.40 | 2.40–2.40 | 2 | 1.20× |", // idle KiB per tunnel: 2*1.2
		"1 of 2", // sluice bulk, one flagged
		"rep 2, sluice, bulk: load errors: read 1",
		"![Memory per idle tunnel (PSS, 9,000 tunnels)](bench/idle_kib_per_tunnel.svg)",
		"<details>", "worker_processes 1;", "access_log = \"off\"",
		"1.4 1.5 1.6", "1.8 1.6 1.6",
		"### Conditions of each load",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
	if strings.Contains(md, benchSection.Begin()) || strings.Contains(md, "NaN") {
		t.Error("markdown contains a marker or NaN")
	}

	dir := t.TempDir()
	md0 := "# sluice benchmarks\n\nHand-written text.\n"
	if err := os.WriteFile(filepath.Join(dir, "BENCHMARKS.md"), []byte(md0), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := writeOutputs(dir, r, figs); err != nil {
			t.Fatal(err)
		}
	}
	doc, _ := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if !strings.HasPrefix(string(doc), md0) || strings.Count(string(doc), benchSection.Begin()) != 1 {
		t.Errorf("BENCHMARKS.md after two runs:\n%s", doc)
	}
	for _, s := range sections() {
		for _, c := range s.Charts {
			b, err := os.ReadFile(filepath.Join(dir, "bench", c.File))
			if err != nil {
				t.Errorf("chart %s: %v", c.File, err)
				continue
			}
			parseSVG(t, b)
			if !strings.Contains(string(md), "(bench/"+c.File+")") {
				t.Errorf("chart %s not embedded", c.File)
			}
		}
	}
	var back Results
	js, _ := os.ReadFile(filepath.Join(dir, "bench", "results.json"))
	if err := json.Unmarshal(js, &back); err != nil || len(back.Measures) != len(r.Measures) {
		t.Errorf("results.json: %v, %d measures", err, len(back.Measures))
	}
}
