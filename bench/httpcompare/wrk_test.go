package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// The testdata files are wrk 4.1.0 (Debian) reports, verbatim: a clean
// run against nginx serving small.txt, and one against an nginx with 40
// worker_connections for 64 wrk connections and a location that answers
// 404, so both error lines appear.
func TestParseWrkSamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		want wrkResult
	}{
		{"testdata/wrk-ok.txt", wrkResult{
			Requests: 214554, ElapsedS: 3, ReqPerSec: 71468.97, P50Us: 847, P99Us: 1430,
		}},
		{"testdata/wrk-errors.txt", wrkResult{
			Requests: 3509, ElapsedS: 2, ReqPerSec: 1751.29, P50Us: 365, P99Us: 9000,
			Non2xx3xx: 3509, Read: 47532,
		}},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseWrk(string(b))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
}

func TestWrkErrors(t *testing.T) {
	clean := wrkResult{Requests: 10}
	if clean.Errors() != 0 || clean.ErrorText() != "" {
		t.Errorf("clean run: %d errors, %q", clean.Errors(), clean.ErrorText())
	}
	r := wrkResult{Non2xx3xx: 3, Connect: 1, Timeout: 2}
	if r.Errors() != 6 || r.ErrorText() != "3 non-2xx/3xx, 1 connect, 2 timeout" {
		t.Errorf("got %d, %q", r.Errors(), r.ErrorText())
	}
}

func TestParseWrkRejects(t *testing.T) {
	ok, err := os.ReadFile("testdata/wrk-ok.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"empty":           "",
		"connect refused": "unable to connect to 127.0.0.1:1 Connection refused\n",
		"no latency":      strings.Replace(string(ok), "Latency Distribution", "Something else", 1),
		"no rate":         strings.Replace(string(ok), "Requests/sec:", "Reqs:", 1),
		"bad count":       strings.Replace(string(ok), "214554 requests", "2x4554 requests", 1),
		"bad socket line": strings.Replace(string(ok), "Requests/sec:", "  Socket errors: connect 0, read x\nRequests/sec:", 1),
		"unknown kind":    strings.Replace(string(ok), "Requests/sec:", "  Socket errors: connect 0, reset 3\nRequests/sec:", 1),
		"bad p99 unit":    strings.Replace(string(ok), "1.43ms", "1.43", 1),
	} {
		if _, err := parseWrk(out); !errors.Is(err, errWrkOutput) {
			t.Errorf("%s: got %v, want errWrkOutput", name, err)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]float64{
		"365.00us": 365, "0.89ms": 890, "2.00s": 2e6, "1.50m": 90e6, "1.00h": 3600e6, "3.05s": 3.05e6,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got < want*0.999999 || got > want*1.000001 {
			t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "12", "us", "1.2.3ms", "5ns"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	got := strings.Join(wrkArgs("/usr/bin/wrk", 1, 64, 10*time.Second, "http://127.0.0.1:9/small.txt"), " ")
	want := "taskset -c 1 /usr/bin/wrk -t1 -c64 -d10s --latency http://127.0.0.1:9/small.txt"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for d, want := range map[time.Duration]string{300 * time.Millisecond: "1s", 2400 * time.Millisecond: "2s", 3 * time.Second: "3s"} {
		if got := wrkSeconds(d); got != want {
			t.Errorf("wrkSeconds(%v) = %s, want %s", d, got, want)
		}
	}
}
