package engine

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-proxy/sluice/configs"
)

// TestAccessLog checks one line per finished tunnel and per refused
// handshake, with the fields an operator needs.
func TestAccessLog(t *testing.T) {
	be := startBackend(t, backendOpts{})
	addr := freeAddr(t)
	cfg, err := configs.Parse([]byte(strings.ReplaceAll(simpleConfig(be.addr), "{{listen}}", addr)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	e, err := New(cfg, Logs{Access: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	}()
	waitListening(t, addr)
	p := &proxy{addr: addr, e: e}

	c := dialWS(t, p, "/ws/room", nil, nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("12345"))
	_, _, _ = c.ReadMessage()
	c.Close()
	rawExchange(t, addr, strings.Replace(upgradeHead, "/ws/chat", "/nowhere", 1)+"\r\n", time.Second)

	deadline := time.Now().Add(3 * time.Second)
	for logs.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var tunnel, refused map[string]any
	for _, e := range logs.All() {
		switch e.Message {
		case "tunnel":
			tunnel = e.ContextMap()
		case "refused":
			refused = e.ContextMap()
		}
	}
	if tunnel == nil || refused == nil {
		t.Fatalf("want a tunnel line and a refused line, got %v", logs.All())
	}
	for k, want := range map[string]any{
		"path": "/ws/room", "upstream": be.addr, "status": "101", "end": "client_closed",
	} {
		if tunnel[k] != want {
			t.Errorf("tunnel %s = %v, want %v (line %v)", k, tunnel[k], want, tunnel)
		}
	}
	// The client sent one 5-byte frame (11 bytes masked) and got it back (7 bytes).
	if in, _ := tunnel["bytes_in"].(int64); in < 11 {
		t.Errorf("bytes_in = %v", tunnel["bytes_in"])
	}
	if out, _ := tunnel["bytes_out"].(int64); out < 7+129 {
		t.Errorf("bytes_out = %v, want the 101 head and the echo", tunnel["bytes_out"])
	}
	if !strings.HasPrefix(tunnel["client"].(string), "127.0.0.1:") {
		t.Errorf("client = %v", tunnel["client"])
	}
	if refused["status"] != int64(404) || refused["path"] != "/nowhere" {
		t.Errorf("refused line %v", refused)
	}
}

// countingConn counts what a test client reads.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n += int64(n)
	return n, err
}

// TestAccessLogPlainCountsWhatWent: a plain request's line is written once
// its answer has gone out, a streamed one included, and gives the bytes
// that crossed the client's connection for it (heads included) and the
// time they took.
func TestAccessLogPlainCountsWhatWent(t *testing.T) {
	chunk := strings.Repeat("x", 1000)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stream" {
			// No Content-Length: chunked, the second part 300 ms later.
			_, _ = io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}
		_, _ = io.WriteString(w, chunk)
	})}
	go func() { _ = be.Serve(ln) }()
	t.Cleanup(func() { be.Close() })

	p, logs := startGuarded(t, plainConfig(ln.Addr().String(), ""))

	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc := &countingConn{Conn: nc}
	r := bufio.NewReader(cc)
	reqs := []string{
		"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
	}
	var got []int64 // bytes the client read per answer
	for _, req := range reqs {
		before := cc.n
		resp, body := exchange(t, nc, r, req)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, chunk) {
			t.Fatalf("%q: %d, %d bytes", req, resp.StatusCode, len(body))
		}
		if r.Buffered() != 0 {
			t.Fatalf("%d bytes past the answer", r.Buffered())
		}
		got = append(got, cc.n-before)
	}
	nc.Close()

	deadline := time.Now().Add(3 * time.Second)
	for logs.FilterMessage("request").Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	lines := logs.FilterMessage("request").All()
	if len(lines) != 2 {
		t.Fatalf("want 2 request lines, got %v", logs.All())
	}
	for i, l := range lines {
		m := l.ContextMap()
		if m["bytes_in"] != int64(len(reqs[i])) || m["bytes_out"] != got[i] {
			t.Errorf("line %d: bytes_in %v bytes_out %v, want %d and %d (%v)", i, m["bytes_in"], m["bytes_out"], len(reqs[i]), got[i], m)
		}
	}
	m := lines[0].ContextMap()
	if m["path"] != "/stream" || m["status"] != int64(200) {
		t.Errorf("first line %v", m)
	}
	if d, _ := m["duration"].(time.Duration); d < 300*time.Millisecond {
		t.Errorf("duration %v: the streamed answer took 300 ms to go out", m["duration"])
	}
}
