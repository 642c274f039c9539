package harness

import (
	"os"
	"slices"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// Fields 14, 15 (utime, stime) and 22 (starttime) are 1111, 222 and
	// 98765 in every line; the comm field is what varies.
	const tail = " S 1 4242 4242 0 -1 4194560 1500 0 3 0 1111 222 7 8 20 0 3 0 98765 123456789 1000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0\n"
	for _, tc := range []struct{ line, comm string }{
		{"4243 (nginx)" + tail, "nginx"},
		{"4243 (my prog)" + tail, "my prog"},
		{"4243 (a) b (c))" + tail, "a) b (c)"},
		{"4243 ((sd-pam))" + tail, "(sd-pam)"},
		{"4243 (x 1 2 3 4)" + tail, "x 1 2 3 4"}, // digits in comm must not shift the fields
	} {
		s, err := ParseProcStat([]byte(tc.line))
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if s.PID != 4243 || s.Comm != tc.comm || s.PPID != 1 || s.UTime != 1111 || s.STime != 222 || s.StartTime != 98765 || s.CPU() != 1333 {
			t.Errorf("%q: got %+v", tc.line, s)
		}
	}
	for _, bad := range []string{
		"",
		"12 nginx S 1",
		"12 (nginx) S 1 2 3",
		"x (nginx)" + tail,
		"12 (nginx) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20", // utime not a number
	} {
		if _, err := ParseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadProcStatSelf(t *testing.T) {
	s, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.StartTime == 0 {
		t.Errorf("own stat: %+v", s)
	}
}

func TestTreeOf(t *testing.T) {
	all := []ProcStat{
		{PID: 1, PPID: 0},
		{PID: 10, PPID: 1, Comm: "nginx"},   // master
		{PID: 11, PPID: 10, Comm: "nginx"},  // worker
		{PID: 12, PPID: 10, Comm: "nginx"},  // second worker
		{PID: 13, PPID: 11, Comm: "helper"}, // grandchild
		{PID: 20, PPID: 1, Comm: "other"},
	}
	for _, tc := range []struct {
		root int
		want []int
	}{
		{10, []int{10, 11, 12, 13}},
		{11, []int{11, 13}},
		{20, []int{20}},
		{99, nil}, // a root that is not there
	} {
		var pids []int
		for _, p := range treeOf(tc.root, all) {
			pids = append(pids, p.PID)
		}
		if !slices.Equal(pids, tc.want) {
			t.Errorf("tree of %d: %v, want %v", tc.root, pids, tc.want)
		}
	}
}

func TestOwnTree(t *testing.T) {
	ps, err := Descendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 || ps[0].PID != os.Getpid() || !ps[0].Alive() {
		t.Fatalf("own tree: %+v", ps)
	}
	other := Proc{PID: ps[0].PID, StartTime: ps[0].StartTime + 1}
	if other.Alive() {
		t.Error("a PID with another start time counts as alive")
	}
	if _, n := CPUTicks(ps[:1]); n != 1 {
		t.Errorf("CPUTicks counted %d live processes, want 1", n)
	}
	if _, n := CPUTicks([]Proc{other}); n != 0 {
		t.Error("a process with another start time was counted: PID reuse would be mistaken for the target")
	}
}

const smapsRollup = `55d0c0a00000-7ffc1c5f6000 ---p 00000000 00:00 0                          [rollup]
Rss:               22432 kB
Pss:               20491 kB
Pss_Dirty:         18000 kB
Pss_Anon:          17000 kB
Pss_File:           3491 kB
Pss_Shmem:             0 kB
Shared_Clean:       2100 kB
Private_Dirty:     18000 kB
Swap:                  0 kB
SwapPss:               0 kB
`

func TestParsePSS(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       int64
	}{
		{"smaps_rollup: only the Pss: line", smapsRollup, 20491},
		{"smaps: one Pss line per mapping, summed", "Pss: 10 kB\nPss_Anon: 10 kB\nPss:   5 kB\n", 15},
	} {
		if v, err := ParsePSS([]byte(tc.text)); err != nil || v != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.name, v, err, tc.want)
		}
	}
	for _, bad := range []string{"", "Rss: 5 kB\n", "Pss: x kB\n", "Pss: 5 MB\n"} {
		if _, err := ParsePSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPSSSelf(t *testing.T) {
	self, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	v, err := PSSKiB([]Proc{{PID: self.PID, StartTime: self.StartTime}})
	if err != nil || v <= 0 {
		t.Errorf("own PSS: %d, %v", v, err)
	}
}

func TestParseCPULine(t *testing.T) {
	const stat = "cpu  100 0 50 1000 5 0 2 0 0 0\n" +
		"cpu0 40 1 20 500 3 4 5 6 7 8\n" +
		"cpu1 60 0 30 500 2 0 2 0 0 0\n" +
		"intr 12345\n"
	c, err := ParseCPULine([]byte(stat), 0)
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal; guest is inside user.
	if c.Busy != 40+1+20+4+5+6 || c.Total != c.Busy+500+3 {
		t.Errorf("cpu0: %+v", c)
	}
	for _, bad := range []struct {
		name, text string
	}{
		{"no cpu0 line", "cpu  1 2 3 4 5 6 7 8\ncpu1 1 2 3 4 5 6 7 8\n"},
		{"short line", "cpu0 1 2 3\n"},
		{"not a number", "cpu0 1 2 3 4 5 x 7 8\n"},
	} {
		if _, err := ParseCPULine([]byte(bad.text), 0); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
	if _, err := ReadCPU(0); err != nil {
		t.Errorf("this machine's cpu0: %v", err)
	}
}
