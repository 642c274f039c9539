package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what the harness takes from wrk's text report. wrk 4.x has
// no machine-readable output without a Lua script, and a script would run
// in the load generator's only thread; the text report is stable across
// 4.x releases and parsed line by line here.
type wrkResult struct {
	Requests  uint64  `json:"requests"`    // "N requests in 10.00s, ..."
	ElapsedS  float64 `json:"elapsed_s"`   // the "in 10.00s" of that line
	ReqPerSec float64 `json:"req_per_s"`   // "Requests/sec:"
	P50Us     float64 `json:"p50_us"`      // "Latency Distribution" 50%
	P99Us     float64 `json:"p99_us"`      // and 99%, in microseconds
	Non2xx3xx uint64  `json:"non_2xx_3xx"` // "Non-2xx or 3xx responses:", 0 when absent
	// Socket errors, from "Socket errors: connect 0, read 0, write 0,
	// timeout 0" (wrk prints the line only when one is non-zero). A
	// timeout is a request with no answer within wrk's 2 s: it is not in
	// Requests, and a run with any is not comparable.
	Connect uint64 `json:"connect_errors"`
	Read    uint64 `json:"read_errors"`
	Write   uint64 `json:"write_errors"`
	Timeout uint64 `json:"timeouts"`
}

// Errors is every failed request or connection wrk counted.
func (r wrkResult) Errors() uint64 {
	return r.Non2xx3xx + r.Connect + r.Read + r.Write + r.Timeout
}

// ErrorText describes r's errors for a table cell, "" when there are none.
func (r wrkResult) ErrorText() string {
	var p []string
	add := func(n uint64, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Non2xx3xx, "non-2xx/3xx")
	add(r.Connect, "connect")
	add(r.Read, "read")
	add(r.Write, "write")
	add(r.Timeout, "timeout")
	return strings.Join(p, ", ")
}

// errWrkOutput is a wrk report the parser does not understand.
var errWrkOutput = errors.New("unrecognised wrk output")

// parseWrk reads wrk's report (run with --latency). It insists on the
// lines every successful run prints: the request count, Requests/sec and
// the 50% and 99% latency lines.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveReqs, haveRate, have50, have99 bool
	inDist := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "Latency Distribution":
			inDist = true
			continue
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("%w: latency %q: %v", errWrkOutput, line, err)
			}
			switch f[0] {
			case "50%":
				r.P50Us, have50 = d, true
			case "99%":
				r.P99Us, have99 = d, true
			}
			continue
		}
		inDist = false
		switch {
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "214554 requests in 3.00s, 258.63MB read"
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q: %v", errWrkOutput, line, err)
			}
			us, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("%w: %q: %v", errWrkOutput, line, err)
			}
			r.Requests, r.ElapsedS, haveReqs = n, us/1e6, true
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q: %v", errWrkOutput, line, err)
			}
			r.ReqPerSec, haveRate = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			v, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q: %v", errWrkOutput, line, err)
			}
			r.Non2xx3xx = v
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 47532, write 0, timeout 0"
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return r, fmt.Errorf("%w: %q", errWrkOutput, line)
				}
				v, err := strconv.ParseUint(kv[1], 10, 64)
				if err != nil {
					return r, fmt.Errorf("%w: %q: %v", errWrkOutput, line, err)
				}
				switch kv[0] {
				case "connect":
					r.Connect = v
				case "read":
					r.Read = v
				case "write":
					r.Write = v
				case "timeout":
					r.Timeout = v
				default:
					return r, fmt.Errorf("%w: socket error kind %q", errWrkOutput, kv[0])
				}
			}
		}
	}
	if !haveReqs || !haveRate || !have50 || !have99 {
		return r, fmt.Errorf("%w: missing request count, Requests/sec or the 50%%/99%% latency lines", errWrkOutput)
	}
	return r, nil
}

// parseWrkDuration converts a wrk time ("365.00us", "1.43ms", "2.00s",
// "1.50m", "1.00h") to microseconds. wrk picks the unit per value, so a
// column mixes them ("847.00us" above "0.89ms").
func parseWrkDuration(s string) (float64, error) {
	units := []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}, {"h", 3600e6}}
	for _, u := range units { // "us" and "ms" before "s"
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return v * u.us, nil
		}
	}
	return 0, fmt.Errorf("duration %q: no unit", s)
}

// wrkArgs is the command line of one wrk run, pinned to cpu: one thread
// (the load CPU is one core, shared with the backend), conns keep-alive
// connections, a fixed duration, and the latency distribution.
func wrkArgs(wrk string, cpu, conns int, d time.Duration, url string) []string {
	return []string{"taskset", "-c", strconv.Itoa(cpu), wrk,
		"-t1", "-c" + strconv.Itoa(conns), "-d" + wrkSeconds(d), "--latency", url}
}

// wrkSeconds formats d the way wrk's -d takes it: whole seconds, at
// least one.
func wrkSeconds(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s) + "s"
}

// runWrk runs wrk and returns its report. The run is bounded: wrk is
// killed (by its own PID: taskset execs it) if it outlives its duration
// by 30 s, or when ctx ends.
func runWrk(ctx context.Context, argv []string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, truncate(out, 2000))
	}
	return string(out), nil
}
