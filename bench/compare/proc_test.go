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
		{"4243 ((sd-pam))" + tail, "(sd-pam)"},
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
	for _, bad := range []string{"", "12 nginx S 1", "12 (nginx) S 1 2 3", "x (nginx)" + tail, "12 (nginx) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseStatSelf(t *testing.T) {
	s, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.StartTime == 0 {
		t.Errorf("own stat: %+v", s)
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
	v, err := parsePSS([]byte(smapsRollup))
	if err != nil || v != 20491 {
		t.Errorf("got %d, %v; want 20491 (only the Pss: line)", v, err)
	}
	// smaps proper: one Pss line per mapping, summed.
	v, err = parsePSS([]byte("Pss: 10 kB\nPss_Anon: 10 kB\nPss:   5 kB\n"))
	if err != nil || v != 15 {
		t.Errorf("smaps: got %d, %v; want 15", v, err)
	}
	for _, bad := range []string{"", "Rss: 5 kB\n", "Pss: x kB\n", "Pss: 5 MB\n"} {
		if _, err := parsePSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPSSSelf(t *testing.T) {
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	v, err := pssKiB([]proc{{PID: self.PID, StartTime: self.StartTime}})
	if err != nil || v <= 0 {
		t.Errorf("own PSS: %d, %v", v, err)
	}
}

func TestTreeOf(t *testing.T) {
	all := []procStat{
		{PID: 1, PPID: 0},
		{PID: 10, PPID: 1, Comm: "nginx"},   // master
		{PID: 11, PPID: 10, Comm: "nginx"},  // worker
		{PID: 12, PPID: 11, Comm: "helper"}, // grandchild
		{PID: 20, PPID: 1, Comm: "other"},
	}
	got := treeOf(10, all)
	var pids []int
	for _, p := range got {
		pids = append(pids, p.PID)
	}
	if len(pids) != 3 || pids[0] != 10 || pids[1] != 11 || pids[2] != 12 {
		t.Errorf("tree of 10: %v", pids)
	}
	if treeOf(99, all) != nil {
		t.Error("tree of a missing pid is not empty")
	}
}

func TestDescendantsSelf(t *testing.T) {
	ps, err := descendants(os.Getpid())
	if err != nil || len(ps) == 0 || ps[0].PID != os.Getpid() || !ps[0].alive() {
		t.Errorf("descendants of self: %v, %v", ps, err)
	}
	if (proc{PID: os.Getpid(), StartTime: ps[0].StartTime + 1}).alive() {
		t.Error("a PID with another start time counts as alive")
	}
}
