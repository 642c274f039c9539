package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// Results is everything a run measured; http-results.json holds it whole.
type Results struct {
	Environment Environment `json:"environment"`
	Settings    Settings    `json:"settings"`
	// Configs are the generated files, per target and for the backend, as
	// first written, with the run's temporary directory shown as PREFIX.
	Configs  map[string]string `json:"configs"`
	Measures []Measure         `json:"measures"`
	Summary  Summary           `json:"summary"`
	TotalS   float64           `json:"total_s"`
}

// Settings are how the run was configured.
type Settings struct {
	Command      string   `json:"command"`
	Reps         int      `json:"reps"`
	DurationS    float64  `json:"duration_s"`
	WarmupS      float64  `json:"warmup_s"`
	Conns        int      `json:"conns"`
	Quick        bool     `json:"quick"`
	ProxyCPU     int      `json:"proxy_cpu"`
	LoadCPU      int      `json:"load_cpu"`
	Targets      []string `json:"targets"`
	HighLoad     float64  `json:"high_load_threshold"`
	StaticBytes  int      `json:"static_bytes"`
	WrkCommand   string   `json:"wrk_command"`
	BackendStart string   `json:"backend,omitempty"`
}

// Measure is one measured wrk run against one freshly started target.
type Measure struct {
	Rep    int    `json:"rep"`
	Order  int    `json:"order"` // position in the rep, from 1
	Target string `json:"target"`
	Load   string `json:"load"`
	URL    string `json:"url,omitempty"`
	// Error is set when the target did not start, did not answer the load's
	// URL correctly, or wrk failed: the measurement has no numbers.
	Error string     `json:"error,omitempty"`
	Wrk   *wrkResult `json:"wrk,omitempty"`
	// ProxyCPUS is user+system time of the target's whole process tree
	// over the wrk run, read from /proc right before and right after it.
	ProxyCPUS   float64 `json:"proxy_cpu_s"`
	ProxyProcs  int     `json:"proxy_procs"`
	CPUUsPerReq float64 `json:"cpu_us_per_req"`
	ReqPerCPUS  float64 `json:"req_per_cpu_s"`
	// LostProcess is a process of the target's tree that was gone after
	// the run: its CPU time went with it, so the figures are too low.
	LostProcess bool `json:"lost_process,omitempty"`
	// Excluded says why a measurement that has numbers is left out of the
	// medians (wrk errors, a lost process, too few CPU ticks to divide).
	Excluded string `json:"excluded,omitempty"`
	// The backend's CPU over the same window (proxied load only).
	BackendCPUS        float64 `json:"backend_cpu_s,omitempty"`
	BackendCPUUsPerReq float64 `json:"backend_cpu_us_per_req,omitempty"`
	// ProxyCPUOtherPct is how busy the proxy CPU was with anything but the
	// target, in percent of the wall time: the noise on the target's CPU
	// (another process, interrupts) that the pinning could not keep off.
	ProxyCPUOtherPct float64 `json:"proxy_cpu_other_pct"`
	WallS            float64 `json:"wall_s"`
	LoadBefore       float64 `json:"loadavg1_before"`
	LoadAfter        float64 `json:"loadavg1_after"`
	HighLoad         bool    `json:"high_load,omitempty"`
	// BusyNeighbour is ProxyCPUOtherPct above busyNeighbourPct.
	BusyNeighbour bool   `json:"busy_neighbour,omitempty"`
	WrkOutput     string `json:"wrk_output,omitempty"`
	// Log is what the target wrote to its logs during this start.
	Log string `json:"log,omitempty"`
}

// benchSection is this command's part of BENCHMARKS.md, between the
// bench-http markers.
var benchSection = harness.Section{Doc: "BENCHMARKS.md", Name: "bench-http"}

// The two targets, in table order.
const (
	targetNginx  = "nginx"
	targetSluice = "sluice"
)

var allTargets = []string{targetNginx, targetSluice}

// loadTitle is a load's heading in the report.
func loadTitle(load string) string {
	if load == loadProxy {
		return "Proxied GET: `GET " + proxyPath + "` → nginx backend (19-byte body)"
	}
	return "Static file: `GET " + staticPath + "` (1 KiB)"
}

// cell is "median (min–max)", or just the median for one value, with an
// "n of m" note when some measurements did not count.
func cell(s harness.Stat, ok bool, prec int) string {
	if !ok || s.N == 0 {
		return "–"
	}
	out := fmtNum(s.Median, prec)
	if s.N > 1 {
		out += " (" + fmtNum(s.Min, prec) + "–" + fmtNum(s.Max, prec) + ")"
	}
	if s.N < s.Of {
		out += fmt.Sprintf(" [%d of %d]", s.N, s.Of)
	}
	return out
}

// latency formats microseconds for a table: µs below 10 ms, else ms.
func latency(s harness.Stat, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	if s.Median >= 10000 {
		return fmtNum(s.Median/1000, 1) + " ms"
	}
	return fmtNum(s.Median, 0) + " µs"
}

// fmtRatio is "1.07×", "–" when not measurable.
func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmtNum(v, 2) + "×"
}

// errorCell sums the errors of every run of (load, target) and names the
// runs that failed outright.
func errorCell(ms []Measure, load, target string) string {
	var parts []string
	for _, m := range ms {
		if m.Load != load || m.Target != target {
			continue
		}
		switch {
		case m.Error != "":
			parts = append(parts, fmt.Sprintf("rep %d failed", m.Rep))
		case m.Excluded != "":
			parts = append(parts, fmt.Sprintf("rep %d: %s", m.Rep, m.Excluded))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "; ")
}

// goal is the verdict on the target for one load: sluice serves
// at least as many requests per CPU-second as nginx.
func goal(sum map[string]map[string]harness.Stat) string {
	s, okS := sum[targetSluice][figReqPerCPUS]
	n, okN := sum[targetNginx][figReqPerCPUS]
	if !okS || !okN {
		return "not measured (a target has no valid run)"
	}
	r := ratio(s, n)
	verdict := "**met**"
	if r < 1 {
		verdict = "**not met**"
	}
	note := ""
	if s.N > 1 && n.N > 1 && overlap(s, n) {
		note = "; the min–max ranges overlap, so the difference is within this run's noise"
	}
	return fmt.Sprintf("%s: sluice serves %s requests per CPU-second, nginx %s (%s)%s.",
		verdict, fmtNum(s.Median, 0), fmtNum(n.Median, 0), fmtRatio(r), note)
}

// markdown renders the section that goes between the markers.
func markdown(r *Results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	env, set := r.Environment, r.Settings
	date := env.Date
	if t, err := time.Parse(time.RFC3339, env.Date); err == nil {
		date = t.Format("2006-01-02")
	}
	w("## Plain HTTP: sluice and nginx")
	w("")
	w("Generated by `make bench-http` on %s: %d repetition(s) of %s per target and load, %s in all. "+
		"Do not edit by hand; the next run replaces everything between the markers. "+
		"Raw numbers: [bench/http-results.json](bench/http-results.json).",
		date, set.Reps, (time.Duration(set.DurationS * float64(time.Second))).String(), time.Duration(r.TotalS*float64(time.Second)).Round(time.Second).String())
	w("")
	if set.Quick {
		w("> **Quick run** (`-quick`): one short repetition, for trying the harness. Not figures to quote.")
		w("")
	}
	w("The goal: at least nginx's throughput per CPU second (requests per CPU-second of the proxy's whole process tree) for both loads.")
	w("")
	for _, load := range allLoads {
		sum := r.Summary[load]
		if sum == nil {
			continue
		}
		w("### %s", loadTitle(load))
		w("")
		head := "| | req/s (higher is better) | CPU µs/req (lower) | req per CPU-s (higher) | p50 | p99 |"
		sep := "|---|---:|---:|---:|---:|---:|"
		if load == loadProxy {
			head += " backend CPU µs/req |"
			sep += "---:|"
		}
		head += " other use of CPU %d | errors |"
		sep += "---:|---|"
		w(head, set.ProxyCPU)
		w("%s", sep)
		for _, t := range set.Targets {
			figs := sum[t]
			get := func(f string) (harness.Stat, bool) { s, ok := figs[f]; return s, ok }
			row := fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", t,
				cell2(get, figReqPerS, 0), cell2(get, figCPUUsPerReq, 2), cell2(get, figReqPerCPUS, 0),
				lat2(get, figP50), lat2(get, figP99))
			if load == loadProxy {
				row += " " + cell2(get, figBackendUs, 2) + " |"
			}
			if s, ok := get(figOtherCPU); ok && s.N > 0 {
				row += " " + fmtNum(s.Median, 1) + " % |"
			} else {
				row += " – |"
			}
			row += " " + errorCell(r.Measures, load, t) + " |"
			w("%s", row)
		}
		if slices.Contains(set.Targets, targetSluice) && slices.Contains(set.Targets, targetNginx) {
			rt := func(f string) string { return fmtRatio(ratio(sum[targetSluice][f], sum[targetNginx][f])) }
			row := fmt.Sprintf("| **sluice / nginx** | %s | %s | %s | %s | %s |", rt(figReqPerS), rt(figCPUUsPerReq), rt(figReqPerCPUS), rt(figP50), rt(figP99))
			if load == loadProxy {
				row += " " + rt(figBackendUs) + " |"
			}
			row += " | |"
			w("%s", row)
			w("")
			w("Goal (sluice ≥ nginx in requests per CPU-second): %s", goal(sum))
		}
		w("")
	}
	w("Medians over the repetitions, min–max in parentheses; \"[2 of 3]\" means a run was left out: wrk counted errors, the target failed, one of its processes exited, or it used too few clock ticks of CPU to divide.")
	w("CPU is user+system time of the target's whole process tree (nginx master and worker; every sluice thread) from /proc, read right before and right after each wrk run, divided by the requests wrk completed.")
	w("\"Other use of CPU %d\" is how busy the target's CPU was with anything else over the run (from /proc/stat): more than a few percent means a neighbour or interrupts competed with the target.", set.ProxyCPU)
	w("")
	if hl := repsWhere(r.Measures, func(m Measure) bool { return m.HighLoad }); len(hl) > 0 {
		w("**Noisy repetitions**: the one-minute load average exceeded %s around rep(s) %s (the benchmark itself keeps about two CPUs busy, so read this with the \"other use\" column).", fmtNum(set.HighLoad, 1), joinInts(hl))
		w("")
	}
	if bn := repsWhere(r.Measures, func(m Measure) bool { return m.BusyNeighbour }); len(bn) > 0 {
		w("**Busy neighbour**: in rep(s) %s something else used more than %d %% of CPU %d during a measurement; those figures are not the target's alone.", joinInts(bn), busyNeighbourPct, set.ProxyCPU)
		w("")
	}
	if fails := failures(r.Measures); len(fails) > 0 {
		w("**Failed runs**:")
		w("")
		for _, f := range fails {
			w("- %s", f)
		}
		w("")
	}
	w("### How it was run")
	w("")
	w("`%s`", set.Command)
	w("")
	w("Every measurement starts the target afresh with one worker, pinned alone to CPU %d (`taskset`), checks that the load's URL answers 200 with the expected bytes, "+
		"warms it up with wrk for %s, then measures with `%s` pinned to CPU %d, where the backend (an nginx answering from its config) also runs. "+
		"Targets alternate in rotated order within each repetition. Both targets serve the same document root, "+
		"use `try_files $uri $uri/ /index.html` for `/` and keep-alive HTTP/1.1 to the backend for `/api/`; the generated configs are in the JSON.",
		set.ProxyCPU, (time.Duration(set.WarmupS * float64(time.Second))).String(), set.WrkCommand, set.LoadCPU)
	w("")
	w("### Environment")
	w("")
	w("| | |")
	w("|---|---|")
	w("| date | %s |", env.Date)
	w("| kernel | %s |", env.Kernel)
	w("| CPU | %s, %d CPUs |", env.CPUModel, env.CPUs)
	w("| memory | %s |", env.MemTotal)
	w("| nginx | %s |", env.Nginx)
	w("| wrk | %s |", env.Wrk)
	if env.Sluice != "" {
		w("| sluice | %s |", env.Sluice)
	}
	w("| Go | %s |", env.Go)
	w("| load average (1, 5, 15 min) | %s at the start, %s at the end |", env.LoadStart, env.LoadEnd)
	return b.String()
}

func cell2(get func(string) (harness.Stat, bool), f string, prec int) string {
	s, ok := get(f)
	return cell(s, ok, prec)
}

func lat2(get func(string) (harness.Stat, bool), f string) string {
	s, ok := get(f)
	return latency(s, ok)
}

// repsWhere lists the reps with a measurement for which pred holds.
func repsWhere(ms []Measure, pred func(Measure) bool) []int {
	var reps []int
	for _, m := range ms {
		if pred(m) && !slices.Contains(reps, m.Rep) {
			reps = append(reps, m.Rep)
		}
	}
	slices.Sort(reps)
	return reps
}

// failures describes every run that produced no numbers, first line of
// the error only.
func failures(ms []Measure) []string {
	var out []string
	for _, m := range ms {
		if m.Error == "" {
			continue
		}
		first, _, _ := strings.Cut(m.Error, "\n")
		out = append(out, fmt.Sprintf("rep %d, %s, %s: %s", m.Rep, m.Target, m.Load, strings.ReplaceAll(first, "|", "\\|")))
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// writeOutputs writes dir/bench/http-results.json and the section of
// dir/BENCHMARKS.md between the bench-http markers.
func writeOutputs(dir string, r *Results) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bench"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench", "http-results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	mdPath := filepath.Join(dir, "BENCHMARKS.md")
	doc, err := os.ReadFile(mdPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := benchSection.Replace(string(doc), markdown(r))
	if err != nil {
		return fmt.Errorf("%s: %w", mdPath, err)
	}
	return os.WriteFile(mdPath, []byte(out), 0o644)
}
