package main

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// findTool resolves a -nginx or -wrk flag: a path is taken as is, a bare
// name is looked up in PATH and the sbin directories.
func findTool(name string) (string, error) {
	return harness.FindTool(name, "`make bench-http` installs it (apt-get install wrk nginx-light)")
}

// Environment is the machine and the software a run measured.
type Environment struct {
	Date        string  `json:"date"`
	Kernel      string  `json:"kernel"`
	CPUModel    string  `json:"cpu_model"`
	CPUs        int     `json:"cpus"`
	MemTotal    string  `json:"mem_total"`
	Nginx       string  `json:"nginx"`
	Wrk         string  `json:"wrk"`
	Sluice      string  `json:"sluice,omitempty"`
	Go          string  `json:"go"`
	LoadStart   string  `json:"loadavg_start"`
	LoadEnd     string  `json:"loadavg_end"`
	ClockTicks  float64 `json:"clk_tck"`
	HarnessCPUs string  `json:"harness_affinity"`
}

// wrkVersion is the first line of `wrk -v`, without the copyright.
// wrk -v prints its usage after the version and exits 1.
func wrkVersion(wrk string) string {
	v := harness.FirstLine(wrk, "-v")
	if i := strings.Index(v, " Copyright"); i > 0 {
		v = v[:i]
	}
	return v
}

// loadAvg1 is the one-minute load average, -1 when unreadable.
func loadAvg1() float64 {
	f := strings.Fields(harness.LoadAvg())
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// affinity is this process's allowed CPUs, from /proc/self/status.
func affinity() string {
	return harness.ProcField("/proc/self/status", "Cpus_allowed_list")
}

// environment records the machine and the versions of what will run.
func environment(nginx, wrk, sluice string) Environment {
	e := Environment{
		Date:        time.Now().UTC().Format(time.RFC3339),
		Kernel:      harness.KernelRelease(),
		CPUModel:    harness.ProcField("/proc/cpuinfo", "model name"),
		MemTotal:    harness.ProcField("/proc/meminfo", "MemTotal"),
		Go:          runtime.Version(),
		LoadStart:   harness.LoadAvg(),
		ClockTicks:  harness.ClockTicks(),
		Nginx:       harness.FirstLine(nginx, "-v"),
		Wrk:         wrkVersion(wrk),
		HarnessCPUs: affinity(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUs = bytes.Count(b, []byte("\nprocessor\t")) + 1
	}
	if sluice != "" {
		e.Sluice = harness.FirstLine(sluice, "version")
	}
	return e
}
