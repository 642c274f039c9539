// Command bench-http measures sluice side by side with nginx on plain
// HTTP: a 1 KiB static file and a GET proxied to a backend, in requests
// per second and in the proxy's CPU time per request. It writes the
// results into docs/BENCHMARKS.md (between the bench-http markers) and
// docs/bench/http-results.json. `make bench-http` builds and runs it.
//
// Every process runs pinned with taskset: the target (nginx or sluice,
// one worker) alone on -proxy-cpu; wrk, the backend and this harness on
// -load-cpu. The target is started afresh for every measurement, warmed
// up, then loaded by wrk while the harness reads its process tree's CPU
// time from /proc right before and right after.
//
//	go build -o bin/bench-http ./bench/httpcompare
//	taskset -c 1 bin/bench-http -sluice bin/sluice -out docs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
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

// options are the parsed flags.
type options struct {
	sluice, nginx, wrk string
	reps               int
	duration, warmup   time.Duration
	conns              int
	proxyCPU, loadCPU  int
	out                string
	quick              bool
	targets            []string
	highLoad           float64
}

// runner is the state of one run.
type runner struct {
	opt         options
	tmp         string
	root        string // the document root
	ports       harness.Ports
	kids        harness.Children
	backend     *harness.Child
	backendAddr string
	nginxTemp   []string
	ticks       float64 // CLK_TCK
	configs     map[string]string
	seq         int // target starts so far, for directory names
	log         io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench-http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.sluice, "sluice", "bin/sluice", "sluice `binary`")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx `binary` (target and backend)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk `binary`")
	fs.IntVar(&o.reps, "reps", 3, "repetitions of every target and load")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured wrk run per target and load (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured wrk run before each measurement")
	fs.IntVar(&o.conns, "conns", 64, "wrk connections (-c)")
	fs.IntVar(&o.proxyCPU, "proxy-cpu", 0, "CPU the target is pinned to, alone")
	fs.IntVar(&o.loadCPU, "load-cpu", 1, "CPU wrk and the backend are pinned to")
	fs.StringVar(&o.out, "out", "docs", "`dir`ectory for BENCHMARKS.md (the section between the bench-http markers) and bench/http-results.json")
	fs.BoolVar(&o.quick, "quick", false, "one repetition of 3 s, to try the harness (explicit -reps or -duration win)")
	only := fs.String("only", "", "one target only: nginx or sluice")
	fs.Float64Var(&o.highLoad, "high-load", 2.5, "flag measurements taken with the one-minute load average above this")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench-http [flags]\n\nRuns sluice and nginx side by side on plain HTTP; see docs/BENCHMARKS.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["reps"] {
			o.reps = 1
		}
		if !set["duration"] {
			o.duration = 3 * time.Second
		}
	}
	var err error
	o.targets, err = pickTargets(*only)
	switch {
	case err != nil:
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.reps < 1:
		err = errors.New("-reps must be at least 1")
	case o.duration < time.Second || o.warmup < 0:
		err = errors.New("-duration must be at least 1s and -warmup not negative")
	case o.conns < 1:
		err = errors.New("-conns must be at least 1")
	case o.proxyCPU == o.loadCPU:
		err = errors.New("-proxy-cpu and -load-cpu must differ: the point is a CPU for the target alone")
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-http: %v\n", err)
		return 2
	}
	h := &runner{opt: o, ports: harness.Ports{Next: 23000}, log: stderr, configs: map[string]string{}}
	ctx, stop := h.kids.NotifyContext(h.log, "bench-http")
	defer stop()
	defer h.kids.StopAll()
	cmd := "bench-http " + strings.Join(args, " ")
	if err := h.runAll(ctx, strings.TrimSpace(cmd), stdout); err != nil {
		fmt.Fprintf(stderr, "bench-http: %v\n", err)
		return 1
	}
	return 0
}

// pickTargets parses -only.
func pickTargets(only string) ([]string, error) {
	only = strings.TrimSpace(only)
	if only == "" {
		return slices.Clone(allTargets), nil
	}
	if !slices.Contains(allTargets, only) {
		return nil, fmt.Errorf("-only: unknown target %q (targets: %s)", only, strings.Join(allTargets, ", "))
	}
	return []string{only}, nil
}

// rotate returns ts starting at index k mod len(ts).
func rotate(ts []string, k int) []string {
	k %= len(ts)
	return append(slices.Clone(ts[k:]), ts[:k]...)
}

func (h *runner) runAll(ctx context.Context, cmd string, stdout io.Writer) error {
	began := time.Now()
	o := &h.opt
	// 1. Preflight: binaries, a scratch directory, the document root.
	var err error
	if o.nginx, err = findTool(o.nginx); err != nil {
		return err
	}
	if o.wrk, err = findTool(o.wrk); err != nil {
		return err
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("taskset not found (util-linux): %w", err)
	}
	sluiceBin := ""
	if slices.Contains(o.targets, targetSluice) {
		if sluiceBin, err = filepath.Abs(o.sluice); err != nil {
			return err
		}
		if _, err := os.Stat(sluiceBin); err != nil {
			return fmt.Errorf("sluice binary: %w (build it: go build -o bin/sluice ./cmd/sluice, or run `make bench-http`)", err)
		}
		o.sluice = sluiceBin
	}
	if h.tmp, err = os.MkdirTemp("", "bench-http-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.tmp)
	if err := os.Chmod(h.tmp, 0o755); err != nil {
		return err
	}
	h.root = filepath.Join(h.tmp, "root")
	if err := writeDocRoot(h.root); err != nil {
		return err
	}
	h.nginxTemp = harness.NginxTempPaths(harness.CombinedOutput(o.nginx, "-V"))
	h.ticks = harness.ClockTicks()
	env := environment(o.nginx, o.wrk, sluiceBin)

	// 2. The backend, for the whole run.
	if err := h.startBackend(ctx); err != nil {
		return err
	}
	defer h.kids.Stop(h.backend)

	// 3. The measurements, targets rotated per repetition.
	res := &Results{Environment: env, Configs: h.configs}
	res.Settings = Settings{
		Command: cmd, Reps: o.reps, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		Conns: o.conns, Quick: o.quick, ProxyCPU: o.proxyCPU, LoadCPU: o.loadCPU, Targets: o.targets,
		HighLoad: o.highLoad, StaticBytes: len(smallText()),
		WrkCommand: strings.Join(wrkArgs("wrk", o.loadCPU, o.conns, o.duration, "URL"), " "),
	}
	total := o.reps * len(o.targets) * len(allLoads)
	done := 0
	for rep := 1; rep <= o.reps; rep++ {
		order := 0
		for _, t := range rotate(o.targets, rep-1) {
			for _, load := range allLoads {
				if err := ctx.Err(); err != nil {
					return err
				}
				order++
				done++
				fmt.Fprintf(h.log, "[%d/%d] rep %d, %s, %s: ", done, total, rep, t, load)
				m := h.measure(ctx, rep, order, t, load)
				fmt.Fprintln(h.log, progressLine(m))
				res.Measures = append(res.Measures, m)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// 4. Report.
	res.Environment.LoadEnd = harness.LoadAvg()
	res.Summary = aggregate(res.Measures)
	res.TotalS = time.Since(began).Seconds()
	if err := writeOutputs(o.out, res); err != nil {
		return err
	}
	printSummary(stdout, res)
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(o.out, "BENCHMARKS.md"), filepath.Join(o.out, "bench", "http-results.json"))
	// The report is written either way; the exit status tells make (and
	// whoever runs it) that some measurements have no numbers.
	failed := 0
	for _, m := range res.Measures {
		if m.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d measurements failed; see \"Failed runs\" in the report", failed, len(res.Measures))
	}
	return nil
}

// progressLine is one measurement in a line for the terminal.
func progressLine(m Measure) string {
	if m.Error != "" {
		first, _, _ := strings.Cut(m.Error, "\n")
		return "FAILED: " + first
	}
	s := fmt.Sprintf("%s req/s, %s µs CPU/req, %s req/CPU-s, p99 %s µs, load %s",
		fmtNum(m.Wrk.ReqPerSec, 0), fmtNum(m.CPUUsPerReq, 2), fmtNum(m.ReqPerCPUS, 0), fmtNum(m.Wrk.P99Us, 0), fmtNum(m.LoadAfter, 2))
	s += fmt.Sprintf(", other use of the target CPU %s %%", fmtNum(m.ProxyCPUOtherPct, 0))
	if m.Excluded != "" {
		s += "; EXCLUDED: " + m.Excluded
	}
	return s
}

// startBackend starts the nginx behind /api/ on the load CPU and waits
// until it answers.
func (h *runner) startBackend(ctx context.Context) error {
	port, err := h.ports.Take()
	if err != nil {
		return err
	}
	dir := filepath.Join(h.tmp, "backend")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	h.backendAddr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg := backendConfig(dir, port, os.Geteuid() == 0, h.nginxTemp)
	h.configs["backend"] = strings.ReplaceAll(cfg, dir, "PREFIX")
	file := filepath.Join(dir, "nginx.conf")
	c, err := h.startChecked(ctx, "backend", h.opt.loadCPU, dir, file, cfg,
		[]string{h.opt.nginx, "-t", "-q", "-p", dir, "-c", file},
		[]string{h.opt.nginx, "-p", dir, "-c", file})
	if err != nil {
		return err
	}
	h.backend = c
	if err := waitHTTP(ctx, c, "http://"+h.backendAddr+"/", []byte(backendBody), 10*time.Second); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	return c.Refresh()
}

// startChecked writes cfg to file, has the program check it, and starts
// argv pinned to cpu with its output in dir/output.log.
func (h *runner) startChecked(ctx context.Context, name string, cpu int, dir, file, cfg string, check, argv []string) (*harness.Child, error) {
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, check[0], check[1:]...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s rejects its generated config %s: %v\n%s", name, file, err, out)
	}
	return h.kids.Start(name, cpu, filepath.Join(dir, "output.log"), argv...)
}

// startTarget starts a fresh target on the proxy CPU and waits until the
// load's URL answers with the expected bytes.
func (h *runner) startTarget(ctx context.Context, target, load string) (*harness.Child, string, error) {
	port, err := h.ports.Take()
	if err != nil {
		return nil, "", err
	}
	h.seq++
	dir := filepath.Join(h.tmp, fmt.Sprintf("%s-%d", target, h.seq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	var cfg, file string
	var check, argv []string
	switch target {
	case targetNginx:
		file = filepath.Join(dir, "nginx.conf")
		cfg = nginxConfig(dir, port, h.root, h.backendAddr, os.Geteuid() == 0, h.nginxTemp)
		check = []string{h.opt.nginx, "-t", "-q", "-p", dir, "-c", file}
		argv = []string{h.opt.nginx, "-p", dir, "-c", file}
	case targetSluice:
		file = filepath.Join(dir, "sluice.toml")
		cfg = sluiceConfig(port, h.root, h.backendAddr)
		check = []string{h.opt.sluice, "check", "-c", file}
		argv = []string{h.opt.sluice, "--config", file}
	default:
		return nil, "", fmt.Errorf("unknown target %q", target)
	}
	if _, ok := h.configs[target]; !ok {
		h.configs[target] = strings.NewReplacer(dir, "PREFIX", h.root, "ROOT").Replace(cfg)
	}
	c, err := h.startChecked(ctx, target, h.opt.proxyCPU, dir, file, cfg, check, argv)
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, loadPath(load))
	want := smallText()
	if load == loadProxy {
		want = []byte(backendBody)
	}
	if err := waitHTTP(ctx, c, url, want, 10*time.Second); err != nil {
		h.kids.Stop(c)
		return nil, "", fmt.Errorf("%s: %w%s", target, err, c.LogTail())
	}
	return c, url, nil
}

// measure is one measurement: a fresh target, a warm-up, then the wrk run
// with the CPU counters read at its edges. It never fails: a failure is
// recorded in Measure.Error and the run goes on with the next one.
func (h *runner) measure(ctx context.Context, rep, order int, target, load string) (m Measure) {
	m = Measure{Rep: rep, Order: order, Target: target, Load: load}
	fail := func(err error) Measure { m.Error = err.Error(); return m }
	c, url, err := h.startTarget(ctx, target, load)
	if err != nil {
		return fail(err)
	}
	defer func() {
		h.kids.Stop(c)
		m.Log = c.Logs()
	}()
	m.URL = url
	if h.opt.warmup > 0 {
		if _, err := runWrk(ctx, wrkArgs(h.opt.wrk, h.opt.loadCPU, h.opt.conns, h.opt.warmup, url), h.opt.warmup); err != nil {
			return fail(fmt.Errorf("warm-up: %w", err))
		}
	}
	// The tree is read after the warm-up: a process born by then is in it.
	if err := c.Refresh(); err != nil {
		return fail(err)
	}
	if err := h.backend.Refresh(); err != nil {
		return fail(fmt.Errorf("backend: %w", err))
	}
	procs, bprocs := c.Procs(), h.backend.Procs()

	m.LoadBefore = loadAvg1()
	cpu0, err0 := harness.ReadCPU(h.opt.proxyCPU)
	b0, _ := harness.CPUTicks(bprocs)
	t0 := time.Now()
	p0, _ := harness.CPUTicks(procs)

	out, werr := runWrk(ctx, wrkArgs(h.opt.wrk, h.opt.loadCPU, h.opt.conns, h.opt.duration, url), h.opt.duration)

	p1, alive := harness.CPUTicks(procs)
	wall := time.Since(t0)
	b1, _ := harness.CPUTicks(bprocs)
	cpu1, err1 := harness.ReadCPU(h.opt.proxyCPU)
	m.LoadAfter = loadAvg1()

	m.WrkOutput = out
	if werr != nil {
		return fail(werr)
	}
	r, err := parseWrk(out)
	if err != nil {
		return fail(err)
	}
	m.Wrk = &r
	m.WallS = wall.Seconds()
	m.ProxyProcs = len(procs)
	m.LostProcess = alive < len(procs)
	m.ProxyCPUS = float64(p1-p0) / h.ticks
	if r.Requests > 0 {
		m.CPUUsPerReq = m.ProxyCPUS * 1e6 / float64(r.Requests)
		if m.ProxyCPUS > 0 {
			m.ReqPerCPUS = float64(r.Requests) / m.ProxyCPUS
		}
	}
	if load == loadProxy {
		m.BackendCPUS = float64(b1-b0) / h.ticks
		if r.Requests > 0 {
			m.BackendCPUUsPerReq = m.BackendCPUS * 1e6 / float64(r.Requests)
		}
	}
	if err0 == nil && err1 == nil && cpu1.Total > cpu0.Total {
		other := float64(cpu1.Busy-cpu0.Busy) - float64(p1-p0)
		m.ProxyCPUOtherPct = max(0, other) * 100 / float64(cpu1.Total-cpu0.Total)
	}
	m.HighLoad = m.LoadBefore > h.opt.highLoad || m.LoadAfter > h.opt.highLoad
	m.BusyNeighbour = m.ProxyCPUOtherPct > busyNeighbourPct
	m.Excluded = exclusion(r, m.LostProcess, p1-p0)
	return m
}

// printSummary writes the medians to the terminal.
func printSummary(w io.Writer, r *Results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\ttarget\treq/s\tCPU µs/req\treq/CPU-s\tp50 µs\tp99 µs\tvalid runs\t")
	for _, load := range allLoads {
		for _, t := range r.Settings.Targets {
			f := r.Summary[load][t]
			n, of := 0, 0
			if s, ok := f[figReqPerS]; ok {
				n, of = s.N, s.Of
			} else {
				for _, m := range r.Measures {
					if m.Load == load && m.Target == t {
						of++
					}
				}
			}
			med := func(k string, prec int) string {
				if s, ok := f[k]; ok {
					return fmtNum(s.Median, prec)
				}
				return "–"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\t\n", load, t,
				med(figReqPerS, 0), med(figCPUUsPerReq, 2), med(figReqPerCPUS, 0), med(figP50, 0), med(figP99, 0), n, of)
		}
		if len(r.Settings.Targets) == 2 {
			fmt.Fprintf(tw, "%s\tsluice/nginx\t%s\t%s\t%s\t\t\t\t\n", load,
				fmtRatio(ratio(r.Summary[load][targetSluice][figReqPerS], r.Summary[load][targetNginx][figReqPerS])),
				fmtRatio(ratio(r.Summary[load][targetSluice][figCPUUsPerReq], r.Summary[load][targetNginx][figCPUUsPerReq])),
				fmtRatio(ratio(r.Summary[load][targetSluice][figReqPerCPUS], r.Summary[load][targetNginx][figReqPerCPUS])))
		}
	}
	_ = tw.Flush()
}
