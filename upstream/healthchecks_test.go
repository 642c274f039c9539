package upstream

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/handshake"
)

// wsBackend is a real WebSocket server (gorilla) that can be killed and
// brought back on the same port.
type wsBackend struct {
	addr   string
	checks atomic.Int64 // upgrades served

	mu    sync.Mutex
	srv   *http.Server
	conns []*websocket.Conn
}

func startWS(t *testing.T) *wsBackend {
	t.Helper()
	b := &wsBackend{addr: "127.0.0.1:0"}
	b.start(t)
	t.Cleanup(b.kill)
	return b
}

func (b *wsBackend) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.checks.Add(1)
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *wsBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
	}
	for _, c := range b.conns {
		_ = c.Close()
	}
	b.conns = nil
}

func (b *wsBackend) addrPort() netip.AddrPort { return netip.MustParseAddrPort(b.addr) }

// rawServer answers every connection with reply(request head), then keeps
// the connection open until the test ends.
func rawServer(t *testing.T, reply func(head string) string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := r.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(reply(head.String())))
				<-done
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func keyOf(head string) string {
	for _, l := range strings.Split(head, "\r\n") {
		if k, ok := strings.CutPrefix(strings.ToLower(l), "sec-websocket-key: "); ok {
			return strings.TrimSpace(l[len(l)-len(k):])
		}
	}
	return ""
}

func TestCheck(t *testing.T) {
	good := startWS(t)
	wrongAccept := rawServer(t, func(string) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
	})
	mute := rawServer(t, func(h string) string { // a right 101, then silence
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			string(handshake.ComputeAccept(nil, []byte(keyOf(h)))) + "\r\n\r\n"
	})
	ok200 := rawServer(t, func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	err500 := rawServer(t, func(string) string { return "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n" })
	closed := netip.MustParseAddrPort(freePort(t))

	ws := HealthCheck{Path: "/", Timeout: 500 * time.Millisecond, Ping: true}
	noPing := ws
	noPing.Ping = false
	httpCheck := HealthCheck{HTTP: true, Path: "/health", Timeout: 500 * time.Millisecond}
	expect5xx := httpCheck
	expect5xx.Expect = []StatusRange{{500, 599}}
	tests := []struct {
		name string
		hc   HealthCheck
		addr netip.AddrPort
		ok   bool
	}{
		{"websocket with ping", ws, good.addrPort(), true},
		{"websocket without ping", noPing, good.addrPort(), true},
		{"wrong accept", ws, wrongAccept, false},
		{"no pong", ws, mute, false},
		{"no close back", noPing, mute, false},
		{"200 is not an upgrade", ws, ok200, false},
		{"closed port", ws, closed, false},
		{"http 200", httpCheck, ok200, true},
		{"http 500", httpCheck, err500, false},
		{"http 500 expected", expect5xx, err500, true},
		{"http closed port", httpCheck, closed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := tt.hc.withDefaults()
			start := time.Now()
			err := hc.Check(context.Background(), tt.addr)
			if (err == nil) != tt.ok {
				t.Fatalf("Check = %v, want ok=%v", err, tt.ok)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("check took %v with a 500ms timeout", d)
			}
			t.Logf("%v", err)
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestActiveHealth: a killed backend is marked unhealthy within fall
// intervals and gets no tunnel; brought back, it serves again after rise
// passing checks. Stop ends the checker goroutine.
func TestActiveHealth(t *testing.T) {
	base := runtime.NumGoroutine()
	a, b := startWS(t), startWS(t)
	var mu sync.Mutex
	var events []Event
	g, err := New(Config{
		Name:    "hc",
		Servers: []ServerConfig{{Address: a.addr}, {Address: b.addr}},
		HealthCheck: &HealthCheck{
			Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
			Rise: 2, Fall: 1, Ping: true,
		},
	}, Options{OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	var sb *Server
	for _, s := range g.Servers() {
		if s.Addr.String() == b.addr {
			sb = s
		}
	}
	waitFor(t, time.Second, "first checks", func() bool { return a.checks.Load() > 0 && b.checks.Load() > 0 })

	b.kill()
	killed := time.Now()
	waitFor(t, time.Second, "b unhealthy", func() bool { return sb.State() == StateUnhealthy })
	t.Logf("unhealthy %v after the kill (interval 50ms, fall 1)", time.Since(killed).Round(time.Millisecond))
	if d := time.Since(killed); d > 400*time.Millisecond {
		t.Errorf("marked unhealthy after %v: more than one interval plus the timeout", d)
	}
	for i := 0; i < 20; i++ {
		var sel Selection
		s, err := g.Next(&sel)
		if err != nil || s == sb {
			t.Fatalf("pick %d: %v %v while b is unhealthy", i, s, err)
		}
		s.Answered()
	}

	b.start(t)
	back := time.Now()
	waitFor(t, 2*time.Second, "b healthy again", func() bool { return sb.State() == StateUp })
	if d := time.Since(back); d < 50*time.Millisecond {
		t.Errorf("healthy again after %v: rise 2 needs two checks", d)
	}
	mu.Lock()
	kinds := []EventKind{}
	for _, e := range events {
		if e.Server == sb {
			kinds = append(kinds, e.Kind)
		}
	}
	mu.Unlock()
	if len(kinds) != 2 || kinds[0] != EventUnhealthy || kinds[1] != EventHealthy {
		t.Errorf("events for b: %v, want unhealthy then healthy", kinds)
	}

	g.Stop()
	g.Stop() // idempotent
	a.kill()
	b.kill()
	waitFor(t, 2*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
	before := a.checks.Load()
	time.Sleep(120 * time.Millisecond)
	if a.checks.Load() != before {
		t.Fatal("checks went on after Stop")
	}
}

// TestStopCutsCheckShort: Stop does not wait for a check's timeout.
func TestStopCutsCheckShort(t *testing.T) {
	mute := rawServer(t, func(string) string { return "" })
	g, err := New(Config{Servers: []ServerConfig{{Address: mute.String()}},
		HealthCheck: &HealthCheck{Interval: time.Hour, Timeout: 10 * time.Second}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	time.Sleep(50 * time.Millisecond) // the check is waiting for an answer
	start := time.Now()
	g.Stop()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Stop took %v", d)
	}
	if g.Servers()[0].State() != StateUp {
		t.Fatal("a check cut short by Stop counted as a failure")
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
