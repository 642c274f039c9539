package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPlainKeepAliveParks: a plaintext kept-alive connection quiet for
// parkAfter leaves its goroutine for the event loops, and its next request
// (a plain one, or an upgrade) is served there as on a new connection,
// for the client the PROXY header named; nothing leaks.
func TestPlainKeepAliveParks(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
proxy_protocol = true
real_ip_from = ["127.0.0.0/8"]
real_ip_header = "proxy_protocol"
  [[server.location]]
  path = "/"
  proxy_pass = %q
`, be.addr))
	// The first round creates what the loops create once (relay pipes);
	// the second must leave nothing behind.
	parkRound(t, p, be)
	base := openFDs(t)
	parkRound(t, p, be)
	expectFDs(t, base)
}

func parkRound(t *testing.T, p *proxy, be *httpBackend) {
	t.Helper()
	const n = 20
	type client struct {
		c net.Conn
		r *bufio.Reader
	}
	var cs []client
	for i := range n {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		r := bufio.NewReader(c)
		pre := fmt.Sprintf("PROXY TCP4 203.0.113.%d 127.0.0.1 5000 80\r\n", i+1)
		resp, body := exchange(t, c, r, pre+"GET /api/one HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET /api/one body=0\n" {
			t.Fatalf("first request: %d %q", resp.StatusCode, body)
		}
		cs = append(cs, client{c, r})
	}
	deadline := time.Now().Add(parkAfter + 3*time.Second)
	for p.e.goFront.live.Load() != 0 || p.e.stats.conns.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("after %v quiet: %d on goroutines, %d in the loops; want 0 and %d",
				parkAfter+3*time.Second, p.e.goFront.live.Load(), p.e.stats.conns.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for i, cl := range cs[:n-1] {
		path := fmt.Sprintf("/api/two%d", i)
		resp, body := exchange(t, cl.c, cl.r, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET "+path+" body=0\n" {
			t.Fatalf("request after parking: %d %q", resp.StatusCode, body)
		}
		if ip := be.last(t).Header.Get("X-Real-Ip"); ip != fmt.Sprintf("203.0.113.%d", i+1) {
			t.Fatalf("after parking the backend got X-Real-IP %q", ip)
		}
	}
	// An upgrade on a parked connection becomes a tunnel.
	last := cs[n-1]
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	_ = last.c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(last.c, "GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(last.r, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != acceptFor(key) {
		t.Fatalf("upgrade after parking: %v %v", resp, err)
	}
	_, _ = last.c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
	echo := make([]byte, 4)
	if _, err := io.ReadFull(last.r, echo); err != nil || string(echo[2:]) != "hi" {
		t.Fatalf("echo % x, %v", echo, err)
	}

	for _, cl := range cs {
		cl.c.Close()
	}
	deadline = time.Now().Add(3 * time.Second)
	for (p.e.Pending() != 0 || p.e.Tunnels() != 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := p.e.Pending(); got != 0 {
		t.Fatalf("%d connections still counted after the clients left", got)
	}
	for _, ln := range p.e.rt().listeners {
		ln.http.closeIdle() // the backend pool's kept-alive connections are not a leak
	}
}

// quietClose waits for the server to close c without sending a byte.
func quietClose(t *testing.T, c net.Conn, r *bufio.Reader, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	if b, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("want the connection closed without a byte, got %q, %v", b, err)
	}
}

// TestParkedConnExpires: a parked connection is closed without an answer
// at the end of keepalive_timeout.
func TestParkedConnExpires(t *testing.T) {
	saved := keepaliveTimeout
	keepaliveTimeout = parkAfter + 500*time.Millisecond
	t.Cleanup(func() { keepaliveTimeout = saved }) // after the proxy stops
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	c, r := dialProxy(t, p.addr)
	exchange(t, c, r, "GET /api/a HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the connection to park", func() bool { return p.e.goFront.live.Load() == 0 && p.e.stats.conns.Load() == 1 })
	quietClose(t, c, r, 3*time.Second)
	waitFor(t, "the loops to let it go", func() bool { return p.e.Pending() == 0 })
}

// TestShutdownClosesParked: a shutdown closes parked connections at once,
// without an answer, rather than waiting for heads that are not coming.
func TestShutdownClosesParked(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	c, r := dialProxy(t, p.addr)
	exchange(t, c, r, "GET /api/a HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the connection to park", func() bool { return p.e.goFront.live.Load() == 0 && p.e.stats.conns.Load() == 1 })
	start := time.Now()
	if _, err := p.e.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	quietClose(t, c, r, time.Second)
	if d := time.Since(start); d >= headGrace {
		t.Errorf("shutdown waited %v for an idle connection (headGrace %v)", d, headGrace)
	}
}

// TestParkedConnFollowsReload: the next request on a connection that
// parked before a reload is routed by the new config, as a new
// connection's would be.
func TestParkedConnFollowsReload(t *testing.T) {
	be1, be2 := startHTTPBackend(t), startHTTPBackend(t)
	p := startProxy(t, plainConfig(be1.addr, ""))
	c, r := dialProxy(t, p.addr)
	exchange(t, c, r, "GET /api/a HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the connection to park", func() bool { return p.e.goFront.live.Load() == 0 && p.e.stats.conns.Load() == 1 })
	text := strings.Replace(plainConfig(be2.addr, ""), "{{listen}}", p.addr, 1)
	if _, err := p.e.Reload(mustParse(t, text)); err != nil {
		t.Fatal(err)
	}
	before := be1.count.Load()
	resp, body := exchange(t, c, r, "GET /api/b HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /api/b body=0\n" {
		t.Fatalf("after the reload: %d %q", resp.StatusCode, body)
	}
	if be2.count.Load() != 1 || be1.count.Load() != before {
		t.Fatalf("the request went to the old backend (old %d more, new %d)", be1.count.Load()-before, be2.count.Load())
	}
}
