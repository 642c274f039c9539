package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
	"golang.org/x/sys/unix"
)

// tools are the binaries a run uses, as absolute paths.
type tools struct {
	nginx, haproxy, sluice, echo string
}

// installHint ends the error for a tool found nowhere.
const installHint = "`make bench-compare` installs it (apt-get install nginx-light haproxy), or leave it out with -only"

// builtBinary checks a binary the Makefile builds (sluice, echo).
func builtBinary(path, what string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("%s binary %s: %w (build it first: `make build`, or run `make bench-compare`)", what, path, err)
	}
	return abs, nil
}

// pinSelf moves every thread of this process to cpu. sched_setaffinity
// acts on one thread, and the Go runtime already runs several, so each
// task in /proc/self/task is pinned; threads created later inherit the
// mask of the thread that creates them. GOMAXPROCS is then set to 1: the
// runtime sized it from the affinity mask at start and does not follow
// later changes.
func pinSelf(cpu int) (before string, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		before = cpuList(set)
	}
	set.Zero()
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return before, err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return before, fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	runtime.GOMAXPROCS(1)
	var now unix.CPUSet
	if err := unix.SchedGetaffinity(0, &now); err != nil {
		return before, err
	}
	if now.Count() != 1 || !now.IsSet(cpu) {
		return before, fmt.Errorf("affinity is CPUs %s after pinning to %d", cpuList(now), cpu)
	}
	return before, nil
}

func cpuList(set unix.CPUSet) string {
	var l []string
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			l = append(l, strconv.Itoa(i))
		}
	}
	return strings.Join(l, ",")
}

// raiseNofile sets the soft RLIMIT_NOFILE to the hard one. It goes through
// package syscall on purpose: syscall.Setrlimit also drops the runtime's
// record of the original soft limit, which os/exec would otherwise restore
// in every child, leaving the proxies at 1,024 fds.
func raiseNofile() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	return r.Max, nil
}

// Environment is the machine and the software a run measured.
type Environment struct {
	Date         string  `json:"date"`
	Kernel       string  `json:"kernel"`
	CPUModel     string  `json:"cpu_model"`
	CPUs         int     `json:"cpus"`
	MemTotal     string  `json:"mem_total"`
	Nginx        string  `json:"nginx,omitempty"`
	HAProxy      string  `json:"haproxy,omitempty"`
	Sluice       string  `json:"sluice,omitempty"`
	Go           string  `json:"go"`
	LoadStart    string  `json:"loadavg_start"`
	LoadEnd      string  `json:"loadavg_end"`
	AffinityWas  string  `json:"affinity_at_start"`
	NofileLimit  uint64  `json:"rlimit_nofile"`
	ClockTicks   float64 `json:"clk_tck"`
	EchoLoopsArg bool    `json:"echo_loops_flag"`
}

// environment records the machine and the versions of what will run.
func environment(t tools, useNginx, useHAProxy, useSluice bool) Environment {
	e := Environment{
		Date:       time.Now().UTC().Format(time.RFC3339),
		Kernel:     harness.KernelRelease(),
		CPUModel:   harness.ProcField("/proc/cpuinfo", "model name"),
		MemTotal:   harness.ProcField("/proc/meminfo", "MemTotal"),
		Go:         runtime.Version(),
		LoadStart:  harness.LoadAvg(),
		ClockTicks: harness.ClockTicks(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUs = bytes.Count(b, []byte("\nprocessor\t")) + 1
	}
	if useNginx {
		e.Nginx = harness.FirstLine(t.nginx, "-v")
	}
	if useHAProxy {
		e.HAProxy = harness.FirstLine(t.haproxy, "-v")
	}
	if useSluice {
		e.Sluice = harness.FirstLine(t.sluice, "version")
	}
	return e
}

// echoHasFlag reports whether the echo binary's usage mentions -name.
func echoHasFlag(echo, name string) bool {
	out, _ := exec.Command(echo, "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" ")) || bytes.Contains(out, []byte("-"+name+"\n")) ||
		bytes.Contains(out, []byte("-"+name+"\t"))
}
