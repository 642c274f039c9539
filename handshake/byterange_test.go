package handshake

import (
	"testing"
)

func TestParseRange(t *testing.T) {
	const (
		ok      = iota
		ignored // ErrRangeIgnored: serve 200
		unsat   // ErrRangeNotSatisfiable: 416
	)
	tests := []struct {
		v          string
		size       int64
		verdict    int
		start, end int64
	}{
		{"bytes=0-0", 100, ok, 0, 0},
		{"bytes=0-99", 100, ok, 0, 99},
		{"bytes=10-19", 100, ok, 10, 19},
		{"bytes=10-", 100, ok, 10, 99},
		{"bytes=99-", 100, ok, 99, 99},
		{"bytes=50-1000", 100, ok, 50, 99}, // last clamped
		{"bytes=0-999999999999999999", 100, ok, 0, 99},
		{"bytes=-1", 100, ok, 99, 99},
		{"bytes=-10", 100, ok, 90, 99},
		{"bytes=-100", 100, ok, 0, 99},
		{"bytes=-500", 100, ok, 0, 99}, // suffix longer than the file: all of it
		{"  bytes=1-2\t", 100, ok, 1, 2},
		{"bytes= 1 - 2 ", 100, ok, 1, 2},
		{"Bytes=1-2", 100, ok, 1, 2}, // units are case-insensitive
		{"BYTES=-3", 3, ok, 0, 2},
		{"bytes=0-", 1, ok, 0, 0},
		// Not satisfiable: 416.
		{"bytes=100-", 100, unsat, 0, 0},
		{"bytes=100-200", 100, unsat, 0, 0},
		{"bytes=-0", 100, unsat, 0, 0},
		{"bytes=0-", 0, unsat, 0, 0},
		{"bytes=-5", 0, unsat, 0, 0},
		{"bytes=0-0", 0, unsat, 0, 0},
		// Ignored: 200 with everything.
		{"bytes=0-1,5-6", 100, ignored, 0, 0},
		{"bytes=0-1,", 100, ignored, 0, 0},
		{"bytes=5-4", 100, ignored, 0, 0},
		{"bytes=-", 100, ignored, 0, 0},
		{"bytes=", 100, ignored, 0, 0},
		{"bytes", 100, ignored, 0, 0},
		{"", 100, ignored, 0, 0},
		{"items=0-1", 100, ignored, 0, 0},
		{"bytes 0-1", 100, ignored, 0, 0},
		{"bytes=a-b", 100, ignored, 0, 0},
		{"bytes=0x1-2", 100, ignored, 0, 0},
		{"bytes=+1-2", 100, ignored, 0, 0},
		{"bytes=-1-2", 100, ignored, 0, 0},
		{"bytes=1-2-3", 100, ignored, 0, 0},
		{"bytes=1 2-3", 100, ignored, 0, 0},
		{"bytes=9999999999999999999-", 100, ignored, 0, 0}, // overflow
		{"bytes=0-9999999999999999999", 100, ignored, 0, 0},
		{"bytes=-9999999999999999999", 100, ignored, 0, 0},
		{"bytes=0-1", -1, ignored, 0, 0},
		{"bytes=x-", 0, ignored, 0, 0}, // syntax judged before satisfiability
	}
	for _, tc := range tests {
		start, end, err := ParseRange([]byte(tc.v), tc.size)
		switch tc.verdict {
		case ok:
			if err != nil || start != tc.start || end != tc.end {
				t.Errorf("ParseRange(%q, %d) = %d, %d, %v; want %d, %d", tc.v, tc.size, start, end, err, tc.start, tc.end)
			}
		case ignored:
			if err != ErrRangeIgnored {
				t.Errorf("ParseRange(%q, %d) = %d, %d, %v; want ErrRangeIgnored", tc.v, tc.size, start, end, err)
			}
		case unsat:
			if err != ErrRangeNotSatisfiable {
				t.Errorf("ParseRange(%q, %d) = %d, %d, %v; want ErrRangeNotSatisfiable", tc.v, tc.size, start, end, err)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { ParseRange([]byte("bytes=10-19"), 100) }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}

// FuzzParseRange: ParseRange never panics, returns only its two sentinels,
// and what it accepts lies within the representation.
// Seeds: testdata/fuzz/FuzzParseRange.
func FuzzParseRange(f *testing.F) {
	f.Add([]byte("bytes=0-99"), int64(100))
	f.Fuzz(func(t *testing.T, v []byte, size int64) {
		start, end, err := ParseRange(v, size)
		if err != nil {
			if err != ErrRangeIgnored && err != ErrRangeNotSatisfiable {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if start < 0 || start > end || end >= size {
			t.Fatalf("ParseRange(%q, %d) = %d, %d", v, size, start, end)
		}
	})
}
