package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/bench/harness"
)

// The loads, run in this order against each freshly started target: idle
// first, while the proxy's memory is still that of a new process.
const (
	loadIdle      = "idle"
	loadRate128   = "rate128"
	loadRate16k   = "rate16k"
	loadHandshake = "handshake"
	loadBulk      = "bulk"
)

// load is one bench.Run configuration (URL left empty).
type load struct {
	Name string        `json:"name"`
	Opts bench.Options `json:"-"`
	// Settings is Opts as the report shows them; Options as
	// results.json does (bench.Options holds a func, which JSON cannot).
	Settings string   `json:"settings"`
	Options  loadOpts `json:"options"`
}

// loadOpts is the JSON view of a load's bench.Options.
type loadOpts struct {
	Mode     bench.Mode `json:"mode"`
	Conns    int        `json:"conns"`
	Rate     float64    `json:"rate,omitempty"`
	Payload  int        `json:"payload"`
	Warmup   float64    `json:"warmup_s,omitempty"`
	Duration float64    `json:"duration_s"`
}

// loads returns the five loads; quick shrinks them for trying the harness
// (about a second each, 1,000 idle tunnels).
func loads(quick bool) []load {
	warm, dur, hold, idle := 2*time.Second, 5*time.Second, 3*time.Second, 9000
	hsWarm := time.Second
	if quick {
		warm, dur, hold, idle, hsWarm = 500*time.Millisecond, time.Second, time.Second, 1000, 500*time.Millisecond
	}
	ls := []load{
		{Name: loadIdle, Opts: bench.Options{Mode: bench.ModeIdle, Conns: idle, Payload: 16, Duration: hold}},
		{Name: loadRate128, Opts: bench.Options{Mode: bench.ModeRate, Conns: 1000, Rate: 20000, Payload: 128, Warmup: warm, Duration: dur}},
		{Name: loadRate16k, Opts: bench.Options{Mode: bench.ModeRate, Conns: 1000, Rate: 2000, Payload: 16384, Warmup: warm, Duration: dur}},
		{Name: loadHandshake, Opts: bench.Options{Mode: bench.ModeHandshake, Conns: 16, Payload: 16, Warmup: hsWarm, Duration: dur}},
		{Name: loadBulk, Opts: bench.Options{Mode: bench.ModeBulk, Conns: 4, Payload: 1 << 20, Warmup: hsWarm, Duration: dur}},
	}
	for i := range ls {
		o := ls[i].Opts
		ls[i].Settings = describe(o)
		ls[i].Options = loadOpts{o.Mode, o.Conns, o.Rate, o.Payload, o.Warmup.Seconds(), o.Duration.Seconds()}
	}
	return ls
}

// describe renders options the way the report's load table shows them.
func describe(o bench.Options) string {
	var p []string
	p = append(p, "mode "+string(o.Mode), fmt.Sprintf("%s conns", fmtNum(float64(o.Conns), 0)))
	if o.Rate > 0 {
		p = append(p, fmt.Sprintf("%s msg/s in total", fmtNum(o.Rate, 0)))
	}
	p = append(p, "payload "+fmtBytes(o.Payload))
	if o.Warmup > 0 {
		p = append(p, "warm-up "+o.Warmup.String())
	}
	if o.Mode == bench.ModeIdle {
		p = append(p, "held "+o.Duration.String())
	} else {
		p = append(p, "measured "+o.Duration.String())
	}
	return strings.Join(p, ", ")
}

func fmtBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Measure is one load against one target in one repetition: the load
// generator's result, what the harness read from /proc around the
// measured window, and the figures derived from both.
type Measure struct {
	Rep    int           `json:"rep"`
	Target string        `json:"target"`
	Load   string        `json:"load"`
	Result *bench.Result `json:"result,omitempty"`
	Error  string        `json:"error,omitempty"`
	// Flag says why this measure is left out of the medians ("" = it is
	// not): an error, errors counted by the load, nothing echoed.
	Flag string `json:"flag,omitempty"`

	// Window is the wall time between OnMeasure(true) and (false).
	Window float64 `json:"window_s"`
	// CPU seconds spent in the window by the target's processes (0 for
	// direct), the backend, and the harness itself (the load generator).
	ProxyCPU   float64 `json:"proxy_cpu_s"`
	BackendCPU float64 `json:"backend_cpu_s"`
	LoadCPU    float64 `json:"loadgen_cpu_s"`
	// Processes is how many processes the target had (nginx: 2).
	Processes int `json:"processes"`
	// PSS of the target's processes before the load and while the idle
	// tunnels were held (idle load only), KiB.
	PSSBefore int64 `json:"pss_before_kib,omitempty"`
	PSSHeld   int64 `json:"pss_held_kib,omitempty"`

	// Figures are this measure's values, by figure key (see figures).
	Figures map[string]float64 `json:"figures"`
}

// snapshot is the state read at each end of a measured window.
type snapshot struct {
	wall           time.Time
	proxy, backend uint64 // ticks
	self           time.Duration
	pss            int64
	pssErr         error
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runLoad runs one load against r and returns its Measure. CPU is read
// inside OnMeasure, which the load generator calls synchronously at the
// window's edges, so the reads bracket exactly the measured traffic.
func (h *runner) runLoad(ctx context.Context, rep int, r *running, l load) Measure {
	m := Measure{Rep: rep, Target: r.name, Load: l.Name, Figures: map[string]float64{}}
	if r.child != nil {
		if err := r.child.Refresh(); err != nil {
			m.Error, m.Flag = err.Error(), "target not running"
			return m
		}
	}
	procs := r.procs()
	m.Processes = len(procs)
	backend := h.backend.Procs()
	idle := l.Opts.Mode == bench.ModeIdle
	if idle && procs != nil {
		v, err := harness.PSSKiB(procs)
		if err != nil {
			m.Error, m.Flag = "PSS before: "+err.Error(), "no PSS"
			return m
		}
		m.PSSBefore = v
	}

	var (
		mu         sync.Mutex
		begin, end snapshot
		began      bool
		ended      bool
	)
	take := func(held bool) snapshot {
		wall := time.Now()
		proxy, _ := harness.CPUTicks(procs)
		back, _ := harness.CPUTicks(backend)
		s := snapshot{wall: wall, proxy: proxy, backend: back, self: selfCPU()}
		if held && procs != nil {
			s.pss, s.pssErr = harness.PSSKiB(procs)
		}
		return s
	}
	opts := l.Opts
	opts.URL = "ws://" + r.addr + wsPath
	opts.OnMeasure = func(b bool) {
		mu.Lock()
		defer mu.Unlock()
		if b {
			begin, began = take(idle), true
		} else {
			end, ended = take(false), true
		}
	}
	res, err := runBench(ctx, opts)
	m.Result = res
	if err != nil {
		m.Error = err.Error()
	}
	mu.Lock()
	defer mu.Unlock()
	if !began || !ended {
		if m.Error == "" {
			m.Error = "the load generator never opened or closed its measured window"
		}
		m.Flag = "no measured window"
		return m
	}
	tick := h.env.ClockTicks
	m.Window = end.wall.Sub(begin.wall).Seconds()
	m.ProxyCPU = float64(end.proxy-begin.proxy) / tick
	m.BackendCPU = float64(end.backend-begin.backend) / tick
	m.LoadCPU = (end.self - begin.self).Seconds()
	if idle {
		m.PSSHeld = begin.pss
		if begin.pssErr != nil {
			m.Error = "PSS held: " + begin.pssErr.Error()
		}
	}
	m.Flag = flagOf(m, res)
	m.Figures = figuresOf(m, res, l.Opts, procs != nil)
	return m
}

// flagOf says what is wrong with a measure, "" if nothing.
func flagOf(m Measure, res *bench.Result) string {
	if m.Error != "" {
		return "error: " + m.Error
	}
	if res == nil {
		return "no result"
	}
	var errs []string
	for _, k := range sortedKeys(res.Errors) {
		if n := res.Errors[k]; n > 0 {
			errs = append(errs, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(errs) > 0 {
		return "load errors: " + strings.Join(errs, ", ")
	}
	if res.Mode == bench.ModeIdle {
		if res.Open == 0 {
			return "no tunnel opened"
		}
		if res.Alive < res.Open {
			return fmt.Sprintf("%d of %d tunnels died while held", res.Open-res.Alive, res.Open)
		}
		return ""
	}
	if res.Echoed == 0 {
		return "nothing echoed"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// figuresOf derives the per-measure figures. proxied is false for direct,
// which has no proxy process: its CPU and memory figures do not exist
// (rather than being zero).
func figuresOf(m Measure, res *bench.Result, o bench.Options, proxied bool) map[string]float64 {
	f := map[string]float64{}
	if res == nil || m.Window <= 0 {
		return f
	}
	f[figBackendPct] = 100 * m.BackendCPU / m.Window
	f[figLoadPct] = 100 * m.LoadCPU / m.Window
	switch m.Load {
	case loadIdle:
		if proxied && res.Open > 0 && m.PSSHeld > 0 {
			f[figIdleKiB] = float64(m.PSSHeld-m.PSSBefore) / float64(res.Open)
		}
		if proxied {
			f[figProxyPct] = 100 * m.ProxyCPU / m.Window
		}
		return f
	case loadRate128, loadRate16k:
		sfx := "_" + strings.TrimPrefix(m.Load, "rate")
		f[figAchieved+sfx] = res.MsgsPerSec
		f[figP50+sfx] = res.Latency.P50
		f[figP99+sfx] = res.Latency.P99
		if proxied && res.Echoed > 0 {
			f[figCPURT+sfx] = m.ProxyCPU * 1e6 / float64(res.Echoed)
		}
	case loadHandshake:
		f[figHSRate] = res.HandshakesPerSec
		if proxied && res.Handshakes > 0 {
			f[figCPUHS] = m.ProxyCPU * 1e6 / float64(res.Handshakes)
		}
	case loadBulk:
		f[figMBs] = res.MBPerSec
		// Every echoed byte crosses the proxy twice, up to the backend
		// and back down, so the bytes relayed are twice the echoed ones.
		relayedGB := 2 * float64(res.Echoed) * float64(o.Payload) / 1e9
		if proxied && relayedGB > 0 {
			f[figCPUGB] = m.ProxyCPU / relayedGB
		}
	}
	if proxied {
		f[figProxyPct] = 100 * m.ProxyCPU / m.Window
	}
	return f
}

// addOverDirect adds the latency-added figures: a target's p50 and p99
// minus direct's in the same repetition (the same backend and load
// generator, minutes apart at most). Nothing is added when direct's
// measure is missing or flagged.
func addOverDirect(ms []Measure) {
	type key struct {
		rep  int
		load string
	}
	direct := map[key]Measure{}
	for _, m := range ms {
		if m.Target == targetDirect && m.Flag == "" {
			direct[key{m.Rep, m.Load}] = m
		}
	}
	for i := range ms {
		m := &ms[i]
		d, ok := direct[key{m.Rep, m.Load}]
		if !ok || m.Target == targetDirect || m.Flag != "" {
			continue
		}
		for _, sfx := range []string{"_128", "_16k"} {
			for _, p := range [][2]string{{figP50, figAddP50}, {figP99, figAddP99}} {
				tv, ok1 := m.Figures[p[0]+sfx]
				dv, ok2 := d.Figures[p[0]+sfx]
				if ok1 && ok2 {
					m.Figures[p[1]+sfx] = tv - dv
				}
			}
		}
	}
}

// keyFigure is the one-line summary of a measure for the progress line.
func keyFigure(m Measure) string {
	if m.Flag != "" {
		return "FLAGGED: " + m.Flag
	}
	f := m.Figures
	var s []string
	add := func(k, format string) {
		if v, ok := f[k]; ok {
			s = append(s, fmt.Sprintf(format, v))
		}
	}
	switch m.Load {
	case loadIdle:
		add(figIdleKiB, "%.2f KiB/tunnel")
		if m.Result != nil {
			s = append(s, fmt.Sprintf("%d tunnels", m.Result.Open))
		}
	case loadRate128, loadRate16k:
		sfx := "_" + strings.TrimPrefix(m.Load, "rate")
		add(figCPURT+sfx, "%.1f µs CPU/rt")
		add(figAchieved+sfx, "%.0f msg/s")
		add(figP50+sfx, "p50 %.0f µs")
		add(figP99+sfx, "p99 %.0f µs")
	case loadHandshake:
		add(figHSRate, "%.0f hs/s")
		add(figCPUHS, "%.1f µs CPU/hs")
	case loadBulk:
		add(figMBs, "%.0f MB/s")
		add(figCPUGB, "%.2f CPU s/GB")
	}
	add(figProxyPct, "proxy %.0f%%")
	add(figBackendPct, "backend %.0f%%")
	add(figLoadPct, "loadgen %.0f%%")
	return strings.Join(s, "  ")
}

// runBench is the load generator, a variable so that tests could replace
// it; the harness calls it for every load.
var runBench = bench.Run
