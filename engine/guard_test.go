package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-proxy/sluice/configs"
)

// Admission tests: each rule from raw sockets, allowed and refused, with
// client source addresses 127.0.0.2, 127.0.0.3, ... (all of 127/8 is
// loopback on Linux), and the backend's view checked: a refused request
// never reaches it.

// startGuarded is startProxy with an observed access log.
func startGuarded(t testing.TB, toml string) (*proxy, *observer.ObservedLogs) {
	t.Helper()
	addr := freeAddr(t)
	toml = strings.ReplaceAll(toml, "{{listen}}", addr)
	cfg, err := configs.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	cfg.Workers = 2
	core, logs := observer.New(zap.InfoLevel)
	e, err := New(cfg, Logs{Access: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitListening(t, addr)
	return &proxy{addr: addr, e: e}, logs
}

// head is a valid upgrade request for path with extra header lines.
func head(path string, extra ...string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// openFrom sends req from src and returns the connection and the response
// head (up to the blank line). A 101 leaves a live tunnel on c.
func openFrom(t testing.TB, src, addr, req string) (net.Conn, string) {
	t.Helper()
	c := dialFrom(t, src, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got []byte
	buf := make([]byte, 1024)
	for !strings.Contains(string(got), "\r\n\r\n") {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, string(got)
}

// statusFrom is openFrom for a one-shot exchange.
func statusFrom(t testing.TB, src, addr, req string) (int, string) {
	t.Helper()
	c, resp := openFrom(t, src, addr, req)
	c.Close()
	return statusOf(resp), resp
}

func (b *backend) seen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.uris)
}

func TestOriginRules(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, logs := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  origins = ["https://example.com", "https://*.example.org", "http://localhost:8080"]
  origin_missing = "deny"
  [[server.location]]
  path = "/same/"
  proxy_pass = %[1]q
  same_origin = true
  [[server.location]]
  path = "/null/"
  proxy_pass = %[1]q
  origins = ["null"]
`, be.addr))
	tests := []struct {
		path   string
		origin []string
		want   int
	}{
		{"/ws/", []string{"Origin: https://example.com"}, 101},
		{"/ws/", []string{"Origin: HTTPS://EXAMPLE.COM"}, 101},     // mixed case
		{"/ws/", []string{"Origin: https://Example.com:443"}, 101}, // default port
		{"/ws/", []string{"Origin: https://chat.example.org"}, 101},
		{"/ws/", []string{"Origin: http://localhost:8080"}, 101},
		{"/ws/", nil, 403},                                          // missing, origin_missing = deny
		{"/ws/", []string{"Origin: null"}, 403},                     // opaque, not listed
		{"/ws/", []string{"Origin: https://example.com:8443"}, 403}, // another port
		{"/ws/", []string{"Origin: https://example.com."}, 403},     // trailing dot
		{"/ws/", []string{"Origin: https://example.com.evil.net"}, 403},
		{"/ws/", []string{"Origin: https://evil.net"}, 403},
		{"/ws/", []string{"Origin: http://example.com"}, 403},  // scheme
		{"/ws/", []string{"Origin: https://example.org"}, 403}, // wildcard needs a label
		{"/ws/", []string{"Origin: https://example.com/"}, 403},
		{"/ws/", []string{"Origin: http://localhost"}, 403},
		{"/ws/", []string{"Origin: https://evil.net", "Origin: https://example.com"}, 403}, // two Origins
		{"/same/", []string{"Origin: https://example.com"}, 101},                           // Host: example.com
		{"/same/", []string{"Origin: https://example.com."}, 403},
		{"/same/", []string{"Origin: https://www.example.com"}, 403},
		{"/same/", nil, 101}, // origin_missing defaults to allow
		{"/null/", []string{"Origin: null"}, 101},
		{"/null/", []string{"Origin: https://example.com"}, 403},
	}
	refused := 0
	for _, tt := range tests {
		before := be.seen()
		got, resp := statusFrom(t, "127.0.0.2", p.addr, head(tt.path, tt.origin...))
		if got != tt.want {
			t.Errorf("%s %v: status %d, want %d\n%s", tt.path, tt.origin, got, tt.want, resp)
		}
		if tt.want == 403 {
			refused++
			if be.seen() != before {
				t.Errorf("%s %v: a refused request reached the backend", tt.path, tt.origin)
			}
			if !strings.Contains(resp, "origin") {
				t.Errorf("403 body does not name the rule:\n%s", resp)
			}
		}
	}
	if n := p.e.Refusals()[RuleOrigin]; n != int64(refused) {
		t.Errorf("Refusals()[origin] = %d, want %d", n, refused)
	}
	if n := logs.FilterMessage("refused").FilterField(zap.String("rule", RuleOrigin)).Len(); n != refused {
		t.Errorf("%d access-log lines with rule=origin, want %d", n, refused)
	}
}

func TestAllowDenyRules(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, logs := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
allow = ["127.0.0.2", "127.0.0.3", "::1"]
deny = ["all"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  [[server.location]]
  path = "/ws/private/"
  proxy_pass = %[1]q
  deny = ["127.0.0.3"]
`, be.addr))
	tests := []struct {
		src, path string
		want      int
	}{
		{"127.0.0.2", "/ws/", 101},
		{"127.0.0.3", "/ws/", 101},
		{"127.0.0.4", "/ws/", 403}, // server: deny all
		{"127.0.0.4", "/ws/private/", 403},
		{"127.0.0.2", "/ws/private/", 101},
		{"127.0.0.3", "/ws/private/", 403}, // location deny
		// A forged X-Forwarded-For from an untrusted peer changes nothing.
		{"127.0.0.4", "/ws/", 403},
	}
	for i, tt := range tests {
		before := be.seen()
		var extra []string
		if i == len(tests)-1 {
			extra = []string{"X-Forwarded-For: 127.0.0.2"}
		}
		got, resp := statusFrom(t, tt.src, p.addr, head(tt.path, extra...))
		if got != tt.want {
			t.Errorf("%s %s: %d, want %d\n%s", tt.src, tt.path, got, tt.want, resp)
		}
		if tt.want == 403 && be.seen() != before {
			t.Errorf("%s %s: refused request reached the backend", tt.src, tt.path)
		}
	}
	if n := p.e.Refusals()[RuleAccess]; n != 4 {
		t.Errorf("Refusals()[access] = %d, want 4", n)
	}
	if n := logs.FilterField(zap.String("rule", RuleAccess)).Len(); n != 4 {
		t.Errorf("%d log lines with rule=access", n)
	}
}

func TestRealIPFromTrustedProxyOnly(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
real_ip_from = ["127.0.0.2", "10.0.0.0/8"]
deny = ["198.51.100.7"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	tests := []struct {
		name, src, xff string
		want           int
		realIP         string
	}{
		{"trusted proxy, denied client", "127.0.0.2", "198.51.100.7", 403, ""},
		{"trusted proxy, client behind a trusted hop", "127.0.0.2", "198.51.100.7, 10.1.1.1", 403, ""},
		{"trusted proxy, allowed client", "127.0.0.2", "203.0.113.5", 101, "203.0.113.5"},
		{"forged left part ignored", "127.0.0.2", "198.51.100.7, 203.0.113.5", 101, "203.0.113.5"},
		{"untrusted peer: forged header ignored", "127.0.0.3", "203.0.113.5", 101, "127.0.0.3"},
		{"untrusted peer cannot get itself denied by forging", "127.0.0.3", "198.51.100.7", 101, "127.0.0.3"},
	}
	for _, tt := range tests {
		before := be.seen()
		got, resp := statusFrom(t, tt.src, p.addr, head("/ws/", "X-Forwarded-For: "+tt.xff))
		if got != tt.want {
			t.Errorf("%s: %d, want %d\n%s", tt.name, got, tt.want, resp)
			continue
		}
		if tt.want != 101 {
			if be.seen() != before {
				t.Errorf("%s: reached the backend", tt.name)
			}
			continue
		}
		h, _, _ := be.lastHeader(t)
		if ip := h.Get("X-Real-Ip"); ip != tt.realIP {
			t.Errorf("%s: backend saw X-Real-IP %q, want %q", tt.name, ip, tt.realIP)
		}
		if xff := h.Get("X-Forwarded-For"); !strings.HasSuffix(xff, tt.realIP) {
			t.Errorf("%s: X-Forwarded-For %q does not end in %s", tt.name, xff, tt.realIP)
		}
	}
}

func proxyV2(src string, sport uint16) string {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	a := net.ParseIP(src).To4()
	b = append(b, a...)
	b = append(b, 127, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, 80)
	return string(b)
}

func TestProxyProtocol(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
proxy_protocol = true
real_ip_from = ["127.0.0.2"]
real_ip_header = "proxy_protocol"
deny = ["198.51.100.7"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	tests := []struct {
		name, src, pre string
		want           int
		realIP         string
	}{
		{"v1 from trusted, denied client", "127.0.0.2", "PROXY TCP4 198.51.100.7 127.0.0.1 5000 80\r\n", 403, ""},
		{"v1 from trusted", "127.0.0.2", "PROXY TCP4 203.0.113.5 127.0.0.1 5000 80\r\n", 101, "203.0.113.5"},
		{"v2 from trusted", "127.0.0.2", proxyV2("203.0.113.6", 5001), 101, "203.0.113.6"},
		{"v2 from trusted, denied", "127.0.0.2", proxyV2("198.51.100.7", 5001), 403, ""},
		{"v1 UNKNOWN: the peer's address", "127.0.0.2", "PROXY UNKNOWN\r\n", 101, "127.0.0.2"},
		{"untrusted peer: header stripped, not believed", "127.0.0.3", "PROXY TCP4 198.51.100.7 127.0.0.1 5000 80\r\n", 101, "127.0.0.3"},
		{"no header", "127.0.0.2", "", 400, ""},
		{"malformed header", "127.0.0.2", "PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n", 400, ""},
	}
	for _, tt := range tests {
		before := be.seen()
		got, resp := statusFrom(t, tt.src, p.addr, tt.pre+head("/ws/"))
		if got != tt.want {
			t.Errorf("%s: %d, want %d\n%s", tt.name, got, tt.want, resp)
			continue
		}
		if tt.want != 101 {
			if be.seen() != before {
				t.Errorf("%s: reached the backend", tt.name)
			}
			continue
		}
		h, _, _ := be.lastHeader(t)
		if ip := h.Get("X-Real-Ip"); ip != tt.realIP {
			t.Errorf("%s: backend saw X-Real-IP %q, want %q", tt.name, ip, tt.realIP)
		}
	}
	// The header split across writes.
	c := dialFrom(t, "127.0.0.2", p.addr)
	defer c.Close()
	whole := "PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n" + head("/ws/")
	for _, part := range []string{whole[:7], whole[7:30], whole[30:50], whole[50:]} {
		_, _ = io.WriteString(c, part)
		time.Sleep(20 * time.Millisecond)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if statusOf(string(buf[:n])) != 101 {
		t.Fatalf("split PROXY header: %q", buf[:n])
	}
	if h, _, _ := be.lastHeader(t); h.Get("X-Real-Ip") != "203.0.113.9" {
		t.Errorf("split header: X-Real-IP %q", h.Get("X-Real-Ip"))
	}
	if n := p.e.Refusals()[RuleProxyProtocol]; n != 2 {
		t.Errorf("Refusals()[proxy_protocol] = %d, want 2", n)
	}
}

func TestLimitReq(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, logs := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
limit_req = { rate = "1r/m", burst = 2 }
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  [[server.location]]
  path = "/ws/own/"
  proxy_pass = %[1]q
  limit_req = { rate = "1r/m" }
`, be.addr))
	for i := 0; i < 3; i++ { // 1 + burst
		if got, resp := statusFrom(t, "127.0.0.2", p.addr, head("/ws/")); got != 101 {
			t.Fatalf("handshake %d: %d\n%s", i+1, got, resp)
		}
	}
	before := be.seen()
	got, resp := statusFrom(t, "127.0.0.2", p.addr, head("/ws/"))
	if got != 429 || !strings.Contains(resp, "Retry-After: 60\r\n") || !strings.Contains(resp, "limit_req") {
		t.Fatalf("4th: want 429 with Retry-After: 60, got\n%s", resp)
	}
	if be.seen() != before {
		t.Error("a rate-limited request reached the backend")
	}
	if got, _ := statusFrom(t, "127.0.0.3", p.addr, head("/ws/")); got != 101 {
		t.Errorf("another address: %d", got)
	}
	// A location's own limit_req has its own buckets.
	if got, _ := statusFrom(t, "127.0.0.2", p.addr, head("/ws/own/")); got != 101 {
		t.Errorf("location override: %d", got)
	}
	if got, _ := statusFrom(t, "127.0.0.2", p.addr, head("/ws/own/")); got != 429 {
		t.Errorf("location override, 2nd: %d", got)
	}
	if n := p.e.Refusals()[RuleLimitReq]; n != 2 {
		t.Errorf("Refusals()[limit_req] = %d", n)
	}
	if n := logs.FilterField(zap.String("rule", RuleLimitReq)).Len(); n != 2 {
		t.Errorf("%d log lines with rule=limit_req", n)
	}
}

func TestLimitReqStatus503(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
[[server]]
listen = ["{{listen}}"]
limit_req = { rate = "1r/s" }
limit_req_status = 503
limit_conn = 1
limit_conn_status = 429
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	c, resp := openFrom(t, "127.0.0.2", p.addr, head("/ws/"))
	defer c.Close()
	if statusOf(resp) != 101 {
		t.Fatal(resp)
	}
	if got, resp := statusFrom(t, "127.0.0.2", p.addr, head("/ws/")); got != 503 || !strings.Contains(resp, "Retry-After: 1") {
		t.Errorf("limit_req_status 503: %d\n%s", got, resp)
	}
	if got, _ := statusFrom(t, "127.0.0.3", p.addr, head("/ws/")); got != 101 {
		t.Errorf("other address: %d", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if got, _ := statusFrom(t, "127.0.0.2", p.addr, head("/ws/")); got != 429 {
		t.Errorf("limit_conn_status 429: %d", got)
	}
}

func TestLimitConn(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
limit_conn = 10
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	base := openFDs(t)
	var tunnels []net.Conn
	for i := 0; i < 10; i++ {
		c, resp := openFrom(t, "127.0.0.2", p.addr, head("/ws/"))
		if statusOf(resp) != 101 {
			t.Fatalf("tunnel %d: %s", i+1, resp)
		}
		tunnels = append(tunnels, c)
	}
	before := be.seen()
	got, resp := statusFrom(t, "127.0.0.2", p.addr, head("/ws/"))
	if got != 503 || !strings.Contains(resp, "limit_conn") {
		t.Fatalf("11th: %d\n%s", got, resp)
	}
	if be.seen() != before {
		t.Error("the 11th reached the backend")
	}
	c, resp := openFrom(t, "127.0.0.3", p.addr, head("/ws/"))
	if statusOf(resp) != 101 {
		t.Fatalf("another address: %s", resp)
	}
	c.Close()
	// A closed tunnel frees its slot (released when splice reports the end).
	tunnels[0].Close()
	tunnels = tunnels[1:]
	waitFor(t, "slot freed", func() bool {
		c, resp := openFrom(t, "127.0.0.2", p.addr, head("/ws/"))
		if statusOf(resp) == 101 {
			tunnels = append(tunnels, c)
			return true
		}
		c.Close()
		return false
	})
	for _, c := range tunnels {
		c.Close()
	}
	lim := p.e.rt().listeners[0].servers[0].locations[0].guard.conns
	waitFor(t, "all slots back", func() bool { return lim.Total() == 0 })

	// Churn: no slot leaks. 8 clients from one address, well under the
	// limit, open, get their 101, and close, N times over.
	// 10,000 as the issue asks; 2,000 under -race or -short, where 10,000
	// took 6 to 30 s on a 2-CPU machine.
	churn := 10000
	if raceEnabled || testing.Short() {
		churn = 2000
	}
	refusedBefore := p.e.Refusals()[RuleLimitConn]
	start := time.Now()
	var ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < churn/8; i++ {
				c, resp := openFrom(t, "127.0.0.4", p.addr, head("/ws/"))
				// Reset rather than FIN: 10,000 client sockets in
				// TIME_WAIT on one source address would exhaust its
				// ephemeral ports (bind: address already in use). The
				// graceful close is covered above.
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				switch statusOf(resp) {
				case 101:
					ok.Add(1)
				case 503:
					refused.Add(1)
				default:
					other.Add(1)
					if other.Load() < 4 {
						t.Logf("churn: %q", resp)
					}
				}
			}
		}()
	}
	wg.Wait()
	// A slot is given back when splice reports the tunnel's end, after
	// both sides closed; a client that reconnects at once can meet its own
	// previous slot still held, and get a 503 (nginx behaves the same).
	t.Logf("churned %d connections in %v (%d tunnels, %d refused by limit_conn while slots were being given back, %d other)",
		churn, time.Since(start), ok.Load(), refused.Load(), other.Load())
	if ok.Load() < int64(churn)/2 || other.Load() > 0 {
		t.Errorf("only %d of %d churned handshakes succeeded, %d failed otherwise than by limit_conn", ok.Load(), churn, other.Load())
	}
	waitFor(t, "no slot leaked after churn", func() bool { return lim.Total() == 0 && p.e.Pending() == 0 })
	expectFDs(t, base)
	if n := p.e.Refusals()[RuleLimitConn] - refusedBefore; n != refused.Load() {
		t.Errorf("limit_conn refusals counted during churn: %d, want %d", n, refused.Load())
	}
	for i := 0; i < 10; i++ {
		c, resp := openFrom(t, "127.0.0.4", p.addr, head("/ws/"))
		if statusOf(resp) != 101 {
			t.Fatalf("after churn, tunnel %d: %s", i+1, resp)
		}
		defer c.Close()
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandshakeFloodIsolation: one address floods handshakes far over its
// limit_req while another address's handshakes are timed. The flood is
// refused in the event loop at the cost of a parse and a 429; the other
// address's median handshake must not slow by more than 3x.
func TestHandshakeFloodIsolation(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
limit_req = { rate = "50r/s", burst = 200 }
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	measure := func(src string, n int) time.Duration {
		var ds []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			got, resp := statusFrom(t, src, p.addr, head("/ws/"))
			ds = append(ds, time.Since(t0))
			if got != 101 {
				t.Fatalf("measured handshake %d: %d\n%s", i, got, resp)
			}
			time.Sleep(5 * time.Millisecond)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	calm := measure("127.0.0.3", 40)

	stop := make(chan struct{})
	var flood, floodRefused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			buf := make([]byte, 512)
			req := []byte(head("/ws/"))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", p.addr)
				if err != nil {
					continue
				}
				_, _ = c.Write(req)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _ := c.Read(buf)
				c.Close()
				flood.Add(1)
				if statusOf(string(buf[:n])) == 429 {
					floodRefused.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	loaded := measure("127.0.0.3", 40)
	close(stop)
	wg.Wait()
	ratio := float64(loaded) / float64(calm)
	t.Logf("median handshake of 127.0.0.3: %v calm, %v under a flood of %d handshakes from 127.0.0.2 (%d refused with 429): ratio %.2f",
		calm, loaded, flood.Load(), floodRefused.Load(), ratio)
	if floodRefused.Load() == 0 {
		t.Error("the flood was never rate limited")
	}
	if ratio > 3 {
		t.Errorf("flood slowed another address's handshakes %.2fx (want < 3x)", ratio)
	}
}

// TestMaxConnectionsUnderLowFDLimit runs sluice as a child with `ulimit -n
// 200` against 400 connections: it holds at most max_connections of them
// (derived from the limit: 50), leaves the rest waiting in the backlog
// (none is closed), serves what it holds, takes waiting ones as places
// free, and never meets EMFILE or exits.
func TestMaxConnectionsUnderLowFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a child sluice")
	}
	be := startBackend(t, backendOpts{})
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, "github.com/sluice-proxy/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sluice.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
workers = 2
[log]
access_log = "off"
level = "warn"
[[server]]
listen = [%q]
client_header_timeout = "30s"
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, addr, be.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	child := exec.Command("sh", "-c", "ulimit -n 200 && exec \"$0\" --config \"$1\"", bin, cfg)
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = child.Wait(); close(exited) }()
	defer func() {
		_ = child.Process.Kill()
		<-exited
	}()
	waitListening(t, addr)
	alive := func() {
		t.Helper()
		select {
		case <-exited:
			t.Fatalf("sluice exited: %v\n%s", waitErr, stderr.String())
		default:
		}
	}
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", child.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}

	// (200 - 100) / 2 = 50 client connections. Open 400, concurrently, so
	// that they arrive as a burst in the backlog, and send each a head.
	conns := make([]net.Conn, 400)
	var dials sync.WaitGroup
	var dialErrs atomic.Int64
	for w := 0; w < 16; w++ {
		dials.Add(1)
		go func(w int) {
			defer dials.Done()
			for i := w; i < len(conns); i += 16 {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				conns[i] = c
				_, _ = io.WriteString(c, head("/ws/"))
			}
		}(w)
	}
	dials.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if n := dialErrs.Load(); n > 0 {
		t.Errorf("%d of %d connections failed to connect: the backlog should hold them", n, len(conns))
	}
	// answered reads each unanswered connection for up to d, concurrently:
	// how many got a 101 (those become tunnels and stay held) and how many
	// were closed or answered otherwise.
	done := make([]bool, len(conns))
	answered := func(d time.Duration) (ok, bad int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, c := range conns {
			if c == nil || done[i] {
				continue
			}
			wg.Add(1)
			go func(i int, c net.Conn) {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(d))
				buf := make([]byte, 512)
				n, err := c.Read(buf)
				if err != nil && os.IsTimeout(err) {
					return // still waiting
				}
				mu.Lock()
				defer mu.Unlock()
				done[i] = true
				if statusOf(string(buf[:n])) == 101 {
					ok++
				} else {
					bad++
				}
			}(i, c)
		}
		wg.Wait()
		return ok, bad
	}
	ok, bad := answered(time.Second)
	n := fds()
	t.Logf("of %d connections, %d became tunnels through a sluice with ulimit -n 200 (%d fds open); the rest wait", len(conns), ok, n)
	alive()
	if ok == 0 || ok > 50 || bad > 0 {
		t.Fatalf("%d tunnels, %d connections closed or refused; want 1..50 and 0", ok, bad)
	}
	if n >= 200 {
		t.Errorf("%d fds open under a limit of 200", n)
	}
	// Free the places: waiting connections are taken, and their heads,
	// sent long ago, answered.
	for i, c := range conns {
		if done[i] && c != nil {
			c.Close()
			conns[i] = nil
		}
	}
	ok2, bad2 := answered(3 * time.Second)
	t.Logf("after the first %d closed: %d more tunnels", ok, ok2)
	alive()
	if ok2 == 0 || bad2 > 0 {
		t.Fatalf("after places freed: %d more tunnels, %d closed or refused", ok2, bad2)
	}
	// Release everything: sluice serves new clients again.
	for i, c := range conns {
		if c != nil {
			c.Close()
			conns[i] = nil
		}
	}
	waitFor(t, "the held connections to go", func() bool { return fds() < 50 })
	if got := statusOfRaw(t, addr); got != 101 {
		t.Fatalf("after the flood: %d", got)
	}
	alive()
	if strings.Contains(stderr.String(), "too many open files") {
		t.Errorf("met EMFILE:\n%s", stderr.String())
	}
}

func statusOfRaw(t testing.TB, addr string) int {
	t.Helper()
	c, resp := openFrom(t, "127.0.0.1", addr, head("/ws/"))
	c.Close()
	return statusOf(resp)
}

// lockedBuffer collects a child's stderr, written by os/exec's copying
// goroutine while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMaxConnectionsConfigured: at max_connections a plaintext listener
// stops accepting. The next client's connection waits in the kernel's
// backlog: it is not closed, and the head it sends is not answered, until
// a held connection ends; then it is served. Nothing is refused.
func TestMaxConnectionsConfigured(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p, _ := startGuarded(t, fmt.Sprintf(`
max_connections = 3
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, be.addr))
	if p.e.MaxConnections() != 3 {
		t.Fatalf("MaxConnections() = %d", p.e.MaxConnections())
	}
	waitFor(t, "probes to end", func() bool { return p.e.Pending() == 0 })
	tunnel, resp := openFrom(t, "127.0.0.2", p.addr, head("/ws/"))
	defer tunnel.Close()
	if statusOf(resp) != 101 {
		t.Fatal(resp)
	}
	var idle []net.Conn
	for i := 0; i < 2; i++ {
		idle = append(idle, dialFrom(t, "127.0.0.2", p.addr))
	}
	waitFor(t, "3 held", func() bool { return p.e.Pending() == 3 })
	extra := dialFrom(t, "127.0.0.3", p.addr) // completes in the kernel: the backlog
	defer extra.Close()
	if _, err := io.WriteString(extra, head("/ws/")); err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := extra.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("the 4th connection at the cap: read n=%d err=%v, want a timeout (waiting, not closed)", n, err)
	}
	if n := p.e.Pending(); n != 3 {
		t.Errorf("Pending() = %d at the cap, want 3", n)
	}
	if n := p.e.Refusals()[RuleMaxConnections]; n != 0 {
		t.Errorf("Refusals()[max_connections] = %d, want 0: nothing is shed", n)
	}
	if n := p.e.guards.pauses.Load(); n == 0 {
		t.Error("no accept pause counted")
	}
	// The held ones are still served.
	if _, err := io.WriteString(idle[0], head("/ws/")); err != nil {
		t.Fatal(err)
	}
	_ = idle[0].SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	if n, _ := idle[0].Read(buf); statusOf(string(buf[:n])) != 101 {
		t.Fatalf("held connection: %q", buf[:n])
	}
	// A place frees: the waiting connection is accepted and its head,
	// sent long ago, is answered.
	idle[1].Close()
	_ = extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _ := extra.Read(buf); statusOf(string(buf[:n])) != 101 {
		t.Fatalf("the waiting connection after a place freed: %q", buf[:n])
	}
	idle[0].Close()
}
