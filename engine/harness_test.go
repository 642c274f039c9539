package engine

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/configs"
)

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fdBase.Store(t.Name(), fdTargets())
	return len(ents)
}

// fdBase holds, per test, the fds open when openFDs took its count, so a
// leak report can name the fds that were not there then.
var fdBase sync.Map // test name → map[string]string (fd → target)

func fdTargets() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[e.Name()] = target
		}
	}
	return m
}

// fdKinds counts the process's open fds by what they are ("socket",
// "anon_inode:[eventpoll]", a file path...), for a leak report, and lists
// the ones opened since openFDs(t) counted (fd number and target).
func fdKinds(t testing.TB) string {
	kinds := map[string]int{}
	now := fdTargets()
	for _, target := range now {
		if i := strings.IndexByte(target, ':'); i > 0 && (strings.HasPrefix(target, "socket") || strings.HasPrefix(target, "pipe")) {
			target = target[:i]
		}
		kinds[target]++
	}
	var added []string
	if b, ok := fdBase.Load(t.Name()); ok {
		base := b.(map[string]string)
		for fd, target := range now {
			if base[fd] != target {
				added = append(added, fd+"→"+target)
			}
		}
		sort.Strings(added)
	}
	return fmt.Sprintf("%v; new since the count: %v", kinds, added)
}

// expectFDs waits for the fd count to come back to want: closes on the
// relay loops are asynchronous to the test's own closes. The count is the
// whole test process's, so work a previous test left winding down (seen:
// 4-5 fds for a few seconds on a loaded machine) can hold it up; a real leak
// never comes back, so a generous wait costs only failing runs.
func expectFDs(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := openFDs(t)
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("open fds = %d, want %d (a leak); open now: %s", got, want, fdKinds(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backend is a real WebSocket server (gorilla) started by a test. It echoes
// and records the request heads it saw.
type backend struct {
	addr string
	srv  *http.Server
	ln   net.Listener

	mu      sync.Mutex
	headers []http.Header
	hosts   []string
	uris    []string
	conns   []*websocket.Conn
}

type backendOpts struct {
	subprotocols []string
	compression  bool
}

func startBackend(t testing.TB, o backendOpts) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: ln}
	up := websocket.Upgrader{
		Subprotocols:      o.subprotocols,
		EnableCompression: o.compression,
		ReadBufferSize:    32 << 10,
		WriteBufferSize:   32 << 10,
		// Origin policy is the proxy's business (a later issue), not the
		// test backend's.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.headers = append(b.headers, r.Header.Clone())
		b.hosts = append(b.hosts, r.Host)
		b.uris = append(b.uris, r.RequestURI)
		b.mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		c.SetReadLimit(64 << 20)
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
	})
	b.srv = &http.Server{Handler: mux}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func (b *backend) stop() {
	_ = b.srv.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
}

func (b *backend) lastHeader(t testing.TB) (http.Header, string, string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.headers) == 0 {
		t.Fatal("backend saw no request")
	}
	n := len(b.headers) - 1
	return b.headers[n], b.hosts[n], b.uris[n]
}

// proxy is an in-process sluice engine.
type proxy struct {
	addr string
	e    *Engine
}

// startProxy runs sluice on a config given as TOML. "{{listen}}" in the
// text is replaced by a free loopback address.
func startProxy(t testing.TB, toml string) *proxy {
	t.Helper()
	addr := freeAddr(t)
	toml = strings.ReplaceAll(toml, "{{listen}}", addr)
	cfg, err := configs.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	e, err := New(cfg, Logs{})
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
	return &proxy{addr: addr, e: e}
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never accepted: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// simpleConfig proxies /ws/ to the given upstream addresses.
func simpleConfig(upstreams ...string) string {
	return fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  connect_timeout = "1s"
  handshake_timeout = "1s"
`, strings.Join(upstreams, ","))
}

func dialWS(t testing.TB, p *proxy, path string, d *websocket.Dialer, hdr http.Header) *websocket.Conn {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 3 * time.Second}
	}
	c, resp, err := d.Dial("ws://"+p.addr+path, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	return c
}

// rawExchange writes raw bytes to addr and returns what comes back until
// the server closes (or the deadline).
func rawExchange(t testing.TB, addr string, req string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var sb strings.Builder
	r := bufio.NewReader(c)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return sb.String()
}

func statusOf(resp string) int {
	var proto string
	var code int
	if _, err := fmt.Sscanf(resp, "%s %d", &proto, &code); err != nil {
		return 0
	}
	return code
}

// acceptFor computes Sec-WebSocket-Accept independently of the code under
// test (RFC 6455 §4.2.2 step 5.4).
func acceptFor(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
