// Command bench-compare measures sluice side by side with nginx and
// HAProxy (and with no proxy at all) on one machine, and writes the
// results into docs/BENCHMARKS.md, docs/bench/*.svg and
// docs/bench/results.json. `make bench-compare` builds and runs it.
//
// The load generator (package bench) runs inside this process, so the
// harness can read every target's CPU time and memory from /proc at the
// exact edges of each measured window (bench.Options.OnMeasure). The
// proxies and the echo backend are child processes, each pinned to a CPU
// with taskset: the proxy alone on -proxy-cpu with one worker or thread,
// the backend and this process on -load-cpu.
//
//	go build -o bin/bench-compare ./bench/compare
//	taskset -c 1 bin/bench-compare -sluice bin/sluice -echo bin/echo -out docs
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// runner is the state of one comparison run.
type runner struct {
	tools             tools
	env               Environment
	proxyCPU, loadCPU int
	tmp               string
	ports             harness.Ports
	kids              harness.Children
	backend           *harness.Child
	backendAddr       string
	nginxTemp         []string
	log               io.Writer
	startFailures     int
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench-compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sluiceBin := fs.String("sluice", "bin/sluice", "sluice `binary`")
	echoBin := fs.String("echo", "bin/echo", "echo backend `binary`")
	reps := fs.Int("reps", 3, "repetitions of every target and load")
	out := fs.String("out", "docs", "`dir`ectory for BENCHMARKS.md (the section between the bench-compare markers) and bench/*.svg, bench/results.json")
	only := fs.String("only", "", "comma-separated subset of the targets: "+strings.Join(allTargets, ","))
	quick := fs.Bool("quick", false, "short windows (~1 s) and 1,000 idle tunnels, to try the harness in about a minute")
	proxyCPU := fs.Int("proxy-cpu", 0, "CPU the proxy under test is pinned to")
	loadCPU := fs.Int("load-cpu", 1, "CPU the load generator (this process) and the backend are pinned to")
	render := fs.Bool("render", false, "run nothing: rewrite the report and charts in -out from its bench/results.json (after a change to the report's layout)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench-compare [flags]\n\nRuns sluice, nginx and HAProxy side by side; see docs/BENCHMARKS.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *render {
		if err := rerender(*out); err != nil {
			fmt.Fprintf(stderr, "bench-compare: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "rewrote %s from %s\n", filepath.Join(*out, "BENCHMARKS.md"), filepath.Join(*out, "bench", "results.json"))
		return 0
	}
	targets, err := pickTargets(*only)
	if err == nil && *reps < 1 {
		err = errors.New("-reps must be at least 1")
	}
	if err == nil && *proxyCPU == *loadCPU {
		err = errors.New("-proxy-cpu and -load-cpu must differ: the point is a CPU for the proxy alone")
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-compare: %v\n", err)
		return 2
	}
	h := &runner{proxyCPU: *proxyCPU, loadCPU: *loadCPU, ports: harness.Ports{Next: 21000}, log: stderr}
	ctx, stop := h.kids.NotifyContext(h.log, "bench-compare")
	defer stop()
	defer h.kids.StopAll()
	cmd := "bench-compare " + strings.Join(args, " ")
	if err := h.runAll(ctx, cmd, targets, *reps, *quick, *sluiceBin, *echoBin, *out, stdout); err != nil {
		fmt.Fprintf(stderr, "bench-compare: %v\n", err)
		return 1
	}
	return 0
}

// pickTargets parses -only.
func pickTargets(only string) ([]string, error) {
	if strings.TrimSpace(only) == "" {
		return slices.Clone(allTargets), nil
	}
	want := map[string]bool{}
	for _, t := range strings.Split(only, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(allTargets, t) {
			return nil, fmt.Errorf("-only: unknown target %q (targets: %s)", t, strings.Join(allTargets, ", "))
		}
		want[t] = true
	}
	var ts []string
	for _, t := range allTargets { // keep the canonical order
		if want[t] {
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// rotate returns ts starting at index k mod len(ts).
func rotate(ts []string, k int) []string {
	k %= len(ts)
	return append(slices.Clone(ts[k:]), ts[:k]...)
}

func (h *runner) runAll(ctx context.Context, cmd string, targets []string, reps int, quick bool, sluiceBin, echoBin, outDir string, stdout io.Writer) error {
	began := time.Now()
	// 1. Preflight: pin, fds, binaries, environment.
	was, err := pinSelf(h.loadCPU)
	if err != nil {
		return err
	}
	nofile, err := raiseNofile()
	if err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if _, err := harness.FindTool("taskset", installHint); err != nil {
		return errors.New("taskset not found (package util-linux)")
	}
	use := func(t string) bool { return slices.Contains(targets, t) }
	if use(targetNginx) {
		if h.tools.nginx, err = harness.FindTool("nginx", installHint); err != nil {
			return err
		}
		h.nginxTemp = harness.NginxTempPaths(harness.CombinedOutput(h.tools.nginx, "-V"))
	}
	if use(targetHAProxy) || use(targetHAProxySplice) {
		if h.tools.haproxy, err = harness.FindTool("haproxy", installHint); err != nil {
			return err
		}
	}
	if use(targetSluice) {
		if h.tools.sluice, err = builtBinary(sluiceBin, "sluice"); err != nil {
			return err
		}
	}
	if h.tools.echo, err = builtBinary(echoBin, "echo backend"); err != nil {
		return err
	}
	h.env = environment(h.tools, use(targetNginx), use(targetHAProxy) || use(targetHAProxySplice), use(targetSluice))
	h.env.AffinityWas, h.env.NofileLimit = was, nofile
	if nofile < 19000 {
		fmt.Fprintf(h.log, "bench-compare: warning: RLIMIT_NOFILE is %d; 9,000 idle tunnels need about 19,000 fds in the proxy\n", nofile)
	}
	fmt.Fprintf(h.log, "bench-compare: %s, %d CPUs, load average %s; proxy on CPU %d, load generator and backend on CPU %d (affinity was %s), %d fds\n",
		h.env.CPUModel, h.env.CPUs, h.env.LoadStart, h.proxyCPU, h.loadCPU, was, nofile)

	if h.tmp, err = os.MkdirTemp("", "bench-compare-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.tmp)

	// 2. The backend, one for the whole run.
	backendArgs := []string{h.tools.echo, "", "-quiet"}
	if h.env.EchoLoopsArg = echoHasFlag(h.tools.echo, "loops"); h.env.EchoLoopsArg {
		backendArgs = append(backendArgs, "-loops", "1")
	} else {
		fmt.Fprintf(h.log, "bench-compare: warning: %s has no -loops flag; starting it without\n", echoBin)
	}
	port, err := h.ports.Take()
	if err != nil {
		return err
	}
	h.backendAddr = fmt.Sprintf("127.0.0.1:%d", port)
	backendArgs[1] = "-listen=" + h.backendAddr
	if h.backend, err = h.kids.Start("echo", h.loadCPU, filepath.Join(h.tmp, "echo.log"), backendArgs...); err != nil {
		return err
	}
	if err := waitReady(ctx, h.backend, h.backendAddr, wsPath, 10*time.Second); err != nil {
		return err
	}
	if err := h.backend.Refresh(); err != nil {
		return err
	}

	// 3-4. Every repetition starts each target fresh and runs the loads.
	ls := loads(quick)
	res := &Results{
		Settings: Settings{
			Command: cmd, Reps: reps, Quick: quick, ProxyCPU: h.proxyCPU, LoadCPU: h.loadCPU,
			Targets: targets, Loads: ls,
			Backend: strings.Join(append([]string{filepath.Base(echoBin)}, backendArgs[2:]...), " "),
		},
		Configs: map[string]string{},
	}
	seq := 0
	for rep := 1; rep <= reps; rep++ {
		for _, t := range rotate(targets, rep-1) {
			seq++
			ms, cfg, logs, err := h.runTarget(ctx, rep, reps, t, seq, ls)
			res.Measures = append(res.Measures, ms...)
			if cfg != "" && res.Configs[t] == "" {
				res.Configs[t] = cfg
			}
			if logs != "" {
				res.TargetLogs = append(res.TargetLogs, TargetLog{Rep: rep, Target: t, Text: logs})
				fmt.Fprintf(h.log, "  %s wrote to its logs: %s\n", t, oneLine(firstLineOf(logs)))
			}
			if err != nil {
				return err
			}
		}
	}

	// 5. Aggregate.
	addOverDirect(res.Measures)
	conditionKeys(res.Measures)
	res.Summary = aggregate(res.Measures, figureLoads())
	h.env.LoadEnd = harness.LoadAvg()
	res.Environment = h.env
	res.TotalS = time.Since(began).Seconds()

	// 6. Output.
	figs := figures(ls)
	if err := writeOutputs(outDir, res, figs); err != nil {
		return err
	}
	printSummary(stdout, res, figs)
	fmt.Fprintf(stdout, "\nwrote %s (section between the bench-compare markers), %s/bench/*.svg and results.json\n", filepath.Join(outDir, "BENCHMARKS.md"), outDir)
	fmt.Fprintf(stdout, "load average at start %s, at end %s; total time %s\n", h.env.LoadStart, h.env.LoadEnd, time.Since(began).Round(time.Second))
	if h.startFailures > 0 {
		return fmt.Errorf("%d target start(s) failed; the report lists them as flagged", h.startFailures)
	}
	return nil
}

// runTarget starts one target, runs every load against it, and stops it.
// A load that fails is recorded as flagged and the next one runs; only a
// target that will not start, a dead backend, or an interrupt end the run.
func (h *runner) runTarget(ctx context.Context, rep, reps int, t string, seq int, ls []load) (ms []Measure, cfg, logs string, err error) {
	if h.backend.Exited() {
		return nil, "", "", fmt.Errorf("the echo backend exited: %v%s", h.backend.WaitErr(), h.backend.LogTail())
	}
	r, err := h.startTarget(ctx, t, seq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", "", ctx.Err()
		}
		// Record the failure against every load of this repetition and
		// go on: the report shows it, and the other targets still run.
		fmt.Fprintf(h.log, "rep %d/%d  %-14s did not start: %v\n", rep, reps, t, err)
		h.startFailures++
		for _, l := range ls {
			if l.Name == loadIdle && t == targetDirect {
				continue
			}
			ms = append(ms, Measure{Rep: rep, Target: t, Load: l.Name, Error: err.Error(), Flag: "target did not start", Figures: map[string]float64{}})
		}
		return ms, "", "", nil
	}
	defer func() { logs = h.stopTarget(r) }()
	cfg = r.config
	for i, l := range ls {
		if l.Name == loadIdle && t == targetDirect {
			continue // no proxy, no memory to measure
		}
		if i > 0 {
			// Let TIME_WAIT sockets and CPU frequency settle.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		if err := ctx.Err(); err != nil {
			return ms, cfg, "", err
		}
		m := h.runLoad(ctx, rep, r, l)
		ms = append(ms, m)
		fmt.Fprintf(h.log, "rep %d/%d  %-14s %-9s  %s\n", rep, reps, t, l.Name, keyFigure(m))
		if err := ctx.Err(); err != nil {
			return ms, cfg, "", err
		}
	}
	return ms, cfg, "", nil
}

// printSummary prints one line per figure with every target's median.
func printSummary(w io.Writer, r *Results, figs []figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "figure (median)\t")
	for _, t := range r.Settings.Targets {
		fmt.Fprintf(tw, "%s\t", t)
	}
	fmt.Fprintln(tw)
	for _, f := range figs {
		sum := r.Summary[f.Key]
		if len(sum) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s [%s]\t", f.Key, f.Unit)
		for _, t := range r.Settings.Targets {
			s, ok := sum[t]
			switch {
			case !ok:
				fmt.Fprintf(tw, "\t")
			case s.N == 0:
				fmt.Fprintf(tw, "flagged\t")
			default:
				fmt.Fprintf(tw, "%s\t", fmtNum(s.Median, f.Prec))
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

// rerender rewrites the report and charts from a previous run's
// results.json. The loads' options are not in the JSON (bench.Options
// holds a func); they are taken again from loads, by name.
func rerender(dir string) error {
	path := filepath.Join(dir, "bench", "results.json")
	js, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(js, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ls := loads(r.Settings.Quick)
	for i, l := range r.Settings.Loads {
		r.Settings.Loads[i] = loadByName(ls, l.Name)
	}
	return writeOutputs(dir, &r, figures(ls))
}
