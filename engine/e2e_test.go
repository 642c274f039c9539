package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/handshake"
)

const upgradeHead = "GET /ws/chat?room=1 HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n"

func TestEchoMessages(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	base := openFDs(t)

	c := dialWS(t, p, "/ws/", &websocket.Dialer{WriteBufferSize: 1024, HandshakeTimeout: 3 * time.Second}, nil)
	c.SetReadLimit(64 << 20)
	big := make([]byte, 16<<20)
	_, _ = rand.Read(big)
	frag := bytes.Repeat([]byte("fragmented "), 1000) // > WriteBufferSize: sent as many frames
	tests := []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, sluice")},
		{"empty", websocket.TextMessage, []byte{}},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 0xff, 0xfe}},
		{"fragmented", websocket.TextMessage, frag},
		{"16MiB", websocket.BinaryMessage, big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.WriteMessage(tt.typ, tt.msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, got, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ != tt.typ || !bytes.Equal(got, tt.msg) {
				t.Fatalf("echo: type %d len %d, want type %d len %d", typ, len(got), tt.typ, len(tt.msg))
			}
		})
	}

	t.Run("ping", func(t *testing.T) {
		pong := make(chan string, 1)
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		// gorilla runs control handlers from inside a read; send a message
		// after the ping so the read returns once the pong went by.
		_ = c.WriteMessage(websocket.TextMessage, []byte("after ping"))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-pong:
			if s != "are you there" {
				t.Fatalf("pong payload %q", s)
			}
		default:
			t.Fatal("no pong came back")
		}
	})

	t.Run("client close handshake", func(t *testing.T) {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Fatalf("want the backend's close 1000, got %v", err)
		}
		c.Close()
	})
	expectFDs(t, base)
}

func TestServerCloseHandshake(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	c := dialWS(t, p, "/ws/", nil, nil)
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	_, _, _ = c.ReadMessage()
	be.mu.Lock()
	sc := be.conns[len(be.conns)-1]
	be.mu.Unlock()
	_ = sc.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server leaving"), time.Now().Add(time.Second))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "server leaving" {
		t.Fatalf("want close 1001 from the backend, got %v", err)
	}
}

func TestSubprotocolAndCompressionEndToEnd(t *testing.T) {
	be := startBackend(t, backendOpts{subprotocols: []string{"chat.v2"}, compression: true})
	p := startProxy(t, simpleConfig(be.addr))
	d := &websocket.Dialer{Subprotocols: []string{"chat.v1", "chat.v2"}, EnableCompression: true, HandshakeTimeout: 3 * time.Second}
	c, resp, err := d.Dial("ws://"+p.addr+"/ws/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Subprotocol() != "chat.v2" {
		t.Fatalf("subprotocol %q, want chat.v2", c.Subprotocol())
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("extensions %q: permessage-deflate not negotiated", ext)
	}
	c.EnableWriteCompression(true)
	msg := bytes.Repeat([]byte("compress me "), 500)
	if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("compressed echo: %v (len %d)", err, len(got))
	}
	h, _, _ := be.lastHeader(t)
	if got := h.Get("Sec-WebSocket-Protocol"); got != "chat.v1, chat.v2" {
		t.Fatalf("backend saw Sec-WebSocket-Protocol %q", got)
	}
}

func TestForwardedHeaders(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	req := "GET /ws/feed?x=1&y=two HTTP/1.1\r\n" +
		"Host: chat.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: keep-alive, Upgrade, X-Secret-Hop\r\n" +
		"Connection: X-Forwarded-For\r\n" + // may not remove the proxy's own
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Origin: http://example.com\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\n" +
		"X-Real-IP: 198.51.100.1\r\n" + // forged: replaced
		"X-Forwarded-Proto: https\r\n" + // forged: replaced
		"Keep-Alive: timeout=5\r\n" + // hop-by-hop: dropped
		"Proxy-Authorization: Basic eDp5\r\n" + // hop-by-hop: dropped
		"X-Secret-Hop: drop me\r\n" + // named by Connection: dropped
		"X-App: kept\r\n\r\n"
	resp := rawExchange(t, p.addr, req, 500*time.Millisecond)
	if statusOf(resp) != 101 {
		t.Fatalf("want 101, got:\n%s", resp)
	}
	h, host, uri := be.lastHeader(t)
	if uri != "/ws/feed?x=1&y=two" {
		t.Errorf("path and query %q", uri)
	}
	if host != "chat.example.com" {
		t.Errorf("Host %q, want the client's", host)
	}
	want := map[string]string{
		"X-Forwarded-For":       "127.0.0.1",
		"X-Real-Ip":             "127.0.0.1",
		"X-Forwarded-Proto":     "http",
		"Connection":            "Upgrade",
		"Upgrade":               "websocket",
		"Sec-Websocket-Version": "13",
		"Sec-Websocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"Origin":                "http://example.com",
		"X-App":                 "kept",
	}
	for k, v := range want {
		if got := strings.Join(h.Values(k), "|"); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Keep-Alive", "Proxy-Authorization", "X-Secret-Hop"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s reached the backend", k)
		}
	}

	// X-Forwarded-For appends to what the client (or a proxy before us) sent.
	hdr := http.Header{}
	hdr.Add("X-Forwarded-For", "203.0.113.7")
	hdr.Add("X-Forwarded-For", "10.0.0.1, 10.0.0.2")
	dialWS(t, p, "/ws/", nil, hdr).Close()
	h, _, _ = be.lastHeader(t)
	if got := strings.Join(h.Values("X-Forwarded-For"), "|"); got != "203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
}

func TestHostOverride(t *testing.T) {
	be := startBackend(t, backendOpts{})
	cfg := strings.Replace(simpleConfig(be.addr), `connect_timeout = "1s"`, `connect_timeout = "1s"
  host = "backend.internal"`, 1)
	p := startProxy(t, cfg)
	c := dialWS(t, p, "/ws/", nil, nil)
	c.Close()
	if _, host, _ := be.lastHeader(t); host != "backend.internal" {
		t.Fatalf("Host %q, want backend.internal", host)
	}
}

func TestLongestPrefixWins(t *testing.T) {
	a := startBackend(t, backendOpts{})
	b := startBackend(t, backendOpts{})
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  [[server.location]]
  path = "/ws/admin/"
  proxy_pass = %q
`, a.addr, b.addr))
	dialWS(t, p, "/ws/admin/x", nil, nil).Close()
	dialWS(t, p, "/ws/other", nil, nil).Close()
	_, _, ua := a.lastHeader(t)
	_, _, ub := b.lastHeader(t)
	if ua != "/ws/other" || ub != "/ws/admin/x" {
		t.Fatalf("a got %q, b got %q", ua, ub)
	}
}

// TestRefusals sends hostile or wrong heads from raw sockets and checks the
// status, and that the backend never saw a request.
func TestRefusals(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr)+`
[[server]]
listen = ["{{listen}}"]
server_name = ["small.test"]
max_header_bytes = "1k"
  [[server.location]]
  path = "/"
  proxy_pass = "`+be.addr+`"
`)
	base := openFDs(t)
	long := "X-Long: " + strings.Repeat("a", 9000) + "\r\n"
	tests := []struct {
		name   string
		req    string
		status int
		header string // a header the answer must carry
	}{
		{"no location", strings.Replace(upgradeHead, "/ws/chat", "/nope", 1) + "\r\n", 404, ""},
		{"bad version", strings.Replace(upgradeHead, "Version: 13", "Version: 8", 1) + "\r\n", 426, "Sec-WebSocket-Version: 13"},
		{"missing key", strings.Replace(upgradeHead, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1) + "\r\n", 400, ""},
		{"short key", strings.Replace(upgradeHead, "dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1) + "\r\n", 400, ""},
		{"no connection upgrade", strings.Replace(upgradeHead, "Connection: Upgrade", "Connection: keep-alive", 1) + "\r\n", 400, ""},
		{"post", strings.Replace(upgradeHead, "GET", "POST", 1) + "\r\n", 400, ""},
		{"http/1.0", strings.Replace(upgradeHead, "HTTP/1.1", "HTTP/1.0", 1) + "\r\n", 400, ""},
		{"no host", strings.Replace(upgradeHead, "Host: example.com\r\n", "", 1) + "\r\n", 400, ""},
		{"bare LF", strings.ReplaceAll(upgradeHead, "\r\n", "\n") + "\n", 400, ""},
		{"obs-fold", upgradeHead + "X-Folded: a\r\n b\r\n\r\n", 400, ""},
		{"body smuggling", upgradeHead + "Content-Length: 5\r\n\r\nhello", 400, ""},
		{"garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400, ""},
		{"head too large", upgradeHead + long + "\r\n", 431, ""},
		{"head too large for its server", strings.Replace(upgradeHead, "example.com", "small.test", 1) + "X-Pad: " + strings.Repeat("b", 1500) + "\r\n\r\n", 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, p.addr, tt.req, 3*time.Second)
			if got := statusOf(resp); got != tt.status {
				t.Fatalf("status %d, want %d; answer:\n%s", got, tt.status, resp)
			}
			if tt.header != "" && !strings.Contains(resp, tt.header+"\r\n") {
				t.Fatalf("answer lacks %q:\n%s", tt.header, resp)
			}
			if !strings.Contains(resp, "Connection: close\r\n") {
				t.Fatalf("answer does not say Connection: close:\n%s", resp)
			}
		})
	}
	be.mu.Lock()
	n := len(be.headers)
	be.mu.Unlock()
	if n != 0 {
		t.Fatalf("backend saw %d requests; refusals must not reach it", n)
	}
	expectFDs(t, base)
}

func TestHeaderTimeout(t *testing.T) {
	be := startBackend(t, backendOpts{})
	cfg := strings.Replace(simpleConfig(be.addr), `listen = ["{{listen}}"]`, `listen = ["{{listen}}"]
client_header_timeout = "300ms"`, 1)
	p := startProxy(t, cfg)
	start := time.Now()
	resp := rawExchange(t, p.addr, "GET /ws/ HTTP/1.1\r\nHost: x\r\n", 3*time.Second)
	took := time.Since(start)
	if statusOf(resp) != 408 {
		t.Fatalf("want 408, got:\n%s", resp)
	}
	if took < 250*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("closed after %v, want about 300ms", took)
	}
	if n := p.e.rt().listeners[0].pending.count(); n != 0 {
		t.Fatalf("%d connections still listed as pending after the timeout", n)
	}
}

// rawUpstream is a TCP server that answers every connection with a fixed
// reply and records all the bytes it receives.
type rawUpstream struct {
	addr string
	got  chan []byte
}

func startRawUpstream(t *testing.T, reply func(req []byte) string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String(), got: make(chan []byte, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 0, 4096)
				tmp := make([]byte, 4096)
				for !bytes.Contains(buf, []byte("\r\n\r\n")) {
					n, err := c.Read(tmp)
					buf = append(buf, tmp[:n]...)
					if err != nil {
						u.got <- buf
						return
					}
				}
				_, _ = c.Write([]byte(reply(buf)))
				_ = c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
				rest, _ := io.ReadAll(c)
				u.got <- append(buf, rest...)
			}(c)
		}
	}()
	return u
}

// TestNonUpgradeAnswerNotTunnelled: an upstream that answers 200 or 426 is
// relayed as HTTP and the client's next bytes never reach it.
func TestNonUpgradeAnswerNotTunnelled(t *testing.T) {
	for _, answer := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 3\r\n\r\nno\n",
	} {
		up := startRawUpstream(t, func([]byte) string { return answer })
		p := startProxy(t, simpleConfig(up.addr))
		base := openFDs(t)
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		second := "GET /ws/secret HTTP/1.1\r\nHost: x\r\n\r\n"
		if _, err := c.Write([]byte(upgradeHead + "\r\n" + second)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		wantStatus := statusOf(answer)
		if statusOf(string(got)) != wantStatus {
			t.Fatalf("client got %q, want status %d", got, wantStatus)
		}
		body := answer[strings.Index(answer, "\r\n\r\n")+4:]
		if !strings.HasSuffix(string(got), body) || !strings.Contains(string(got), "Connection: close\r\n") {
			t.Fatalf("client got %q, want the upstream's answer with Connection: close and body %q", got, body)
		}
		upGot := <-up.got
		if bytes.Contains(upGot, []byte("/ws/secret")) {
			t.Fatalf("the second request reached the upstream:\n%s", upGot)
		}
		expectFDs(t, base)
	}
}

func TestBadAcceptIs502(t *testing.T) {
	up := startRawUpstream(t, func([]byte) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
	})
	p := startProxy(t, simpleConfig(up.addr))
	resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 3*time.Second)
	if statusOf(resp) != 502 || !strings.Contains(resp, handshake.ErrUpstreamAccept.Error()) {
		t.Fatalf("want 502 naming the wrong Sec-WebSocket-Accept, got:\n%s", resp)
	}
}

// TestHeldBytesWaitForVerdict: frames the client sends right behind its
// head reach the upstream only after the 101 was verified, and bytes the
// upstream sends right behind its 101 reach the client.
func TestHeldBytesWaitForVerdict(t *testing.T) {
	up := startRawUpstream(t, func(req []byte) string {
		key := ""
		for _, line := range strings.Split(string(req), "\r\n") {
			if strings.HasPrefix(strings.ToLower(line), "sec-websocket-key:") {
				key = strings.TrimSpace(line[len("sec-websocket-key:"):])
			}
		}
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			acceptFor(key) + "\r\n\r\nEARLY"
	})
	p := startProxy(t, simpleConfig(up.addr))
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(upgradeHead + "\r\nFRAMES")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.HasSuffix(got, []byte("EARLY")) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read: %v; got %q", err, got)
		}
	}
	if statusOf(string(got)) != 101 {
		t.Fatalf("got %q", got)
	}
	c.Close()
	upGot := <-up.got
	head := upGot[:bytes.Index(upGot, []byte("\r\n\r\n"))+4]
	if bytes.Contains(head, []byte("FRAMES")) {
		t.Fatal("held bytes were sent before the head")
	}
	if !bytes.HasSuffix(upGot, []byte("FRAMES")) {
		t.Fatalf("held bytes never reached the upstream: %q", upGot)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("closed port is 502", func(t *testing.T) {
		p := startProxy(t, simpleConfig(freeAddr(t)))
		start := time.Now()
		resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 3*time.Second)
		if statusOf(resp) != 502 {
			t.Fatalf("want 502, got:\n%s", resp)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("502 took %v", d)
		}
	})
	t.Run("refusing server skipped", func(t *testing.T) {
		be := startBackend(t, backendOpts{})
		p := startProxy(t, simpleConfig(freeAddr(t), be.addr))
		for i := 0; i < 4; i++ { // round robin starts on each server in turn
			dialWS(t, p, "/ws/", nil, nil).Close()
		}
	})
	t.Run("full backlog is 504", func(t *testing.T) {
		addr := fullBacklogListener(t)
		p := startProxy(t, simpleConfig(addr))
		start := time.Now()
		resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 5*time.Second)
		took := time.Since(start)
		if statusOf(resp) != 504 {
			t.Fatalf("want 504, got:\n%s", resp)
		}
		if took < 900*time.Millisecond || took > 2500*time.Millisecond {
			t.Fatalf("504 after %v, want connect_timeout (1s) plus slack", took)
		}
	})
	t.Run("silent upstream is 504", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var held []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c) // accept, never answer
			}
		}()
		p := startProxy(t, simpleConfig(ln.Addr().String()))
		start := time.Now()
		resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 5*time.Second)
		if statusOf(resp) != 504 {
			t.Fatalf("want 504, got:\n%s", resp)
		}
		if took := time.Since(start); took > 2500*time.Millisecond {
			t.Fatalf("504 after %v, want handshake_timeout (1s) plus slack", took)
		}
	})
}

// fullBacklogListener returns an address whose accept queue is full, so a
// new connect gets no SYN-ACK: what a saturated backend looks like.
func fullBacklogListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue: with backlog 0 one or two connects complete, the next hang.
	var fillers []net.Conn
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		fillers = append(fillers, c)
	}
	t.Cleanup(func() {
		for _, c := range fillers {
			c.Close()
		}
	})
	return addr
}

func TestReadTimeout(t *testing.T) {
	be := startBackend(t, backendOpts{})
	cfg := strings.Replace(simpleConfig(be.addr), `handshake_timeout = "1s"`, `handshake_timeout = "1s"
  read_timeout = "400ms"`, 1)
	p := startProxy(t, cfg)

	t.Run("idle tunnel closed", func(t *testing.T) {
		c := dialWS(t, p, "/ws/", nil, nil)
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _, err := c.ReadMessage()
		took := time.Since(start)
		if err == nil {
			t.Fatal("read succeeded on an idle tunnel")
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the proxy did not close the idle tunnel")
		}
		if took < 350*time.Millisecond || took > 1500*time.Millisecond {
			t.Fatalf("closed after %v, want about 400ms", took)
		}
	})
	t.Run("traffic keeps it alive", func(t *testing.T) {
		c := dialWS(t, p, "/ws/", nil, nil)
		defer c.Close()
		end := time.Now().Add(1200 * time.Millisecond) // 3× the timeout
		for time.Now().Before(end) {
			if err := c.WriteMessage(websocket.TextMessage, []byte("tick")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatalf("tunnel died despite traffic: %v", err)
			}
			time.Sleep(200 * time.Millisecond) // half the timeout
		}
	})
}

func TestBackendKilledMidTunnel(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	base := openFDs(t)
	c := dialWS(t, p, "/ws/", nil, nil)
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	sc := be.conns[len(be.conns)-1]
	be.mu.Unlock()
	sc.UnderlyingConn().(*net.TCPConn).SetLinger(0) // a reset, as a crash would give
	sc.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := c.ReadMessage()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("client never saw the backend go")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("client saw the end after %v", d)
	}
	c.Close()
	expectFDs(t, base)
}

func TestClientKilledMidTunnel(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	base := openFDs(t)
	c := dialWS(t, p, "/ws/", nil, nil)
	if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	sc := be.conns[len(be.conns)-1]
	be.mu.Unlock()
	c.UnderlyingConn().(*net.TCPConn).SetLinger(0)
	c.Close()
	start := time.Now()
	_ = sc.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := sc.ReadMessage()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("backend never saw the client go")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("backend saw the end after %v", d)
	}
	expectFDs(t, base)
}

// TestKeepAliveRefusalBounded: an upstream that answers a chunked 426 and
// keeps its connection open does not hold the client for the tunnel's read
// timeout: the handshake timeout (1s here) ends the relayed answer.
func TestKeepAliveRefusalBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte("HTTP/1.1 426 Upgrade Required\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno\n\r\n0\r\n\r\n"))
				time.Sleep(5 * time.Second) // keep-alive: never closes on its own
			}(c)
		}
	}()
	p := startProxy(t, simpleConfig(ln.Addr().String()))
	start := time.Now()
	resp := rawExchange(t, p.addr, upgradeHead+"\r\n", 4*time.Second)
	took := time.Since(start)
	if statusOf(resp) != 426 || !strings.HasSuffix(resp, "0\r\n\r\n") {
		t.Fatalf("want the relayed chunked 426, got:\n%q", resp)
	}
	if took > 2500*time.Millisecond {
		t.Fatalf("client held for %v; the handshake timeout is 1s", took)
	}
}

// TestSecondEngineOnSamePortFails: gnet listens with SO_REUSEPORT, which
// would let a second sluice on the same address share the port silently;
// the second one must fail at start with "address already in use", and the
// first keep serving.
func TestSecondEngineOnSamePortFails(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	cfg, err := configs.Parse([]byte(strings.ReplaceAll(simpleConfig(be.addr), "{{listen}}", p.addr)), "second.toml")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := New(cfg, Logs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Start(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = e2.Stop(ctx)
		}
		t.Fatalf("second engine on %s: err %v, want address already in use", p.addr, err)
	}
	c := dialWS(t, p, "/ws/", nil, nil)
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("first engine: %q %v", msg, err)
	}
}
