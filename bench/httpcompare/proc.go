package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat is what the harness needs from /proc/PID/stat (proc(5)).
type procStat struct {
	PID  int
	Comm string
	PPID int
	// UTime and STime are fields 14 and 15: CPU time spent in user and
	// kernel mode by every thread of the process (all of a Go program's
	// threads, both of nginx's processes once summed over the tree), in
	// clock ticks (CLK_TCK). Time of children that exited is not included.
	UTime, STime uint64
	// StartTime is field 22, the start in ticks after boot. With the PID it
	// names one process for good: a PID can be reused, a (PID, start) pair
	// cannot, so the harness never signals a stranger that inherited the
	// number of a process it started.
	StartTime uint64
}

// CPU is user plus system time in ticks.
func (s procStat) CPU() uint64 { return s.UTime + s.STime }

// parseStat decodes one /proc/PID/stat line. The second field is the
// command name in parentheses, and the name itself may contain spaces and
// parentheses: the kernel does not escape it, so the only safe split is at
// the LAST ')' of the line. The fields after it are numbers.
func parseStat(line []byte) (procStat, error) {
	var s procStat
	open := bytes.IndexByte(line, '(')
	end := bytes.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return s, fmt.Errorf("stat: no (comm) in %q", truncate(line, 80))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line[:open])))
	if err != nil {
		return s, fmt.Errorf("stat: pid: %w", err)
	}
	s.PID, s.Comm = pid, string(line[open+1:end])
	// rest[0] is field 3 (state), so field n is rest[n-3].
	rest := strings.Fields(string(line[end+1:]))
	if len(rest) < 22-3+1 {
		return s, fmt.Errorf("stat: %d fields after comm, want at least 20", len(rest))
	}
	num := func(field int) (uint64, error) {
		v, err := strconv.ParseUint(rest[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", field, err)
		}
		return v, nil
	}
	ppid, err := num(4)
	if err != nil {
		return s, err
	}
	s.PPID = int(ppid)
	if s.UTime, err = num(14); err != nil {
		return s, err
	}
	if s.STime, err = num(15); err != nil {
		return s, err
	}
	if s.StartTime, err = num(22); err != nil {
		return s, err
	}
	return s, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// proc names one process: its PID and start time (see procStat.StartTime).
type proc struct {
	PID       int
	StartTime uint64
	Comm      string
}

// alive reports whether p still runs as the same process, not as another
// one that inherited its PID.
func (p proc) alive() bool {
	s, err := readStat(p.PID)
	return err == nil && s.StartTime == p.StartTime
}

// descendants returns root and every process below it, from one scan of
// /proc/*/stat: an nginx master and its worker, a taskset that exec'd its
// command. Processes that vanish during the scan are skipped.
func descendants(root int) ([]proc, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var all []procStat
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		s, err := readStat(pid)
		if err != nil {
			continue
		}
		all = append(all, s)
	}
	return treeOf(root, all), nil
}

// treeOf picks root and its descendants out of a process table.
func treeOf(root int, all []procStat) []proc {
	children := map[int][]procStat{}
	var out []proc
	for _, s := range all {
		children[s.PPID] = append(children[s.PPID], s)
		if s.PID == root {
			out = append(out, proc{s.PID, s.StartTime, s.Comm})
		}
	}
	if len(out) == 0 {
		return nil
	}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].PID] {
			out = append(out, proc{c.PID, c.StartTime, c.Comm})
		}
	}
	return out
}

// cpuTicks sums user+system ticks over procs. A process that has exited
// contributes nothing (its time is lost with it), which is why the tree is
// re-read right before a load and every target keeps its processes for
// the whole load; n is how many of procs were still there, so a caller
// can tell a worker that died mid-run from one that was idle.
func cpuTicks(procs []proc) (sum uint64, n int) {
	for _, p := range procs {
		s, err := readStat(p.PID)
		if err != nil || s.StartTime != p.StartTime {
			continue
		}
		sum += s.CPU()
		n++
	}
	return sum, n
}

// cpuBusy is one CPU's line of /proc/stat: ticks spent busy (user, nice,
// system, irq, softirq, steal) and in all (busy plus idle and iowait).
type cpuBusy struct{ Busy, Total uint64 }

// parseCPULine finds "cpuN ..." in the text of /proc/stat. Guest time is
// already inside user and nice (proc(5)), so it is not added again.
func parseCPULine(text []byte, cpu int) (cpuBusy, error) {
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for line := range bytes.Lines(text) {
		rest, ok := bytes.CutPrefix(line, []byte(prefix))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) < 8 {
			return cpuBusy{}, fmt.Errorf("/proc/stat: %d fields for cpu%d, want 8", len(f), cpu)
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return cpuBusy{}, fmt.Errorf("/proc/stat: cpu%d field %d: %w", cpu, i+1, err)
			}
			v[i] = n
		}
		// user nice system idle iowait irq softirq steal
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		return cpuBusy{Busy: busy, Total: busy + v[3] + v[4]}, nil
	}
	return cpuBusy{}, fmt.Errorf("/proc/stat: no cpu%d line", cpu)
}

// readCPU reads one CPU's counters from /proc/stat.
func readCPU(cpu int) (cpuBusy, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuBusy{}, err
	}
	return parseCPULine(b, cpu)
}
