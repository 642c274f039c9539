package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// findTool resolves a -nginx or -wrk flag: a path is taken as is, a bare
// name is looked up in PATH, then in /usr/sbin and /sbin, which a
// non-login root shell or `make` may not have in PATH.
func findTool(name string) (string, error) {
	if strings.ContainsRune(name, '/') {
		if st, err := os.Stat(name); err != nil || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return filepath.Abs(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin: `make bench-http` installs it "+
		"(apt-get install wrk nginx-light)", name)
}

// clockTicks is CLK_TCK, the unit of /proc/PID/stat's CPU times. Go has no
// sysconf; getconf asks the C library once, and 100 is what Linux has
// reported to user space on every architecture for decades (USER_HZ).
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
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

// firstLine returns the first non-empty line of a command's stdout and
// stderr together (nginx -v writes to stderr), "" if it cannot run.
func firstLine(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	for line := range strings.Lines(string(out)) {
		if s := strings.TrimSpace(line); s != "" {
			return s
		}
	}
	return ""
}

// wrkVersion is the first line of `wrk -v`, without the copyright.
// wrk -v prints its usage after the version and exits 1.
func wrkVersion(wrk string) string {
	v := firstLine(wrk, "-v")
	if i := strings.Index(v, " Copyright"); i > 0 {
		v = v[:i]
	}
	return v
}

// loadAvg returns the three load averages from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// loadAvg1 is the one-minute load average, -1 when unreadable.
func loadAvg1() float64 {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// procField returns the value of the first "key: value" line of a /proc
// text file (cpuinfo's "model name", meminfo's "MemTotal").
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// affinity is this process's allowed CPUs, from /proc/self/status.
func affinity() string {
	return procField("/proc/self/status", "Cpus_allowed_list")
}

// environment records the machine and the versions of what will run.
func environment(nginx, wrk, sluice string) Environment {
	e := Environment{
		Date:        time.Now().UTC().Format(time.RFC3339),
		CPUModel:    procField("/proc/cpuinfo", "model name"),
		MemTotal:    procField("/proc/meminfo", "MemTotal"),
		Go:          runtime.Version(),
		LoadStart:   loadAvg(),
		ClockTicks:  clockTicks(),
		Nginx:       firstLine(nginx, "-v"),
		Wrk:         wrkVersion(wrk),
		HarnessCPUs: affinity(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUs = bytes.Count(b, []byte("\nprocessor\t")) + 1
	}
	if sluice != "" {
		e.Sluice = firstLine(sluice, "version")
	}
	return e
}
