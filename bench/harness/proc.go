package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcStat is what the harness needs from /proc/PID/stat (proc(5)).
type ProcStat struct {
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
func (s ProcStat) CPU() uint64 { return s.UTime + s.STime }

// ParseProcStat decodes one /proc/PID/stat line. The second field is the
// command name in parentheses, and the name itself may contain spaces and
// parentheses ("(sd-pam)", "my (weird) prog"): the kernel does not escape
// it, so the only safe split is at the LAST ')' of the line. The fields
// after it are numbers and never contain one.
func ParseProcStat(line []byte) (ProcStat, error) {
	var s ProcStat
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

// ReadProcStat reads and decodes /proc/PID/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(b)
}

// Proc names one process: its PID and start time (see
// ProcStat.StartTime), and its command name for messages.
type Proc struct {
	PID       int
	StartTime uint64
	Comm      string
}

// Alive reports whether p still runs as the same process, not as another
// one that inherited its PID.
func (p Proc) Alive() bool {
	s, err := ReadProcStat(p.PID)
	return err == nil && s.StartTime == p.StartTime
}

// Descendants returns root and every process below it, root first, from
// one scan of /proc/*/stat: an nginx master and its worker, a taskset
// that exec'd its command. Processes that vanish during the scan are
// skipped; a root that is not there gives an empty list.
func Descendants(root int) ([]Proc, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var all []ProcStat
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		s, err := ReadProcStat(pid)
		if err != nil {
			continue
		}
		all = append(all, s)
	}
	return treeOf(root, all), nil
}

// treeOf picks root and its descendants out of a process table.
func treeOf(root int, all []ProcStat) []Proc {
	children := map[int][]ProcStat{}
	var out []Proc
	for _, s := range all {
		children[s.PPID] = append(children[s.PPID], s)
		if s.PID == root {
			out = append(out, Proc{s.PID, s.StartTime, s.Comm})
		}
	}
	if len(out) == 0 {
		return nil
	}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].PID] {
			out = append(out, Proc{c.PID, c.StartTime, c.Comm})
		}
	}
	return out
}

// CPUTicks sums user+system ticks over procs. A process that has exited
// contributes nothing (its time is lost with it), which is why the tree is
// re-read right before a load and every target keeps its processes for
// the whole load; n is how many of procs were still there, so a caller
// can tell a worker that died mid-run from one that was idle.
func CPUTicks(procs []Proc) (sum uint64, n int) {
	for _, p := range procs {
		s, err := ReadProcStat(p.PID)
		if err != nil || s.StartTime != p.StartTime {
			continue
		}
		sum += s.CPU()
		n++
	}
	return sum, n
}

// ParsePSS returns the proportional set size, in KiB, from the text of
// /proc/PID/smaps_rollup (or /proc/PID/smaps, whose per-mapping lines it
// sums). Only the "Pss:" lines count; Pss_Anon, Pss_File and Pss_Shmem are
// its parts, not additions.
func ParsePSS(text []byte) (int64, error) {
	var total int64
	found := false
	for line := range bytes.Lines(text) {
		rest, ok := bytes.CutPrefix(line, []byte("Pss:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("smaps: bad Pss line %q", bytes.TrimSpace(line))
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("smaps: Pss: %w", err)
		}
		total += v
		found = true
	}
	if !found {
		return 0, errors.New("smaps: no Pss line")
	}
	return total, nil
}

// PSSKiB sums the PSS of procs from /proc/PID/smaps_rollup. PSS charges
// each shared page to its sharers in proportion, so an nginx master and
// its worker are not counted twice for the pages they share.
func PSSKiB(procs []Proc) (int64, error) {
	var sum int64
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "smaps_rollup"))
		if err != nil {
			return 0, err
		}
		v, err := ParsePSS(b)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", p.PID, err)
		}
		sum += v
	}
	return sum, nil
}

// CPUBusy is one CPU's line of /proc/stat: ticks spent busy (user, nice,
// system, irq, softirq, steal) and in all (busy plus idle and iowait).
type CPUBusy struct{ Busy, Total uint64 }

// ParseCPULine finds "cpuN ..." in the text of /proc/stat. Guest time is
// already inside user and nice (proc(5)), so it is not added again.
func ParseCPULine(text []byte, cpu int) (CPUBusy, error) {
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for line := range bytes.Lines(text) {
		rest, ok := bytes.CutPrefix(line, []byte(prefix))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) < 8 {
			return CPUBusy{}, fmt.Errorf("/proc/stat: %d fields for cpu%d, want 8", len(f), cpu)
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return CPUBusy{}, fmt.Errorf("/proc/stat: cpu%d field %d: %w", cpu, i+1, err)
			}
			v[i] = n
		}
		// user nice system idle iowait irq softirq steal
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		return CPUBusy{Busy: busy, Total: busy + v[3] + v[4]}, nil
	}
	return CPUBusy{}, fmt.Errorf("/proc/stat: no cpu%d line", cpu)
}

// ReadCPU reads one CPU's counters from /proc/stat.
func ReadCPU(cpu int) (CPUBusy, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUBusy{}, err
	}
	return ParseCPULine(b, cpu)
}
