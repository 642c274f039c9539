package bench

import (
	"context"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/engine"
)

// The integration tests: every mode against the bundled echo server,
// directly and through an in-process sluice, on loopback.

// startEchoServer runs the bundled echo backend for one test.
func startEchoServer(t *testing.T) *EchoServer {
	t.Helper()
	s, err := ListenEcho("127.0.0.1:0", EchoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startSluice runs sluice in this process, proxying /ws/ to backend, and
// returns it and its listen address.
func startSluice(t *testing.T, backend string) (*engine.Engine, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	workers := 2
	cfg, err := configs.Apply(nil, configs.Overrides{Listen: []string{addr}, Proxies: []string{"/ws/=" + backend}, Workers: &workers})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(cfg, engine.Logs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			t.Errorf("stopping sluice: %v", err)
		}
	})
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice never listened on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return eng, addr
}

// checkAccounting asserts the invariant Result.Sent documents: every
// message sent in the window was echoed or failed, once.
func checkAccounting(t *testing.T, r *Result) {
	t.Helper()
	var msgErrs int64
	for kind, n := range r.Errors {
		if IsMessageKind(kind) {
			msgErrs += n
		}
	}
	if r.Sent != r.Echoed+msgErrs {
		t.Errorf("sent %d != echoed %d + message errors %d (errors %v)", r.Sent, r.Echoed, msgErrs, r.Errors)
	}
	if r.Latency.Count != r.Echoed {
		t.Errorf("latency count %d, want echoed %d", r.Latency.Count, r.Echoed)
	}
}

// loadGoroutines counts the goroutines of the load generator (Run and
// Command, what they start, the client's context hooks) and returns their
// stacks. The servers' goroutines (the echo's gnet loops, sluice's) come
// and go on their own schedule and are not counted.
func loadGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	marks := []string{"bench.Run", "bench.(*run)", "bench.parallel", "bench.(*progress)", "bench.(*conn)", "bench.Command"}
	count, stacks := 0, ""
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bench.expectGoroutines") {
			continue
		}
		for _, m := range marks {
			if strings.Contains(g, m) {
				count++
				stacks += g + "\n\n"
				break
			}
		}
	}
	return count, stacks
}

// expectGoroutines waits for the load generator's goroutines to be gone:
// a run leaves nothing behind.
func expectGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n, stacks := loadGoroutines()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d load generator goroutines left after the run:\n%s", n, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitZero waits for n() to reach 0: the peers saw every connection close.
func waitZero(t *testing.T, what string, n func() int64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for n() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d still open after the run", what, n())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunModes(t *testing.T) {
	echo := startEchoServer(t)
	eng, proxy := startSluice(t, echo.Addr())
	targets := []struct{ name, url string }{
		{"direct", "ws://" + echo.Addr() + "/"},
		{"through sluice", "ws://" + proxy + "/ws/bench"},
	}
	const window = 700 * time.Millisecond
	modes := []Options{
		{Mode: ModeIdle, Conns: 50, Duration: 300 * time.Millisecond},
		{Mode: ModeRate, Conns: 10, Rate: 2000, Payload: 128, Duration: window, Warmup: 100 * time.Millisecond},
		{Mode: ModeClosed, Conns: 8, Payload: 100, Duration: window},
		{Mode: ModeHandshake, Conns: 4, Payload: 16, Duration: window},
		{Mode: ModeBulk, Conns: 2, Payload: 64 << 10, Duration: window},
	}
	for _, tg := range targets {
		for _, o := range modes {
			t.Run(tg.name+"/"+string(o.Mode), func(t *testing.T) {
				o.URL = tg.url
				var mu sync.Mutex
				var calls []bool
				o.OnMeasure = func(begin bool) { mu.Lock(); calls = append(calls, begin); mu.Unlock() }
				var progress strings.Builder
				o.Progress = &syncWriter{w: &progress}
				start := time.Now()
				r, err := Run(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				took := time.Since(start)
				checkAccounting(t, r)
				if len(r.Errors) != 0 {
					t.Errorf("errors %v, want none", r.Errors)
				}
				if r.Echoed == 0 || r.MsgsPerSec <= 0 {
					t.Errorf("echoed %d at %v msg/s, want some", r.Echoed, r.MsgsPerSec)
				}
				if want := o.Duration.Seconds(); r.Elapsed < want || r.Elapsed > want+0.3 {
					t.Errorf("elapsed %.3f s, want %.3f s", r.Elapsed, want)
				}
				if took > o.Warmup+o.Duration+3*time.Second {
					t.Errorf("the run took %v", took)
				}
				if len(calls) != 2 || !calls[0] || calls[1] {
					t.Errorf("OnMeasure calls %v, want [true false]", calls)
				}
				if mb := float64(r.Echoed) * float64(r.Payload) / 1e6 / r.Elapsed; math.Abs(mb-r.MBPerSec) > 1e-9*mb {
					t.Errorf("MB/s %v, want %v", r.MBPerSec, mb)
				}
				if r.Mode != o.Mode || r.URL != o.URL || r.Conns != o.Conns || r.Payload != max(o.Payload, 16) || r.Sources < 1 {
					t.Errorf("result echoes the wrong options: %+v", r)
				}
				switch o.Mode {
				case ModeIdle:
					if r.Open != 50 || r.Alive != 50 || r.Sent != 100 {
						t.Errorf("open %d alive %d sent %d, want 50 50 100", r.Open, r.Alive, r.Sent)
					}
				case ModeRate:
					// 2000/s for 0.7 s; scheduled, so close to exact.
					if want := o.Rate * r.Elapsed; math.Abs(float64(r.Sent)-want) > 0.1*want {
						t.Errorf("sent %d, want about %.0f", r.Sent, want)
					}
				case ModeHandshake:
					if r.Handshakes == 0 || r.Handshakes != r.Echoed || r.HandshakeLatency.Count != r.Handshakes || r.HandshakesPerSec <= 0 {
						t.Errorf("handshakes %d (%v/s), echoed %d, handshake latency count %d", r.Handshakes, r.HandshakesPerSec, r.Echoed, r.HandshakeLatency.Count)
					}
				}
				if o.Mode != ModeHandshake && r.HandshakeLatency.Count != int64(o.Conns) {
					t.Errorf("handshake latency count %d, want one per connection opened (%d)", r.HandshakeLatency.Count, o.Conns)
				}
				if !strings.Contains(progress.String(), "bench:") && took > 1100*time.Millisecond {
					t.Errorf("no progress line in %v", took)
				}
				waitZero(t, "echo server connections", echo.Conns)
				waitZero(t, "sluice tunnels", eng.Tunnels)
				expectGoroutines(t)
			})
		}
	}
}

// syncWriter serializes writes to w: a test reads what the progress
// goroutine wrote.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestRunRefused: a path sluice does not route is refused with a 404 on
// every connection, and a closed port gives dial errors; both end on time
// with no message counted and exit 1 from the command.
func TestRunRefused(t *testing.T) {
	echo := startEchoServer(t)
	_, proxy := startSluice(t, echo.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		o    Options
		kind string
		want int64 // exact count, or -1 for "some"
	}{
		{"unrouted path, rate", Options{Mode: ModeRate, Conns: 5, URL: "ws://" + proxy + "/nope/"}, "status_404", 5},
		{"unrouted path, idle", Options{Mode: ModeIdle, Conns: 20, URL: "ws://" + proxy + "/nope/"}, "status_404", 20},
		{"unrouted path, handshake", Options{Mode: ModeHandshake, Conns: 2, URL: "ws://" + proxy + "/nope/"}, "status_404", -1},
		{"closed port, closed", Options{Mode: ModeClosed, Conns: 5, URL: "ws://" + closed + "/"}, "dial", 5},
		{"closed port, handshake", Options{Mode: ModeHandshake, Conns: 2, URL: "ws://" + closed + "/"}, "dial", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Duration = 300 * time.Millisecond
			start := time.Now()
			r, err := Run(context.Background(), tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			checkAccounting(t, r)
			if r.Sent != 0 || r.Echoed != 0 {
				t.Errorf("sent %d echoed %d, want 0 0", r.Sent, r.Echoed)
			}
			if got := r.Errors[tt.kind]; (tt.want >= 0 && got != tt.want) || got == 0 || len(r.Errors) != 1 {
				t.Errorf("errors %v, want only %s (%d)", r.Errors, tt.kind, tt.want)
			}
			expectGoroutines(t)
		})
	}
	var out, errOut strings.Builder
	if code := Command([]string{"closed", "-q", "-d", "200ms", "-c", "2", "ws://" + proxy + "/nope/"}, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "status_404 2") || !strings.Contains(errOut.String(), "no message was echoed") {
		t.Errorf("command against a refusing path: exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
}

// TestRunCancel: cancelling the context ends a run early, with a partial
// result that still adds up, and leaves no goroutine behind.
func TestRunCancel(t *testing.T) {
	echo := startEchoServer(t)
	for _, mode := range []Mode{ModeIdle, ModeRate, ModeBulk, ModeHandshake} {
		t.Run(string(mode), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			o := Options{Mode: mode, URL: "ws://" + echo.Addr() + "/", Conns: 4, Duration: time.Minute, Warmup: 100 * time.Millisecond}
			// The leak check sees a run's goroutines while it runs (after
			// the warmup, they are all running).
			during := 0
			o.OnMeasure = func(begin bool) {
				if begin {
					during, _ = loadGoroutines()
				}
			}
			if mode == ModeBulk {
				o.Payload = 64 << 10
			}
			start := time.Now()
			r, err := Run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("cancelled run took %v", took)
			}
			checkAccounting(t, r)
			if r.Echoed == 0 || r.Elapsed <= 0 || r.Elapsed > 1 {
				t.Errorf("echoed %d in %.3f s, want a partial window", r.Echoed, r.Elapsed)
			}
			if during < 2 {
				t.Errorf("%d load generator goroutines seen during the run: the leak check sees nothing", during)
			}
			expectGoroutines(t)
		})
	}
}

// TestRunTimeout: echoes that never come are counted as "timeout" once
// the window ends, within Timeout.
func TestRunTimeout(t *testing.T) {
	// A server that upgrades and then reads without ever echoing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				buf := make([]byte, 4096)
				n, _ := nc.Read(buf)
				key := ""
				for _, line := range strings.Split(string(buf[:n]), "\r\n") {
					if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
						key = strings.TrimSpace(v)
					}
				}
				_, _ = nc.Write([]byte(valid101(key)))
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
				}
			})
		}
	})
	for _, mode := range []Mode{ModeRate, ModeBulk, ModeClosed} {
		t.Run(string(mode), func(t *testing.T) {
			o := Options{Mode: mode, URL: "ws://" + ln.Addr().String() + "/", Conns: 3, Payload: 32, Duration: 200 * time.Millisecond, Timeout: 300 * time.Millisecond}
			start := time.Now()
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			checkAccounting(t, r)
			if r.Sent == 0 || r.Echoed != 0 || r.Errors[KindTimeout] != r.Sent {
				t.Errorf("sent %d echoed %d errors %v, want every message a timeout", r.Sent, r.Echoed, r.Errors)
			}
		})
	}
}

// TestRunCancelDuringUpgrade: a target that accepts but never answers the
// upgrade does not hold a cancelled run for Timeout, and the upgrades cut
// short by the cancellation are not counted as failures.
func TestRunCancelDuringUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
		}
	})
	defer func() {
		ln.Close()
		wg.Wait()
		for _, nc := range held {
			nc.Close()
		}
	}()
	for _, mode := range []Mode{ModeIdle, ModeHandshake} {
		t.Run(string(mode), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			r, err := Run(ctx, Options{Mode: mode, URL: "ws://" + ln.Addr().String() + "/", Conns: 20, Duration: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("cancelled run took %v (Timeout is 10s)", took)
			}
			checkAccounting(t, r)
			if len(r.Errors) != 0 || r.Sent != 0 || r.Open != 0 {
				t.Errorf("errors %v, sent %d, open %d: want nothing counted", r.Errors, r.Sent, r.Open)
			}
			expectGoroutines(t)
		})
	}
}
