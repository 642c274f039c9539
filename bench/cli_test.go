package bench

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"0", 0, false},
		{"128", 128, false},
		{"128b", 128, false},
		{"128B", 128, false},
		{"16k", 16 << 10, false},
		{"16K", 16 << 10, false},
		{"16kb", 16 << 10, false},
		{"16KiB", 16 << 10, false},
		{"1m", 1 << 20, false},
		{"1M", 1 << 20, false},
		{"1MB", 1 << 20, false},
		{"1MiB", 1 << 20, false},
		{"1mib", 1 << 20, false},
		{"2g", 2 << 30, false},
		{" 64m ", 64 << 20, false},
		{"", 0, true},
		{"k", 0, true},
		{"KiB", 0, true},
		{"-1", 0, true},
		{"1.5m", 0, true},
		{"12i", 0, true},
		{"1iB", 0, true},
		{"1 MiB", 0, true},
		{"1t", 0, true},
		{"99999999999999999999", 0, true},
		{"9999999999999999g", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestDurationFlag(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"10s", 10 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"10", 10 * time.Second, false},
		{"0.5", 500 * time.Millisecond, false},
		{"0", 0, true},
		{"-1s", 0, true},
		{"soon", 0, true},
		{"1e300", 0, true},
	}
	for _, tt := range tests {
		var d time.Duration
		err := durationFlag(&d)(tt.in)
		if (err != nil) != tt.err || d != tt.want {
			t.Errorf("duration %q = %v, %v; want %v, error %v", tt.in, d, err, tt.want, tt.err)
		}
	}
}

// TestCommandUsage: whatever is wrong with the command line, the answer is
// a usage message naming the modes on stderr and exit status 2, never a
// stack trace; -h is usage on stdout and 0.
func TestCommandUsage(t *testing.T) {
	const url = "ws://127.0.0.1:9/"
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no mode", nil, 2, "", "missing MODE"},
		{"-h", []string{"-h"}, 0, "Usage: sluice bench MODE [flags] ws[s]://HOST:PORT/PATH", ""},
		{"--help", []string{"--help"}, 0, "Modes:", ""},
		{"help", []string{"help"}, 0, "Modes:", ""},
		{"mode -h", []string{"rate", "-h"}, 0, "Flags:", ""},
		{"unknown mode", []string{"flood", url}, 2, "", `unknown mode "flood" (want idle, rate, closed, handshake or bulk)`},
		{"flag before mode", []string{"-c", "5", "rate", url}, 2, "", "unknown mode \"-c\""},
		{"missing URL", []string{"rate", "-c", "5"}, 2, "", "missing the target URL"},
		{"two URLs", []string{"rate", url, url}, 2, "", "one target URL expected, got 2"},
		{"unknown flag", []string{"rate", "--nope", url}, 2, "", "flag provided but not defined: -nope"},
		{"bad conns", []string{"closed", "-c", "many", url}, 2, "", `invalid value "many" for flag -c`},
		{"negative conns", []string{"closed", "--conns", "-3", url}, 2, "", "-c -3: want 1 or more"},
		{"bad rate", []string{"rate", "-r", "0", url}, 2, "", "want messages per second > 0"},
		{"bad payload", []string{"rate", "-p", "1x", url}, 2, "", `invalid size "1x"`},
		{"payload too big", []string{"bulk", "-p", "65m", url}, 2, "", "want 0..67108864 (64 MiB)"},
		{"bad duration", []string{"rate", "-d", "soon", url}, 2, "", "want a duration such as 10s"},
		{"bad URL", []string{"rate", "http://127.0.0.1:9/"}, 2, "", "want ws://HOST:PORT/PATH"},
		{"rate in closed mode", []string{"closed", "-r", "10", url}, 2, "", "rate is for rate mode only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := Command(tt.args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tt.stdout)
			}
			if !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tt.stderr)
			}
			if code == 2 && tt.name != "bad URL" && tt.name != "rate in closed mode" && tt.name != "payload too big" && !strings.Contains(errOut.String(), "idle       open") {
				t.Errorf("usage error without the usage (modes) on stderr: %q", errOut.String())
			}
			if strings.Contains(errOut.String(), "goroutine ") {
				t.Errorf("stack trace on stderr: %s", errOut.String())
			}
		})
	}
}

// TestCommandJSON runs a short load against the bundled echo server and
// reads the --json output back into a Result; flags may come after the URL.
func TestCommandJSON(t *testing.T) {
	srv, err := ListenEcho("127.0.0.1:0", EchoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "ws://" + srv.Addr() + "/"
	var out, errOut strings.Builder
	code := Command([]string{"rate", "-c", "4", url, "--rate", "400", "-p", "1k", "-d", "300ms", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, out.String())
	}
	if r.Mode != ModeRate || r.URL != url || r.Conns != 4 || r.Rate != 400 || r.Payload != 1024 || r.Echoed == 0 ||
		r.Sent != r.Echoed || r.Latency.Count != r.Echoed || r.Elapsed < 0.29 {
		t.Errorf("result %+v", r)
	}
	if !strings.Contains(out.String(), "\n  \"mode\": \"rate\",\n") {
		t.Errorf("JSON not indented by 2:\n%s", out.String())
	}
	// Progress goes to stderr, a plain line per second when not a terminal.
	if strings.Contains(errOut.String(), "\r") {
		t.Errorf("progress redrawn in place on a non-terminal: %q", errOut.String())
	}
}

// TestCommandNothingEchoed: a run that completes without one echo prints
// its report and exits 1.
func TestCommandNothingEchoed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	var out, errOut strings.Builder
	code := Command([]string{"closed", "-q", "-c", "3", "-d", "100ms", "ws://" + addr + "/"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "errors   3 (dial 3)") {
		t.Errorf("report lacks the dial errors:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "sluice bench: no message was echoed (errors: 3 (dial 3))") {
		t.Errorf("stderr %q", errOut.String())
	}
}
