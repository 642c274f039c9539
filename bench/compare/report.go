package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/bench/harness"
)

// Results is everything a run measured; results.json holds it whole.
type Results struct {
	Environment Environment `json:"environment"`
	Settings    Settings    `json:"settings"`
	// Configs are the generated configuration files, per target, as the
	// first repetition wrote them (later ones differ only in the port).
	Configs map[string]string `json:"configs"`
	// TargetLogs is what each started target wrote to its logs, when it
	// wrote anything (warnings, errors).
	TargetLogs []TargetLog `json:"target_logs,omitempty"`
	Measures   []Measure   `json:"measures"`
	// Summary maps figure key → target → median, min, max.
	Summary map[string]map[string]harness.Stat `json:"summary"`
	TotalS  float64                            `json:"total_s"`
}

// Settings are how the run was configured.
type Settings struct {
	Command  string   `json:"command"`
	Reps     int      `json:"reps"`
	Quick    bool     `json:"quick"`
	ProxyCPU int      `json:"proxy_cpu"`
	LoadCPU  int      `json:"load_cpu"`
	Targets  []string `json:"targets"`
	Loads    []load   `json:"loads"`
	Backend  string   `json:"backend"`
}

// TargetLog is the log output of one start of one target.
type TargetLog struct {
	Rep    int    `json:"rep"`
	Target string `json:"target"`
	Text   string `json:"text"`
}

// benchSection is this command's part of BENCHMARKS.md, between the
// bench-compare markers.
var benchSection = harness.Section{Doc: "BENCHMARKS.md", Name: "bench-compare"}

// chartSpec is one SVG file: figures drawn as one series each.
type chartSpec struct {
	File string
	Figs []string
}

// section groups figures under one heading with their charts; Note, when
// set, is a paragraph on how to read them.
type section struct {
	Heading string
	Figs    []string
	Charts  []chartSpec
	Note    string
}

// latencyNote explains why "added over direct" can be negative: it is a
// property of the setup, measured, not a proxy that makes the path faster.
const latencyNote = "How to read these: *direct* is not a latency floor here. Without a proxy, the load generator and the backend take turns on one CPU, so every echo waits for the other to be scheduled; with a proxy on the other CPU the three stages overlap, which at 20,000 msg/s of 128 B is faster than direct and makes \"added over direct\" negative. At 2,000 msg/s of 16 KiB the CPUs are mostly idle and direct is the floor again. Compare the proxies with each other (the ratio to nginx); \"added\" is a difference of two noisy figures, so read its min–max too. p99 on a shared 2-CPU machine moves by milliseconds between repetitions."

func sections() []section {
	return []section{
		{"Memory per idle tunnel", []string{figIdleKiB}, []chartSpec{{"idle_kib_per_tunnel.svg", []string{figIdleKiB}}}, ""},
		{"CPU per round trip, 128 B", []string{figCPURT + "_128"}, []chartSpec{{"cpu_us_per_rt_128.svg", []string{figCPURT + "_128"}}}, ""},
		{"CPU per round trip, 16 KiB", []string{figCPURT + "_16k"}, []chartSpec{{"cpu_us_per_rt_16k.svg", []string{figCPURT + "_16k"}}}, ""},
		{"Latency, 128 B", []string{figAddP50 + "_128", figAddP99 + "_128", figP50 + "_128", figP99 + "_128"},
			[]chartSpec{{"latency_added_128.svg", []string{figAddP50 + "_128", figAddP99 + "_128"}}}, latencyNote},
		{"Latency, 16 KiB", []string{figAddP50 + "_16k", figAddP99 + "_16k", figP50 + "_16k", figP99 + "_16k"},
			[]chartSpec{{"latency_added_16k.svg", []string{figAddP50 + "_16k", figAddP99 + "_16k"}}}, latencyNote},
		{"Handshakes", []string{figHSRate, figCPUHS},
			[]chartSpec{{"handshakes_per_s.svg", []string{figHSRate}}, {"cpu_us_per_handshake.svg", []string{figCPUHS}}}, ""},
		{"Bulk", []string{figMBs, figCPUGB},
			[]chartSpec{{"bulk_mb_per_s.svg", []string{figMBs}}, {"cpu_s_per_gb.svg", []string{figCPUGB}}}, ""},
	}
}

// better is the chart note's "lower/higher is better".
func better(f figure) string {
	if f.Higher {
		return "higher is better"
	}
	return "lower is better"
}

// buildChart draws the figures of spec for the targets that have them.
// Several figures share a chart as series: "nginx p50", "nginx p99".
func buildChart(spec chartSpec, figs map[string]figure, sum map[string]map[string]harness.Stat, targets []string) chart {
	first := figs[spec.Figs[0]]
	c := chart{Title: first.Title, Note: first.Unit + ", median of the repetitions with min–max; " + better(first), Prec: first.Prec}
	if len(spec.Figs) > 1 {
		c.Title = strings.Replace(first.Title, "p50 ", "p50 and p99 ", 1)
		c.Note = first.Unit + ", median with min–max (blue p50, orange p99); " + better(first)
	}
	for _, t := range targets {
		for i, k := range spec.Figs {
			s, ok := sum[k][t]
			if !ok {
				continue
			}
			label := t
			if len(spec.Figs) > 1 {
				label += " " + []string{"p50", "p99", "p99.9"}[i%3]
			}
			br := bar{Label: label, Value: s.Median, Min: s.Min, Max: s.Max, Spread: s.N > 1, Series: i}
			if s.N == 0 {
				br.Value = nan
			}
			c.Bars = append(c.Bars, br)
		}
	}
	return c
}

// markdown renders the section that goes between the markers.
func markdown(r *Results, figs []figure) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	byKey := map[string]figure{}
	for _, f := range figs {
		byKey[f.Key] = f
	}
	env, set := r.Environment, r.Settings
	date := env.Date
	if t, err := time.Parse(time.RFC3339, env.Date); err == nil {
		date = t.Format("2006-01-02")
	}

	w("## Side by side with nginx and HAProxy")
	w("")
	w("Generated by `make bench-compare` on %s: %d repetition(s), %s in all. Do not edit by hand; the next run replaces everything between the markers. Raw numbers: [bench/results.json](bench/results.json).", date, set.Reps, (time.Duration(r.TotalS) * time.Second).String())
	w("")
	if set.Quick {
		w("> **Quick run** (`-quick`): short windows and %s idle tunnels, for trying the harness. Not figures to quote.", fmtNum(float64(loadByName(set.Loads, loadIdle).Opts.Conns), 0))
		w("")
	}
	w("### How it was run")
	w("")
	w("`%s`", set.Command)
	w("")
	w("- Each proxy runs on **CPU %d** (`taskset`) with **one worker process or thread**; the load generator (inside the harness, GOMAXPROCS=1) and the echo backend (`%s`) share **CPU %d**. All traffic is on loopback.", set.ProxyCPU, set.Backend, set.LoadCPU)
	w("- **Access logging is off in all three proxies**: nginx `access_log off`, HAProxy has no `log` line at all, sluice `access_log = \"off\"`. Error logs stay at their warning level.")
	w("- Every target is started fresh in every repetition and gets the loads in the order below, idle first (the memory of a new process). The order of the targets rotates by repetition, so that drift on a shared machine hits each one alike; a 1 s pause separates loads.")
	w("- CPU is `utime + stime` from `/proc/PID/stat` summed over every process of the target (nginx's master included), read when the load generator opens and closes its measured window; warm-up and drain are outside it. Memory is the sum of `Pss:` from `/proc/PID/smaps_rollup`, read before the idle load and while its tunnels are held. Kernel socket buffers are in neither.")
	w("- *direct* is the load generator talking to the backend with no proxy: the floor for latency and the ceiling for throughput. It has no proxy CPU or memory figures.")
	w("- A load with errors, or with nothing echoed, is flagged below and left out of the medians (a table then says \"2 of 3\").")
	w("")
	w("| target | configuration |")
	w("| --- | --- |")
	for _, t := range set.Targets {
		w("| %s | %s |", t, targetSummary(t, env))
	}
	w("")
	w("| load | settings | figures |")
	w("| --- | --- | --- |")
	for _, l := range set.Loads {
		w("| %s | %s | %s |", l.Name, l.Settings, loadFigures(l.Name))
	}
	w("")
	w("Bulk \"CPU s per GB\" counts each echoed byte twice: it crosses the proxy on its way to the backend and again on its way back. Bulk MB/s is echoed payload, one way.")
	w("")
	if len(r.Configs) > 0 {
		w("<details><summary>The generated configuration files (ports differ per start; PREFIX is a fresh temporary directory, nginx runs with <code>-p PREFIX</code>)</summary>")
		w("")
		for _, t := range set.Targets {
			c, ok := r.Configs[t]
			if !ok {
				continue
			}
			w("%s:", t)
			w("")
			w("```%s", configLang(t))
			b.WriteString(strings.TrimRight(c, "\n") + "\n")
			w("```")
			w("")
		}
		w("</details>")
		w("")
	}

	w("### Machine and noise")
	w("")
	w("- CPU: %s, %d logical CPUs; memory %s; Linux %s; %s.", env.CPUModel, env.CPUs, memSize(env.MemTotal), env.Kernel, env.Go)
	var vers []string
	for _, v := range []string{env.Nginx, env.HAProxy, env.Sluice} {
		if v != "" {
			vers = append(vers, "`"+v+"`")
		}
	}
	if len(vers) > 0 {
		w("- Versions: %s.", strings.Join(vers, ", "))
	}
	w("- Load average (1, 5, 15 min) at the start: %s; at the end: %s. The machine is shared: the min–max columns below are the spread over the repetitions.", env.LoadStart, env.LoadEnd)
	if sp := spreads(r, figs); sp != "" {
		w("- Widest spread over the repetitions, (max − min) / median, per figure: %s.", sp)
	}
	flagged := 0
	for _, m := range r.Measures {
		if m.Flag != "" {
			flagged++
		}
	}
	if flagged == 0 {
		w("- No load was flagged: every one ran without errors.")
	} else {
		w("- **%d load(s) flagged** and left out of the medians:", flagged)
		for _, m := range r.Measures {
			if m.Flag != "" {
				w("  - rep %d, %s, %s: %s", m.Rep, m.Target, m.Load, oneLine(m.Flag))
			}
		}
	}
	if len(r.TargetLogs) > 0 {
		w("- Targets wrote to their logs (see `target_logs` in results.json):")
		for _, l := range r.TargetLogs {
			w("  - rep %d, %s: `%s`", l.Rep, l.Target, oneLine(firstLineOf(l.Text)))
		}
	}
	w("")

	for _, s := range sections() {
		w("### %s", s.Heading)
		w("")
		if s.Note != "" {
			w("%s", s.Note)
			w("")
		}
		for _, k := range s.Figs {
			f := byKey[k]
			if len(r.Summary[k]) == 0 {
				continue
			}
			w("**%s**, %s (%s)", f.Title, f.Unit, better(f))
			w("")
			figureTable(&b, f, r.Summary[k], set.Targets)
			w("")
		}
		for _, c := range s.Charts {
			if len(r.Summary[c.Figs[0]]) == 0 {
				continue
			}
			w("![%s](bench/%s)", byKey[c.Figs[0]].Title, c.File)
			w("")
		}
	}

	w("### Conditions of each load")
	w("")
	w("Medians, in %% of one CPU over the measured window. The backend and the load generator share CPU %d: when their sum nears 100%% the load side, not the proxy, limits the run (bulk and handshakes may be bounded by it; compare with direct). For the rate loads, compare the achieved rate with the offered one.", set.LoadCPU)
	w("")
	w("| load | target | achieved msg/s | proxy CPU %% | backend CPU %% | load generator CPU %% | CPU %d total %% |", set.LoadCPU)
	w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, l := range set.Loads {
		for _, t := range set.Targets {
			achieved := "–"
			if l.Opts.Mode == bench.ModeRate {
				sfx := "_" + strings.TrimPrefix(l.Name, "rate")
				if s, ok := r.Summary[figAchieved+sfx][t]; ok && s.N > 0 {
					achieved = fmtNum(s.Median, 0)
					if s.Median < 0.95*l.Opts.Rate {
						achieved += " (below the offered " + fmtNum(l.Opts.Rate, 0) + ")"
					}
				}
			}
			cell := func(k string) string {
				if s, ok := r.Summary[k+"@"+l.Name][t]; ok && s.N > 0 {
					return fmtNum(s.Median, 0)
				}
				return "–"
			}
			if _, ran := r.Summary[figBackendPct+"@"+l.Name][t]; !ran {
				continue
			}
			total := "–"
			bs, ok1 := r.Summary[figBackendPct+"@"+l.Name][t]
			ls, ok2 := r.Summary[figLoadPct+"@"+l.Name][t]
			if ok1 && ok2 && bs.N > 0 && ls.N > 0 {
				total = fmtNum(bs.Median+ls.Median, 0)
			}
			w("| %s | %s | %s | %s | %s | %s | %s |", l.Name, t, achieved, cell(figProxyPct), cell(figBackendPct), cell(figLoadPct), total)
		}
	}
	return b.String()
}

// spreads names, per figure, the target whose repetitions spread widest
// relative to its median: "CPU per round trip 128 B 12% (haproxy)".
func spreads(r *Results, figs []figure) string {
	var parts []string
	for _, f := range figs {
		// A difference of two figures can sit near zero, where a spread
		// relative to it means nothing; its table shows min–max instead.
		if strings.HasPrefix(f.Key, figAddP50) || strings.HasPrefix(f.Key, figAddP99) {
			continue
		}
		best, bestT := -1.0, ""
		for _, t := range r.Settings.Targets {
			s, ok := r.Summary[f.Key][t]
			if !ok || s.N < 2 || s.Median == 0 {
				continue
			}
			if v := (s.Max - s.Min) / math.Abs(s.Median); v > best {
				best, bestT = v, t
			}
		}
		if bestT != "" {
			parts = append(parts, fmt.Sprintf("%s %.0f%% (%s)", f.Key, 100*best, bestT))
		}
	}
	return strings.Join(parts, "; ")
}

// figureTable writes one figure's table: median, min–max, repetitions,
// ratio to nginx and, where direct has the figure, ratio to direct.
func figureTable(b *strings.Builder, f figure, sum map[string]harness.Stat, targets []string) {
	nginx, hasNginx := sum[targetNginx]
	direct, hasDirect := sum[targetDirect]
	showDirect := f.Direct && hasDirect
	head := "| target | median | min–max | reps |"
	rule := "| --- | ---: | ---: | ---: |"
	if hasNginx {
		head += " ratio to nginx |"
		rule += " ---: |"
	}
	if showDirect {
		head += " ratio to direct |"
		rule += " ---: |"
	}
	b.WriteString(head + "\n" + rule + "\n")
	for _, t := range targets {
		s, ok := sum[t]
		if !ok {
			continue
		}
		reps := fmt.Sprintf("%d", s.N)
		if s.N != s.Of {
			reps = fmt.Sprintf("%d of %d", s.N, s.Of)
		}
		med, span := "–", "–"
		if s.N > 0 {
			med = fmtNum(s.Median, f.Prec)
			span = fmtNum(s.Min, f.Prec) + "–" + fmtNum(s.Max, f.Prec)
		}
		row := fmt.Sprintf("| %s | %s | %s | %s |", t, med, span, reps)
		if hasNginx {
			row += " " + fmtRatio(ratio(s, nginx)) + " |"
		}
		if showDirect {
			row += " " + fmtRatio(ratio(s, direct)) + " |"
		}
		b.WriteString(row + "\n")
	}
}

func fmtRatio(v float64) string {
	if v != v {
		return "–"
	}
	return fmtNum(v, 2) + "×"
}

func targetSummary(t string, env Environment) string {
	switch t {
	case targetDirect:
		return "no proxy: the load goes straight to the backend"
	case targetNginx:
		return fmt.Sprintf("%s; `worker_processes 1`, `worker_connections %d`, `worker_rlimit_nofile %d`; `location /ws/` with `proxy_http_version 1.1`, Upgrade/Connection via `map`, Host, X-Real-IP, X-Forwarded-For, timeouts connect 60s / read 3600s / send 3600s, `proxy_buffer_size 16k`, `proxy_buffers 4 16k`; `access_log off`", orDash(env.Nginx), nginxWorkerConnections, nginxRlimitNofile)
	case targetHAProxy:
		return fmt.Sprintf("%s; `nbthread 1`, `maxconn %d`, `mode http`, `option forwardfor`, X-Real-IP set, timeouts connect 60s / client, server, tunnel 3600s / http-request 10s; no logging", orDash(firstLineOf(env.HAProxy)), haproxyMaxconn)
	case targetHAProxySplice:
		return fmt.Sprintf("the same HAProxy with `option splice-auto` (splice(2) when HAProxy judges it worthwhile) and `maxpipes %d` (the default, maxconn/4, needs more fds than the hard limit of 20,000 allows)", haproxyMaxpipes)
	case targetSluice:
		return fmt.Sprintf("%s; `workers = 1` (and `--workers 1`), location /ws/, timeouts connect 60s / read 3600s / send 3600s, `buffer_size = \"16k\"`; `access_log = \"off\"`, log level warn", orDash(env.Sluice))
	}
	return ""
}

func loadFigures(name string) string {
	switch name {
	case loadIdle:
		return "PSS per tunnel: (PSS held − PSS before) / tunnels open"
	case loadRate128, loadRate16k:
		return "proxy CPU µs per round trip (CPU / echoed), latency p50 and p99, and what the proxy adds over direct in the same repetition"
	case loadHandshake:
		return "handshakes per second, proxy CPU µs per handshake"
	case loadBulk:
		return "MB/s, proxy CPU s per GB relayed"
	}
	return ""
}

func configLang(t string) string {
	switch t {
	case targetNginx:
		return "nginx"
	case targetSluice:
		return "toml"
	}
	return ""
}

func loadByName(ls []load, name string) load {
	for _, l := range ls {
		if l.Name == name {
			return l
		}
	}
	return load{}
}

// memSize turns meminfo's "24684084 kB" into "23.5 GiB".
func memSize(s string) string {
	var kb float64
	if _, err := fmt.Sscanf(s, "%f kB", &kb); err != nil {
		return s
	}
	return fmt.Sprintf("%.1f GiB", kb/(1<<20))
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// oneLine keeps a message on one markdown line and out of code spans'
// way.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "`", "'")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// writeOutputs writes results.json, the charts and the BENCHMARKS.md
// section under dir.
func writeOutputs(dir string, r *Results, figs []figure) error {
	chartDir := filepath.Join(dir, "bench")
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(chartDir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	byKey := map[string]figure{}
	for _, f := range figs {
		byKey[f.Key] = f
	}
	for _, s := range sections() {
		for _, spec := range s.Charts {
			if len(r.Summary[spec.Figs[0]]) == 0 {
				continue
			}
			c := buildChart(spec, byKey, r.Summary, r.Settings.Targets)
			if err := os.WriteFile(filepath.Join(chartDir, spec.File), c.svg(), 0o644); err != nil {
				return err
			}
		}
	}
	mdPath := filepath.Join(dir, "BENCHMARKS.md")
	old, err := os.ReadFile(mdPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# sluice benchmarks\n")
	}
	doc, err := benchSection.Replace(string(old), markdown(r, figs))
	if err != nil {
		return fmt.Errorf("%s: %w", mdPath, err)
	}
	return os.WriteFile(mdPath, []byte(doc), 0o644)
}
