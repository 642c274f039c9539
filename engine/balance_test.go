package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
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

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/upstream"
)

// Tests of upstream groups through a real sluice: real gorilla backends
// that say who they are in their 101 (X-Backend), real upgrades from raw
// client sockets, sometimes bound to chosen loopback sources (Linux
// routes all of 127/8 to lo).

// lbBackend is a WebSocket echo backend that names itself in its 101 and
// can be killed (listener and every connection closed) and brought back
// on the same port.
type lbBackend struct {
	name     string
	addr     string
	upgrades atomic.Int64

	mu    sync.Mutex
	srv   *http.Server
	conns []*websocket.Conn
}

func startLB(t *testing.T, name string) *lbBackend {
	t.Helper()
	b := &lbBackend{name: name, addr: "127.0.0.1:0"}
	b.start(t)
	t.Cleanup(b.kill)
	return b
}

func (b *lbBackend) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
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
		c, err := up.Upgrade(w, r, http.Header{"X-Backend": {b.name}})
		if err != nil {
			return
		}
		b.upgrades.Add(1)
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *lbBackend) kill() {
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

// lbProxy starts sluice on a config whose {{listen}} is addr ("" for a
// free one) and {{a}}, {{b}}, ... are the backends' addresses. stop ends
// it early (a restart); otherwise cleanup does.
func lbProxy(t *testing.T, tmpl, addr string, bes ...*lbBackend) (*proxy, func()) {
	t.Helper()
	if addr == "" {
		addr = freeAddr(t)
	}
	text := strings.ReplaceAll(tmpl, "{{listen}}", addr)
	for i, b := range bes {
		text = strings.ReplaceAll(text, "{{"+string(rune('a'+i))+"}}", b.addr)
	}
	cfg, err := configs.Parse([]byte(text), "balance.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	cfg.Workers = 2
	e, err := New(cfg, Logs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitListening(t, addr)
	return &proxy{addr: addr, e: e}, stop
}

// group returns the proxy's only upstream group.
func (p *proxy) group(t *testing.T) *upstream.Group {
	t.Helper()
	if len(p.e.rt().groups) != 1 {
		t.Fatalf("%d groups", len(p.e.rt().groups))
	}
	return p.e.rt().groups[0]
}

// server returns the group's server for backend b.
func (p *proxy) server(t *testing.T, b *lbBackend) *upstream.Server {
	t.Helper()
	for _, s := range p.group(t).Servers() {
		if s.Addr.String() == b.addr {
			return s
		}
	}
	t.Fatalf("no server for %s", b.addr)
	return nil
}

// hs is one upgrade through the proxy.
type hs struct {
	status  int
	backend string // X-Backend of the 101
	head    string
	conn    net.Conn // open on a 101; the caller closes it
}

// upgradeVia sends an upgrade for target from source (an invalid source
// lets the kernel choose) with extra header lines, and reads the answer's
// head.
func upgradeVia(t *testing.T, addr string, source netip.Addr, target string, extra ...string) hs {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second}
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %v: %v", source, err)
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var head strings.Builder
	out := hs{}
	for {
		line, err := r.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			c.Close()
			t.Fatalf("reading the answer: %v; got %q", err, head.String())
		}
		if v, ok := strings.CutPrefix(line, "X-Backend: "); ok {
			out.backend = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	out.head = head.String()
	out.status = statusOf(out.head)
	_ = c.SetReadDeadline(time.Time{})
	if out.status == 101 {
		out.conn = c
	} else {
		c.Close()
	}
	return out
}

// through opens and closes one tunnel and returns the backend that
// served it.
func through(t *testing.T, p *proxy, source netip.Addr, target string, extra ...string) string {
	t.Helper()
	h := upgradeVia(t, p.addr, source, target, extra...)
	if h.status != 101 {
		t.Fatalf("status %d:\n%s", h.status, h.head)
	}
	h.conn.Close()
	return h.backend
}

// throughIdle is through, then waits until the proxy has finished the
// tunnel, so that least_conn sees every server idle again.
func throughIdle(t *testing.T, p *proxy, source netip.Addr, target string, extra ...string) string {
	t.Helper()
	be := through(t, p, source, target, extra...)
	waitTunnels(t, p, 0)
	return be
}

func waitTunnels(t *testing.T, p *proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for p.e.Tunnels() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d tunnels, want %d", p.e.Tunnels(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

const lbConfig = `
[log]
access_log = "off"
[upstream.g]
servers = [%s]
%s
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/"
  proxy_pass = "g"
  connect_timeout = "1s"
  handshake_timeout = "1s"
`

func lbConf(servers []string, extra string) string {
	quoted := make([]string, len(servers))
	for i, s := range servers {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf(lbConfig, strings.Join(quoted, ", "), extra)
}

var noSource netip.Addr

// TestBalanceDistribution: weights 3:1 over 400 tunnels through sluice.
// Round robin and least_conn (every server idle, ties in smooth order)
// are exact; random (every server idle, so a weighted draw), hash (400
// distinct X-User values) and ip_hash (400 client /24s) within ±40 of 300,
// about 4.6 standard deviations of a weighted draw.
func TestBalanceDistribution(t *testing.T) {
	tests := []struct {
		method    string
		tolerance int
	}{
		{`method = "round_robin"`, 0},
		{`method = "least_conn"`, 0},
		{`method = "random"`, 40},
		{"method = \"hash\"\nhash_key = \"$http_x_user\"", 40},
		{`method = "ip_hash"`, 40},
	}
	a, b := startLB(t, "a"), startLB(t, "b")
	for _, tt := range tests {
		t.Run(strings.Fields(tt.method)[2], func(t *testing.T) {
			p, _ := lbProxy(t, lbConf([]string{"{{a}} weight=3", "{{b}}"}, tt.method), "", a, b)
			n := map[string]int{}
			for i := 0; i < 400; i++ {
				src := noSource
				if strings.Contains(tt.method, "ip_hash") {
					src = netip.AddrFrom4([4]byte{127, byte(1 + i/250), byte(i % 250), 1})
				}
				hdr := fmt.Sprintf("X-User: user-%d", i)
				if strings.Contains(tt.method, "least_conn") || strings.Contains(tt.method, "random") {
					n[throughIdle(t, p, src, "/", hdr)]++
				} else {
					n[through(t, p, src, "/", hdr)]++
				}
			}
			t.Logf("%s: %v", tt.method, n)
			if d := n["a"] - 300; d < -tt.tolerance || d > tt.tolerance || n["a"]+n["b"] != 400 {
				t.Fatalf("weights 3:1 over 400: %v, want a = 300±%d", n, tt.tolerance)
			}
		})
	}
}

// TestStickyAcrossRestart: with consistent hash on a cookie, 1,000 keys
// each land on one backend, and on the same one after sluice restarts
// (a new process would build the same ring: nothing in it is seeded).
func TestStickyAcrossRestart(t *testing.T) {
	a, b, c := startLB(t, "a"), startLB(t, "b"), startLB(t, "c")
	conf := lbConf([]string{"{{a}}", "{{b}}", "{{c}}"}, "method = \"hash\"\nhash_key = \"$cookie_session\"\nconsistent = true")
	p, stop := lbProxy(t, conf, "", a, b, c)
	first := make([]string, 1000)
	n := map[string]int{}
	for i := range first {
		first[i] = through(t, p, noSource, "/", fmt.Sprintf("Cookie: theme=dark; session=s%d", i))
		n[first[i]]++
	}
	t.Logf("1000 keys over 3 backends: %v", n)
	for _, be := range []string{"a", "b", "c"} {
		if n[be] < 200 {
			t.Errorf("backend %s got %d of 1000 keys", be, n[be])
		}
	}
	addr := p.addr
	stop()
	p, _ = lbProxy(t, conf, addr, a, b, c)
	for i := range first {
		if got := through(t, p, noSource, "/", fmt.Sprintf("Cookie: session=s%d", i)); got != first[i] {
			t.Fatalf("key s%d: backend %s after the restart, %s before", i, got, first[i])
		}
	}
	// A request without the cookie is balanced, not pinned.
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		seen[through(t, p, noSource, "/")] = true
	}
	if len(seen) < 3 {
		t.Errorf("requests without the key reached %d backends", len(seen))
	}
}

// TestIPHashSources: clients in different /24s spread over the backends
// (nginx's ip_hash over 127.0.X gives each of three backends every third
// network); clients inside one /24 share a backend; the same holds after
// a restart.
func TestIPHashSources(t *testing.T) {
	a, b, c := startLB(t, "a"), startLB(t, "b"), startLB(t, "c")
	conf := lbConf([]string{"{{a}}", "{{b}}", "{{c}}"}, `method = "ip_hash"`)
	p, stop := lbProxy(t, conf, "", a, b, c)
	spread := map[string]int{}
	byNet := map[int]string{}
	for x := 2; x < 62; x++ {
		be := through(t, p, netip.AddrFrom4([4]byte{127, 0, byte(x), 1}), "/")
		spread[be]++
		byNet[x] = be
	}
	t.Logf("60 /24s: %v", spread)
	if spread["a"] != 20 || spread["b"] != 20 || spread["c"] != 20 {
		t.Errorf("60 networks over 3 backends: %v, want 20 each (nginx's ip_hash)", spread)
	}
	for host := 2; host < 40; host++ {
		if be := through(t, p, netip.AddrFrom4([4]byte{127, 0, 9, byte(host)}), "/"); be != byNet[9] {
			t.Fatalf("127.0.9.%d went to %s, 127.0.9.1 to %s", host, be, byNet[9])
		}
	}
	addr := p.addr
	stop()
	p, _ = lbProxy(t, conf, addr, a, b, c)
	for x := 2; x < 62; x++ {
		if be := through(t, p, netip.AddrFrom4([4]byte{127, 0, byte(x), 7}), "/"); be != byNet[x] {
			t.Fatalf("127.0.%d.0/24: %s after the restart, %s before", x, be, byNet[x])
		}
	}
}

// TestLeastConnHeld: with tunnels held open, new ones go where the fewest
// are; after the tunnels of two backends close, the next ones all go
// there and none to the one still holding its tunnels.
func TestLeastConnHeld(t *testing.T) {
	a, b, c := startLB(t, "a"), startLB(t, "b"), startLB(t, "c")
	p, _ := lbProxy(t, lbConf([]string{"{{a}}", "{{b}}", "{{c}}"}, `method = "least_conn"`), "", a, b, c)
	held := map[string][]net.Conn{}
	open := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			h := upgradeVia(t, p.addr, noSource, "/")
			if h.status != 101 {
				t.Fatalf("status %d", h.status)
			}
			held[h.backend] = append(held[h.backend], h.conn)
			got[h.backend]++
		}
		return got
	}
	defer func() {
		for _, cs := range held {
			for _, c := range cs {
				c.Close()
			}
		}
	}()
	if got := open(9); got["a"] != 3 || got["b"] != 3 || got["c"] != 3 {
		t.Fatalf("9 held tunnels: %v, want 3 each", got)
	}
	for _, be := range []string{"b", "c"} {
		for _, c := range held[be] {
			c.Close()
		}
		held[be] = nil
	}
	waitTunnels(t, p, 3)
	if got := open(6); got["a"] != 0 || got["b"] != 3 || got["c"] != 3 {
		t.Fatalf("with 3 tunnels held on a: %v, want 0 on a and 3 each on b and c", got)
	}
}

// TestPassiveFailover: a killed backend costs one failed attempt (the
// handshake moves on to the next server and the client still gets its
// 101), then no tunnel tries it within fail_timeout; brought back, it gets
// tunnels again once fail_timeout has passed.
func TestPassiveFailover(t *testing.T) {
	a, b, c := startLB(t, "a"), startLB(t, "b"), startLB(t, "c")
	p, _ := lbProxy(t, lbConf([]string{"{{a}} fail_timeout=1s", "{{b}} fail_timeout=1s", "{{c}} fail_timeout=1s"}, ""), "", a, b, c)
	sb := p.server(t, b)
	for i := 0; i < 6; i++ {
		through(t, p, noSource, "/")
	}
	b.kill()
	killed := time.Now()
	for i := 0; i < 30; i++ {
		if be := through(t, p, noSource, "/"); be == "b" {
			t.Fatal("the killed backend answered")
		}
	}
	if time.Since(killed) > 900*time.Millisecond {
		t.Skipf("30 handshakes took %v, longer than fail_timeout: the count below would be unsound", time.Since(killed))
	}
	if f := sb.Failures(); f != 1 {
		t.Fatalf("%d failed attempts on the killed backend, want exactly 1 (then skipped)", f)
	}
	if sb.State() != upstream.StateFailed {
		t.Fatalf("state %v, want failed", sb.State())
	}
	b.start(t)
	deadline := time.Now().Add(3 * time.Second)
	for through(t, p, noSource, "/") != "b" {
		if time.Now().After(deadline) {
			t.Fatal("the backend never got a tunnel again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(killed); d < time.Second {
		t.Fatalf("back after %v, before fail_timeout", d)
	}
	waitTunnels(t, p, 0)
	if sb.State() != upstream.StateUp || sb.Conns() != 0 {
		t.Fatalf("state %v conns %d", sb.State(), sb.Conns())
	}
}

// TestActiveFailover: with WebSocket health checks every 200ms (fall 1,
// rise 2), a killed backend is out within one interval, before any
// tunnel tries it; brought back, it serves again after two passing
// checks. Checks and resolution stop with sluice.
func TestActiveFailover(t *testing.T) {
	a, b := startLB(t, "a"), startLB(t, "b")
	p, stop := lbProxy(t, lbConf([]string{"{{a}}", "{{b}}"}, `
[upstream.g.health_check]
path = "/health"
interval = "200ms"
timeout = "500ms"
fall = 1
rise = 2
`), "", a, b)
	sb := p.server(t, b)
	waitUntil(t, 2*time.Second, "first checks", func() bool { return b.upgrades.Load() > 0 })
	b.kill()
	killed := time.Now()
	waitUntil(t, 2*time.Second, "b unhealthy", func() bool { return sb.State() == upstream.StateUnhealthy })
	took := time.Since(killed)
	t.Logf("unhealthy %v after the kill (interval 200ms)", took.Round(time.Millisecond))
	if took > 450*time.Millisecond {
		t.Errorf("unhealthy after %v: more than one interval", took)
	}
	for i := 0; i < 20; i++ {
		if be := through(t, p, noSource, "/"); be != "a" {
			t.Fatalf("tunnel %d went to %q", i, be)
		}
	}
	if sb.Failures() != 0 {
		t.Fatalf("%d tunnels tried the unhealthy backend", sb.Failures())
	}
	b.start(t)
	back := time.Now()
	waitUntil(t, 3*time.Second, "b healthy", func() bool { return sb.State() == upstream.StateUp })
	if d := time.Since(back); d < 200*time.Millisecond {
		t.Errorf("healthy again after %v: rise 2 takes two checks", d)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		seen[through(t, p, noSource, "/")] = true
	}
	if !seen["b"] {
		t.Fatal("the recovered backend got no tunnel")
	}

	// Every server unhealthy: 502 "no live upstreams", at once.
	a.kill()
	b.kill()
	waitUntil(t, 2*time.Second, "all unhealthy", func() bool {
		return p.server(t, a).State() == upstream.StateUnhealthy && sb.State() == upstream.StateUnhealthy
	})
	h := upgradeVia(t, p.addr, noSource, "/")
	if h.status != 502 || !strings.Contains(rawExchange(t, p.addr, upgradeHead+"\r\n", time.Second), "no live upstreams") {
		t.Fatalf("all unhealthy: %d\n%s", h.status, h.head)
	}

	stop()
	var buf [1 << 20]byte
	waitUntil(t, 2*time.Second, "the checker to stop", func() bool {
		return !strings.Contains(string(buf[:runtime.Stack(buf[:], true)]), "upstream.(*Group).checkLoop")
	})
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxConnsFull: when every server is at max_conns the next upgrade
// gets a quick 503 with Retry-After, never a hang; a closed tunnel frees
// a slot at once, and slots all come back.
func TestMaxConnsFull(t *testing.T) {
	a, b := startLB(t, "a"), startLB(t, "b")
	p, _ := lbProxy(t, lbConf([]string{"{{a}} max_conns=2", "{{b}} max_conns=2"}, ""), "", a, b)
	var held []net.Conn
	for i := 0; i < 4; i++ {
		h := upgradeVia(t, p.addr, noSource, "/")
		if h.status != 101 {
			t.Fatalf("tunnel %d: %d", i, h.status)
		}
		held = append(held, h.conn)
	}
	start := time.Now()
	h := upgradeVia(t, p.addr, noSource, "/")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("503 after %v", d)
	}
	if h.status != 503 || !strings.Contains(h.head, "Retry-After: 1\r\n") {
		t.Fatalf("every server full: %d\n%s", h.status, h.head)
	}
	full := rawExchange(t, p.addr, upgradeHead+"\r\n", time.Second)
	if !strings.HasSuffix(full, "503 Service Unavailable: every upstream server is at max_conns\n") {
		t.Fatalf("503 body:\n%s", full)
	}
	held[0].Close()
	waitTunnels(t, p, 3)
	h = upgradeVia(t, p.addr, noSource, "/")
	if h.status != 101 {
		t.Fatalf("after one closed: %d", h.status)
	}
	held[0] = h.conn
	for _, c := range held {
		c.Close()
	}
	waitTunnels(t, p, 0)
	for _, s := range p.group(t).Servers() {
		if s.Conns() != 0 || s.Live() != 0 {
			t.Fatalf("%s: conns %d live %d after every tunnel closed", s.Addr, s.Conns(), s.Live())
		}
	}
}

// TestSlotsNeverLeak: churn — concurrent clients, a dead server with a
// max_conns, clients that leave mid-handshake, refusals — and every
// server's slot count comes back to zero.
func TestSlotsNeverLeak(t *testing.T) {
	a, b := startLB(t, "a"), startLB(t, "b")
	dead := freeAddr(t)
	conf := lbConf([]string{"{{a}} max_conns=3", "{{b}} max_conns=3", dead + " max_conns=1 max_fails=0"}, `method = "least_conn"`)
	p, _ := lbProxy(t, conf, "", a, b)
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					continue
				}
				_, _ = c.Write([]byte(upgradeHead + "\r\n"))
				if i%5 == 4 {
					c.Close() // gone before the answer
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 512)
				n, _ := c.Read(buf)
				switch statusOf(string(buf[:n])) {
				case 101:
					ok.Add(1)
					time.Sleep(time.Millisecond)
				case 503:
					refused.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d tunnels, %d refused as full", ok.Load(), refused.Load())
	waitUntil(t, 3*time.Second, "every slot back", func() bool {
		for _, s := range p.group(t).Servers() {
			if s.Conns() != 0 {
				return false
			}
		}
		return p.e.Pending() == 0
	})
	if ok.Load() == 0 {
		t.Fatal("no tunnel at all")
	}
}

// TestNextUpstreamTimeout: three black-holed servers, connect_timeout 1s,
// next_upstream_timeout 1.5s: the handshake gives up after the second
// attempt (about 2s) instead of trying the third (3s).
func TestNextUpstreamTimeout(t *testing.T) {
	servers := []string{fullBacklogListener(t), fullBacklogListener(t), fullBacklogListener(t)}
	p, _ := lbProxy(t, lbConf(servers, `next_upstream_timeout = "1500ms"`), "")
	start := time.Now()
	resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 5*time.Second)
	took := time.Since(start)
	if statusOf(resp) != 504 {
		t.Fatalf("want 504, got:\n%s", resp)
	}
	if took < 1800*time.Millisecond || took > 2950*time.Millisecond {
		t.Fatalf("504 after %v, want two connect timeouts (2s)", took)
	}
}

// TestFailoverAfterConnect: a server that accepts the connection and then
// fails the handshake (a 101 with a wrong Sec-WebSocket-Accept, a close
// before any answer, no answer within handshake_timeout) costs the client
// one attempt, not its tunnel: the next server serves it, and the failure
// counts against the bad server's max_fails, so later handshakes skip it.
func TestFailoverAfterConnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(c net.Conn)
	}{
		{"wrong accept", func(c net.Conn) {
			_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"))
			_, _ = io.Copy(io.Discard, c)
		}},
		{"closed before answer", func(net.Conn) {}},
		{"no answer", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var accepted atomic.Int64
			var wg sync.WaitGroup
			t.Cleanup(func() { ln.Close(); wg.Wait() })
			wg.Go(func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted.Add(1)
					wg.Go(func() {
						defer c.Close()
						_ = c.SetDeadline(time.Now().Add(5 * time.Second))
						if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
							tc.serve(c)
						}
					})
				}
			})
			a := startLB(t, "a")
			tmpl := strings.ReplaceAll(lbConf([]string{"{{bad}} fail_timeout=30s", "{{a}}"}, ""), "{{bad}}", ln.Addr().String())
			p, _ := lbProxy(t, tmpl, "", a)
			for i := 0; i < 8; i++ {
				if be := through(t, p, noSource, "/"); be != "a" {
					t.Fatalf("handshake %d: backend %q", i, be)
				}
			}
			var bad *upstream.Server
			for _, s := range p.group(t).Servers() {
				if s.Addr.String() == ln.Addr().String() {
					bad = s
				}
			}
			if n := accepted.Load(); n != 1 || bad.Failures() != 1 || bad.State() != upstream.StateFailed {
				t.Fatalf("bad server: %d connections, %d failures, state %v; want 1, 1, failed", n, bad.Failures(), bad.State())
			}
			waitTunnels(t, p, 0)
			if bad.Conns() != 0 {
				t.Fatalf("bad server holds %d slots", bad.Conns())
			}
		})
	}
}
