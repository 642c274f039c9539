package main

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// Fields 14, 15 (utime, stime) and 22 (starttime) are 1111, 222 and
	// 98765 in every line; the comm field is what varies.
	const tail = " S 1 4242 4242 0 -1 4194560 1500 0 3 0 1111 222 7 8 20 0 3 0 98765 123456789 1000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0\n"
	for _, tc := range []struct{ line, comm string }{
		{"4243 (nginx)" + tail, "nginx"},
		{"4243 (my prog)" + tail, "my prog"},
		{"4243 (a) b (c))" + tail, "a) b (c)"},
		{"4243 (x 1 2 3 4)" + tail, "x 1 2 3 4"}, // digits in comm must not shift the fields
	} {
		s, err := parseStat([]byte(tc.line))
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if s.PID != 4243 || s.Comm != tc.comm || s.PPID != 1 || s.UTime != 1111 || s.STime != 222 || s.StartTime != 98765 || s.CPU() != 1333 {
			t.Errorf("%q: got %+v", tc.line, s)
		}
	}
	for _, bad := range []string{"", "12 nginx S 1", "12 (nginx) S 1 2 3", "x (nginx)" + tail} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestOwnTree(t *testing.T) {
	ps, err := descendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 || ps[0].PID != os.Getpid() || !ps[0].alive() {
		t.Fatalf("own tree: %+v", ps)
	}
	if _, n := cpuTicks(ps[:1]); n != 1 {
		t.Errorf("cpuTicks counted %d live processes, want 1", n)
	}
	if _, n := cpuTicks([]proc{{PID: ps[0].PID, StartTime: ps[0].StartTime + 1}}); n != 0 {
		t.Error("a process with another start time was counted: PID reuse would be mistaken for the target")
	}
}

func TestTreeOf(t *testing.T) {
	all := []procStat{
		{PID: 1, PPID: 0}, {PID: 10, PPID: 1}, {PID: 11, PPID: 10}, {PID: 12, PPID: 10},
		{PID: 13, PPID: 11}, {PID: 20, PPID: 1},
	}
	got := treeOf(10, all)
	var pids []int
	for _, p := range got {
		pids = append(pids, p.PID)
	}
	if len(pids) != 4 || pids[0] != 10 {
		t.Errorf("tree of 10: %v, want 10 11 12 13", pids)
	}
	if treeOf(99, all) != nil {
		t.Error("tree of a missing root is not empty")
	}
}

func TestParseCPULine(t *testing.T) {
	const stat = "cpu  100 0 50 1000 5 0 2 0 0 0\n" +
		"cpu0 40 1 20 500 3 4 5 6 7 8\n" +
		"cpu1 60 0 30 500 2 0 2 0 0 0\n" +
		"intr 12345\n"
	c, err := parseCPULine([]byte(stat), 0)
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal; guest is inside user.
	if c.Busy != 40+1+20+4+5+6 || c.Total != c.Busy+500+3 {
		t.Errorf("cpu0: %+v", c)
	}
	if _, err := parseCPULine([]byte(stat), 2); err == nil {
		t.Error("cpu2: no error")
	}
	if _, err := parseCPULine([]byte("cpu0 1 2 3\n"), 0); err == nil {
		t.Error("short line: no error")
	}
	if _, err := readCPU(0); err != nil {
		t.Errorf("this machine's cpu0: %v", err)
	}
}
