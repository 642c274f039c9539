package engine

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// httpBackend is a real net/http server for the plain HTTP tests: it
// records what reaches it and serves a few behaviours by path.
type httpBackend struct {
	addr string
	srv  *http.Server

	mu    sync.Mutex
	seen  []*http.Request // clones, bodies drained
	count atomic.Int64
	conns atomic.Int64 // connections accepted
}

func startHTTPBackend(t testing.TB) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{addr: ln.Addr().String()}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.count.Add(1)
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil || c.WriteMessage(mt, msg) != nil {
					return
				}
			}
		}
		// Count the body as it streams: never hold it.
		n, _ := io.Copy(io.Discard, r.Body)
		rc := r.Clone(r.Context())
		rc.ContentLength = n
		b.mu.Lock()
		b.seen = append(b.seen, rc)
		b.mu.Unlock()
		switch {
		case r.URL.Path == "/api/slow":
			time.Sleep(2 * time.Second)
		case r.URL.Path == "/api/cut":
			// Promises 100 bytes, sends 10, hangs up.
			c, bw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
			_ = bw.Flush()
			_ = c.Close()
			return
		case r.URL.Path == "/api/hop":
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("Upgrade", "h2c")
			w.Header().Set("Connection", "X-Hop-Only")
			w.Header().Set("X-Hop-Only", "for sluice")
			w.Header().Set("X-End", "kept")
		case r.URL.Path == "/api/download":
			size, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for size > 0 {
				k := min(size, int64(len(chunk)))
				if _, err := w.Write(chunk[:k]); err != nil {
					return
				}
				size -= k
			}
			return
		}
		fmt.Fprintf(w, "%s %s body=%d\n", r.Method, r.URL.RequestURI(), n)
	})}
	b.srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *httpBackend) last(t testing.TB) *http.Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		t.Fatal("backend saw no plain request")
	}
	return b.seen[len(b.seen)-1]
}

func plainConfig(backend, extra string) string {
	return fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
client_header_timeout = "2s"
  [[server.location]]
  path = "/"
  proxy_pass = %q
  connect_timeout = "1s"
  handshake_timeout = "1s"
  read_timeout = "500ms"
%s`, backend, extra)
}

// exchange writes req on c and reads one response (body included).
func exchange(t *testing.T, c net.Conn, r *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(body)
}

func dialProxy(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// TestPlainForwarding: a plain request is proxied with the tunnel path's
// forwarding headers, and nothing hop-by-hop (least of all an Upgrade)
// crosses in either direction.
func TestPlainForwarding(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	c, r := dialProxy(t, p.addr)
	resp, body := exchange(t, c, r, "GET /api/hop?q=1 HTTP/1.1\r\nHost: site.test\r\n"+
		"Connection: keep-alive, X-Secret, Upgrade\r\nUpgrade: h2c\r\nX-Secret: s\r\nKeep-Alive: 300\r\n"+
		"Proxy-Authorization: Basic eA==\r\nX-Forwarded-For: 10.9.9.9\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"+
		"X-End-To-End: yes\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /api/hop?q=1 body=0\n" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	got := be.last(t)
	for _, h := range []string{"Upgrade", "X-Secret", "Keep-Alive", "Proxy-Authorization"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("backend got %s: %q", h, v)
		}
	}
	if v := got.Header.Get("Connection"); strings.Contains(strings.ToLower(v), "upgrade") {
		t.Errorf("backend got Connection: %q", v)
	}
	want := map[string]string{
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-For":   "10.9.9.9, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-End-To-End":      "yes",
	}
	for h, v := range want {
		if g := got.Header.Get(h); g != v {
			t.Errorf("backend got %s: %q, want %q", h, g, v)
		}
	}
	if got.Host != "site.test" {
		t.Errorf("backend got Host %q", got.Host)
	}
	// Keep-Alive and Upgrade are hop-by-hop by name, X-Hop-Only because the
	// backend's Connection header names it.
	for _, h := range []string{"Keep-Alive", "Upgrade", "X-Hop-Only"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("client got %s: %q from the backend", h, v)
		}
	}
	if v := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(v), "x-hop-only") {
		t.Errorf("client got the backend's Connection: %q", v)
	}
	if resp.Header.Get("X-End") != "kept" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
}

// TestPlainThenUpgradeOnOneConnection: the hand-off loses no byte (two
// pipelined requests in one write are both answered), and an upgrade that
// follows on the same keep-alive connection becomes a verified tunnel.
func TestPlainThenUpgradeOnOneConnection(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	once := func() {
		c, r := dialProxy(t, p.addr)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"GET /a body=0\n", "POST /b body=3\n"} {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != want {
				t.Fatalf("pipelined answer %q, want %q", body, want)
			}
		}
		key := "dGhlIHNhbXBsZSBub25jZQ=="
		_, _ = c.Write([]byte("GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != acceptFor(key) {
			t.Fatalf("upgrade answered %d %v", resp.StatusCode, resp.Header)
		}
		// A masked text frame "hi", echoed back unmasked.
		frame := []byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, 4)
		if _, err := io.ReadFull(r, echo); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(echo, []byte{0x81, 2, 'h', 'i'}) {
			t.Fatalf("echo % x", echo)
		}
		if n := p.e.Tunnels(); n != 1 {
			t.Fatalf("%d tunnels, want 1", n)
		}
		// Still relaying a moment later: nothing of the plain path closes it.
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, echo); err != nil {
			t.Fatalf("second echo: %v", err)
		}
		c.Close()
	}
	settle := func() {
		waitFor(t, "tunnel to end", func() bool { return p.e.Tunnels() == 0 && p.e.Pending() == 0 })
		for _, ln := range p.e.rt().listeners {
			ln.http.closeIdle() // the backend pool's keep-alive connection is not a leak
		}
	}
	// The first round creates what the loops create once (Go's poller,
	// relay pipes); the second must leave nothing behind.
	once()
	settle()
	time.Sleep(100 * time.Millisecond)
	base := openFDs(t)
	once()
	settle()
	expectFDs(t, base)
}

// TestSmuggling sends requests whose framing two parsers could read
// differently: each is answered 400, and the backend never sees it, both
// as a connection's first request (judged before the hand-off) and as a
// later one on a keep-alive connection (judged in fasthttp's handler).
func TestSmuggling(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	const line = "POST /api/x HTTP/1.1\r\nHost: x\r\n"
	cases := []struct {
		name, req string
	}{
		{"CL and TE", line + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE and CL", line + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"two lengths", line + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
		{"length list", line + "Content-Length: 3, 3\r\n\r\nabc"},
		{"signed length", line + "Content-Length: +3\r\n\r\nabc"},
		{"TE gzip", line + "Transfer-Encoding: gzip\r\n\r\n"},
		{"TE gzip, chunked", line + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"TE twice", line + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE identity", line + "Transfer-Encoding: identity\r\n\r\n"},
		{"space before colon", line + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"obs-fold", line + "X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"CR in value", line + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n"},
		{"NUL in value", line + "X-A: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		// fasthttp waits for CRLF CRLF: on a keep-alive connection a head
		// that ends in bare LFs is caught as it arrives (headScan).
		{"bare LF", "POST /api/x HTTP/1.1\nHost: x\nContent-Length: 0\n\n"},
		{"bare LF in one line", line + "Content-Length: 0\n\r\n"},
		{"bare LF in the middle", line + "X-A: a\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range cases {
		for _, second := range []bool{false, true} {
			name := tc.name
			if second {
				name += "/keep-alive"
			}
			t.Run(name, func(t *testing.T) {
				before := be.count.Load()
				req := tc.req
				if second {
					req = "GET /api/ok HTTP/1.1\r\nHost: x\r\n\r\n" + req
				}
				resp := rawExchange(t, p.addr, req, 3*time.Second)
				if second {
					if statusOf(resp) != 200 {
						t.Fatalf("first request not served:\n%s", resp)
					}
					if i := strings.Index(resp, "HTTP/1.1 400"); i < 0 {
						t.Fatalf("no 400 for the second request:\n%s", resp)
					}
				} else if statusOf(resp) != 400 {
					t.Fatalf("status %d, want 400:\n%s", statusOf(resp), resp)
				}
				want := before
				if second {
					want++
				}
				if got := be.count.Load(); got != want {
					t.Fatalf("backend saw %d requests, want %d", got-before, want-before)
				}
			})
		}
	}
}

// TestPlainHeadScan: a head that ends in bare LFs on a kept-alive
// connection is answered 400 at once, however it arrives; what follows a
// body is never taken for a head, so bodies holding LFs and pipelined
// requests after them are served.
func TestPlainHeadScan(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	const ok = "GET /api/ok HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		writes []string // each written 100 ms after the one before
		want   []int    // statuses, in order
	}{
		{"bare LF head after an answer", []string{ok, "GET /api/b HTTP/1.1\nHost: x\n\n"}, []int{200, 400}},
		{"bare LF head in pieces", []string{ok, "GET /api/b HTTP/1.1\nHo", "st: x\n", "\n"}, []int{200, 400}},
		{"CRLF then LF", []string{ok, "GET /api/b HTTP/1.1\r\nHost: x\r\n\n"}, []int{200, 400}},
		{"pipelined after a bodiless head", []string{ok + ok + "GET /api/b HTTP/1.1\nHost: x\n\n"}, []int{200, 200, 400}},
		{"LFs in a body, then a head in pieces", []string{
			"POST /api/a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab\n\ncd" + "GET /api/b HTTP/1.1\r\nHo",
			"st: x\r\n\r\n"}, []int{200, 200}},
		{"LFs in a chunked body, then a head in pieces", []string{
			"POST /api/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\n\n\n\n\r\n0\r\n\r\n" + "GET /api/b HTTP/1.1\r\nHo",
			"st: x\r\n\r\n"}, []int{200, 200}},
		{"Content-Length 0 then a head in pieces", []string{
			"POST /api/a HTTP/1.1\r\nHost: x\r\nContent-Length: 000\r\n\r\n" + "GET /api/b HTTP/1.1\r\nHo",
			"st: x\r\n\r\n"}, []int{200, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dialProxy(t, p.addr)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() {
				for _, w := range tc.writes {
					if _, err := c.Write([]byte(w)); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			start := time.Now()
			for i, want := range tc.want {
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("answer %d: %d, want %d", i, resp.StatusCode, want)
				}
			}
			// client_header_timeout is 2 s: a 400 that waited for it
			// would be a 408 anyway, this says why.
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("answers took %v", d)
			}
		})
	}
}

// TestPlainTimeoutsAndFailures: a backend that does not answer within
// read_timeout gives 504, one that refuses gives 502, both with the tunnel
// path's body shape; a failed connect moves to the next server.
func TestPlainTimeoutsAndFailures(t *testing.T) {
	be := startHTTPBackend(t)
	dead := freeAddr(t)
	p := startProxy(t, plainConfig(be.addr, `
  [[server.location]]
  path = "/dead/"
  proxy_pass = "`+dead+`"
  connect_timeout = "1s"
  [[server.location]]
  path = "/next/"
  proxy_pass = "`+dead+`,`+be.addr+`"
`))
	c, r := dialProxy(t, p.addr)
	start := time.Now()
	resp, body := exchange(t, c, r, "GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 504 || body != "504 Gateway Timeout: upstream did not answer in time\n" {
		t.Fatalf("slow backend: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 1900*time.Millisecond {
		t.Fatalf("504 took %v with read_timeout 500ms", d)
	}
	c2, r2 := dialProxy(t, p.addr)
	resp, body = exchange(t, c2, r2, "GET /dead/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 502 || !strings.HasPrefix(body, "502 Bad Gateway: ") {
		t.Fatalf("refusing backend: %d %q", resp.StatusCode, body)
	}
	// The group keeps its round-robin position across requests; within two
	// requests one starts at the dead server and must land on the live one.
	for i := 0; i < 2; i++ {
		resp, body = exchange(t, c2, r2, "GET /next/"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET /next/"+strconv.Itoa(i)+" body=0\n" {
			t.Fatalf("next upstream: %d %q", resp.StatusCode, body)
		}
	}
}

// TestPlainClientTimeouts: on a keep-alive connection the wait for the
// next request is bounded by the keep-alive timeout, not by
// client_header_timeout; a head that has begun gets client_header_timeout
// from its first byte, and a client that trickles it byte by byte does not
// push that deadline. Nothing of a late head reaches the backend.
func TestPlainClientTimeouts(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, strings.Replace(plainConfig(be.addr, ""), `client_header_timeout = "2s"`, `client_header_timeout = "1s"`, 1))
	const ok = "GET /api/ok HTTP/1.1\r\nHost: x\r\n\r\n"

	t.Run("idle longer than the header timeout", func(t *testing.T) {
		c, r := dialProxy(t, p.addr)
		if resp, _ := exchange(t, c, r, ok); resp.StatusCode != 200 {
			t.Fatalf("first request: %d", resp.StatusCode)
		}
		time.Sleep(1500 * time.Millisecond)
		if resp, _ := exchange(t, c, r, ok); resp.StatusCode != 200 {
			t.Fatalf("after 1.5 s idle: %d", resp.StatusCode)
		}
	})
	for _, tc := range []struct {
		name    string
		trickle bool
	}{{"stalled head", false}, {"trickled head", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dialProxy(t, p.addr)
			if resp, _ := exchange(t, c, r, ok); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			before := be.count.Load()
			start := time.Now()
			head := "GET /api/late HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 40)
			if !tc.trickle {
				head = head[:20]
			}
			sent := make(chan struct{})
			go func() { // one byte per 100 ms: 5 s for the whole head
				defer close(sent)
				for i := 0; i < len(head); i++ {
					if _, err := c.Write([]byte{head[i]}); err != nil {
						return
					}
					if tc.trickle {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			answer, _ := io.ReadAll(r)
			took := time.Since(start)
			<-sent
			if statusOf(string(answer)) != 408 {
				t.Errorf("answer to a late head: %q, want 408", answer)
			}
			if took < 900*time.Millisecond || took > 3*time.Second {
				t.Errorf("late head cut after %v, want about client_header_timeout (1s)", took)
			}
			if n := be.count.Load(); n != before {
				t.Errorf("the backend saw %d requests of a late head", n-before)
			}
		})
	}
}

// TestPlainBodiesStream: a large upload and a large download pass through
// sluice without sitting in its memory: the heap of this process (sluice,
// backend and client together) stays far below the body size.
func TestPlainBodiesStream(t *testing.T) {
	size := int64(1 << 30)
	if raceEnabled {
		size = 128 << 20 // the race detector makes every byte slow
	}
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	// The base is taken after a collection, and only then does sampling
	// start: garbage an earlier test left must not count as a peak here.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	limit := base + 64<<20
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	c, r := dialProxy(t, p.addr)
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() {
		head := "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.FormatInt(size, 10) + "\r\n\r\n"
		_, _ = c.Write([]byte(head))
		chunk := bytes.Repeat([]byte{'u'}, 256<<10)
		for left := size; left > 0; left -= int64(len(chunk)) {
			if _, err := c.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := "POST /api/upload body=" + strconv.FormatInt(size, 10) + "\n"; string(body) != want {
		t.Fatalf("upload answer %q, want %q", body, want)
	}
	if peak.Load() > limit {
		t.Fatalf("heap in use peaked at %d MiB during a %d MiB upload (base %d MiB)", peak.Load()>>20, size>>20, base>>20)
	}

	_, _ = c.Write([]byte("GET /api/download?n=" + strconv.FormatInt(size, 10) + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("download: %d bytes of %d, %v", n, size, err)
	}
	if peak.Load() > limit {
		t.Fatalf("heap in use peaked at %d MiB during a %d MiB download (base %d MiB)", peak.Load()>>20, size>>20, base>>20)
	}
	t.Logf("%d MiB each way; heap in use peaked %d MiB above its base", size>>20, (peak.Load()-base)>>20)
}

// TestPlainSmallBodies: a small answer body (read whole before the answer
// goes out) arrives intact, including an empty one and one of exactly the
// bound; the backend connection goes back to its pool after each; and a
// small body the backend breaks off never reaches the client as a whole
// answer.
func TestPlainSmallBodies(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	c, r := dialProxy(t, p.addr)
	for i, n := range []int{0, 1, 100, smallBody, smallBody + 1, 3 * smallBody} {
		resp, body := exchange(t, c, r, "GET /api/download?n="+strconv.Itoa(n)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || len(body) != n || resp.ContentLength != int64(n) {
			t.Fatalf("download of %d: %d, %d bytes, Content-Length %d", n, resp.StatusCode, len(body), resp.ContentLength)
		}
		if want := strings.Repeat("0123456789abcdef", 4096)[:n]; body != want {
			t.Fatalf("download of %d: body differs", n)
		}
		resp, body = exchange(t, c, r, "GET /api/small"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET /api/small"+strconv.Itoa(i)+" body=0\n" {
			t.Fatalf("small answer: %d %q", resp.StatusCode, body)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Fatalf("%d backend connections for sequential requests, want 1 (kept alive)", n)
	}

	c2, r2 := dialProxy(t, p.addr)
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Write([]byte("GET /api/cut HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(r2, nil); err == nil {
		if body, err := io.ReadAll(resp.Body); err == nil {
			t.Fatalf("a body cut off at 10 of 100 bytes reached the client whole: %d %q", resp.StatusCode, body)
		}
	}
	// The pool lost the broken connection and nothing else.
	c3, r3 := dialProxy(t, p.addr)
	if resp, body := exchange(t, c3, r3, "GET /api/after HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "GET /api/after body=0\n" {
		t.Fatalf("after a cut body: %d %q", resp.StatusCode, body)
	}
}

// TestPlainAdmission: allow/deny and limit_req apply to plain requests,
// with the same statuses and Retry-After as on the upgrade path.
func TestPlainAdmission(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, `
  limit_req = { rate = "1r/m", burst = 2 }
  [[server.location]]
  path = "/private/"
  proxy_pass = "`+be.addr+`"
  deny = ["127.0.0.0/8"]
`))
	c, r := dialProxy(t, p.addr)
	resp, _ := exchange(t, c, r, "GET /private/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 403 {
		t.Fatalf("denied address: %d", resp.StatusCode)
	}
	codes := []int{}
	for i := 0; i < 4; i++ {
		resp, _ = exchange(t, c, r, "GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 200 429]" {
		t.Fatalf("limit_req burst 2: %v", codes)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if got := p.e.Refusals()[RuleLimitReq]; got != 1 {
		t.Fatalf("limit_req refusals %d, want 1", got)
	}
}

// TestPlainOverTLS: a plain request on a TLS listener is proxied with
// X-Forwarded-Proto https, and an upgrade that follows on the same
// connection becomes a tunnel.
func TestPlainOverTLS(t *testing.T) {
	be := startHTTPBackend(t)
	ca := newCA(t)
	dir := t.TempDir()
	cert, key, _ := ca.leaf(t, dir, "a", "a.test")
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [server.tls]
  certificates = [{ cert = %q, key = %q }]
  [[server.location]]
  path = "/"
  proxy_pass = %q
`, cert, key, be.addr))
	c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: ca.pool, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, body := exchange(t, c, bufio.NewReader(c), "GET /api/tls HTTP/1.1\r\nHost: a.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /api/tls body=0\n" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if v := be.last(t).Header.Get("X-Forwarded-Proto"); v != "https" {
		t.Fatalf("X-Forwarded-Proto %q", v)
	}
	// The same TLS connection then upgrades: a tunnel on the goroutine path.
	wsKey := "dGhlIHNhbXBsZSBub25jZQ=="
	r := bufio.NewReader(c)
	_, _ = c.Write([]byte("GET /ws/tls HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	up, err := http.ReadResponse(r, nil)
	if err != nil || up.StatusCode != 101 || up.Header.Get("Sec-WebSocket-Accept") != acceptFor(wsKey) {
		t.Fatalf("upgrade after a plain request over TLS: %v %v", up, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, 4)
		if _, err := io.ReadFull(r, echo); err != nil || !bytes.Equal(echo, []byte{0x81, 2, 'h', 'i'}) {
			t.Fatalf("echo %d over the TLS tunnel: % x %v", i, echo, err)
		}
	}
	// The goroutine relay publishes its totals for /tunnels as well (each
	// direction's goroutine counts right after its write, so poll).
	waitFor(t, "live totals on the TLS path", func() bool {
		live := p.e.live.snapshot()
		return len(live) == 1 && live[0].live.BytesUp.Load() == 16 && live[0].live.BytesDown.Load() > 8 && live[0].live.LastActive.Load() != 0
	})
}

// TestStaticThroughSluice: the static rules end to end on a sluice
// listener, where the path is routed (normalised, matched to a location)
// before the file is looked up: escapes are refused whichever location
// they would start in, and a single-page app's routes get its index.
func TestStaticThroughSluice(t *testing.T) {
	dir := t.TempDir()
	root := dir + "/public"
	if err := os.MkdirAll(root+"/assets", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"/index.html":       "<!doctype html><title>app</title>",
		"/assets/app.js":    strings.Repeat("console.log('sluice');\n", 40),
		"/../outside.txt":   "root:x:0:0:outside\n",
		"/assets/notes.txt": "notes",
	} {
		if err := os.WriteFile(root+name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", root+"/link-out"); err != nil {
		t.Fatal(err)
	}
	be := startHTTPBackend(t)
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/"
  root = %q
  try_files = ["$uri", "$uri/", "/index.html"]
  [[server.location]]
  path = "/api/"
  proxy_pass = %q
`, root, be.addr))
	for _, tt := range []struct {
		target string
		status int
		body   string // a prefix of the body, if checked
	}{
		{"/", 200, "<!doctype html>"},
		{"/rooms/42", 200, "<!doctype html>"}, // the SPA fallback
		{"/assets/notes.txt", 200, "notes"},
		{"/assets/../assets/notes.txt", 200, "notes"},
		{"/../outside.txt", 403, ""},
		{"/%2e%2e/outside.txt", 403, ""},
		{"/assets/..%2f..%2f..%2foutside.txt", 403, ""},
		{"/%252e%252e/outside.txt", 200, "<!doctype html>"}, // a literal name: not found, so the fallback
		{"/assets%5c..%5c..%5coutside.txt", 403, ""},
		{"/index.html%00.js", 403, ""},
		{"/link-out", 403, ""},
		{"/api/../assets/notes.txt", 200, "notes"}, // routed by its resolved path: a file, not the API
		{"/assets/../api/x", 200, "GET /assets/../api/x body=0"},
	} {
		c, r := dialProxy(t, p.addr)
		resp, body := exchange(t, c, r, "GET "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != tt.status || !strings.HasPrefix(body, tt.body) || strings.Contains(body, "root:") {
			t.Errorf("%s: %d %q, want %d %q", tt.target, resp.StatusCode, body, tt.status, tt.body)
		}
	}
	c, r := dialProxy(t, p.addr)
	resp, body := exchange(t, c, r, "GET /assets/app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("app.js with gzip: %v", resp.Header)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != strings.Repeat("console.log('sluice');\n", 40) {
		t.Fatal("gzip body does not decode to the file")
	}
}

func TestListsName(t *testing.T) {
	for _, tc := range []struct {
		list, name string
		want       bool
	}{
		{"X-Hop", "x-hop", true},
		{"keep-alive, X-Hop", "X-HOP", true},
		{" close ,\tX-Hop\t", "X-Hop", true},
		{"X-Hop-Only", "X-Hop", false},
		{"X-Ho", "X-Hop", false},
		{"", "X-Hop", false},
		{",,", "X-Hop", false},
	} {
		if got := listsName([]byte(tc.list), []byte(tc.name)); got != tc.want {
			t.Errorf("listsName(%q, %q) = %v, want %v", tc.list, tc.name, got, tc.want)
		}
	}
}
