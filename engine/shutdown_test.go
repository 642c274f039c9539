package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closeBackend is a gorilla echo backend that reports how each of its
// connections ended (the close code it received, or -1).
func closeBackend(t *testing.T) (addr string, codes chan int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	codes = make(chan int, 16)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					codes <- ce.Code
				} else {
					codes <- -1
				}
				return
			}
			_ = c.WriteMessage(mt, msg)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), codes
}

// closeCode reads from c until it fails and returns the close code
// received, or -1 for a connection that ended without one.
func closeCode(c *websocket.Conn) int {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
}

// TestShutdownGoingAway: a graceful shutdown closes every spliced tunnel
// with a close frame 1001 (Going Away) to both the client and the backend,
// reports a clean drain, and takes no new connection meanwhile.
func TestShutdownGoingAway(t *testing.T) {
	be, codes := closeBackend(t)
	p := startProxy(t, simpleConfig(be))
	var clients []*websocket.Conn
	for i := 0; i < 3; i++ {
		c := dialWS(t, p, "/ws/", nil, nil)
		defer c.Close()
		echoOnce(t, c, websocket.TextMessage, []byte(fmt.Sprintf("before %d", i)))
		clients = append(clients, c)
	}
	type result struct {
		clean bool
		err   error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		clean, err := p.e.Shutdown(3 * time.Second)
		res <- result{clean, err}
	}()
	for i, c := range clients {
		if code := closeCode(c); code != websocket.CloseGoingAway {
			t.Errorf("client %d: close code %d, want 1001", i, code)
		}
	}
	for i := range clients {
		select {
		case code := <-codes:
			if code != websocket.CloseGoingAway {
				t.Errorf("backend connection %d: close code %d, want 1001", i, code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("backend connection %d never ended", i)
		}
	}
	r := <-res
	if r.err != nil || !r.clean {
		t.Fatalf("Shutdown: clean %v, err %v", r.clean, r.err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a drain with nothing in flight took %v", d)
	}
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Error("a connection after the shutdown got an answer")
		}
		c.Close()
	}
}

// TestSIGTERMDrainsAndExitsZero: the real process on SIGTERM sends 1001 to
// its tunnels and exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	sluiceBin, _ := buildBinaries(t)
	be, codes := closeBackend(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sluice.toml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`
drain_timeout = "3s"
[log]
level = "warn"
access_log = "off"
[[server]]
listen = [%q]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, addr, be)))
	cmd := startChild(t, sluiceBin, "--config", cfg)
	waitListening(t, addr)
	c, _, err := (&websocket.Dialer{HandshakeTimeout: 3 * time.Second}).Dial("ws://"+addr+"/ws/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, websocket.TextMessage, []byte("hello"))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(c); code != websocket.CloseGoingAway {
		t.Errorf("client: close code %d, want 1001", code)
	}
	if code := <-codes; code != websocket.CloseGoingAway {
		t.Errorf("backend: close code %d, want 1001", code)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit status %d, want 0", ee.ExitCode())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sluice did not exit after SIGTERM")
	}
}

// TestShutdownGoingAwayTLS: tunnels on the goroutine path (a TLS client,
// and a plaintext client of a TLS backend) get their 1001 close frames
// too, and the drain is clean.
func TestShutdownGoingAwayTLS(t *testing.T) {
	be, codes := closeBackend(t)
	s := startTLSProxy(t, "")
	_ = s.p.e.Stop(context.Background())
	cfg := strings.Replace(s.config, fmt.Sprintf("proxy_pass = %q", s.be.addr), fmt.Sprintf("proxy_pass = %q", be), 1)
	p := startProxy(t, cfg)
	d := s.dialer("a.test")
	var clients []*websocket.Conn
	for i := 0; i < 2; i++ {
		c, _, err := d.Dial("wss://"+p.addr+"/ws/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoOnce(t, c, websocket.TextMessage, []byte("over TLS"))
		clients = append(clients, c)
	}
	res := make(chan bool, 1)
	go func() {
		clean, err := p.e.Shutdown(3 * time.Second)
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		res <- clean
	}()
	for i, c := range clients {
		if code := closeCode(c); code != websocket.CloseGoingAway {
			t.Errorf("TLS client %d: close code %d, want 1001", i, code)
		}
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Errorf("backend connection %d: close code %d, want 1001", i, code)
		}
	}
	if !<-res {
		t.Fatal("the drain of TLS tunnels was not clean")
	}
}

// TestShutdownMidFrameTLS: a TLS tunnel whose client stopped in the middle
// of a frame cannot take a close frame toward the backend; at the drain
// deadline it is closed anyway, the client still gets its 1001 (its side
// is between frames), and the drain is reported unclean.
func TestShutdownMidFrameTLS(t *testing.T) {
	be, codes := closeBackend(t)
	s := startTLSProxy(t, "")
	_ = s.p.e.Stop(context.Background())
	p := startProxy(t, strings.Replace(s.config, fmt.Sprintf("proxy_pass = %q", s.be.addr), fmt.Sprintf("proxy_pass = %q", be), 1))
	c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, body := exchangeRaw(t, c, head("/ws/"))
	if statusOf(resp) != 101 {
		t.Fatalf("upgrade: %q", resp)
	}
	_ = body
	// A masked text frame of 10 bytes, of which only 4 are sent.
	if _, err := c.Write([]byte{0x81, 0x8a, 1, 2, 3, 4, 'a', 'b', 'c', 'd'}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	clean, err := p.e.Shutdown(300 * time.Millisecond)
	if err != nil || clean {
		t.Fatalf("Shutdown: clean %v err %v, want an unclean drain", clean, err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("drain took %v with a 300 ms deadline", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, _ := io.ReadAll(c)
	if !bytes.Equal(got, []byte{0x88, 0x02, 0x03, 0xe9}) {
		t.Fatalf("client got %x, want the 1001 close frame", got)
	}
	if code := <-codes; code == websocket.CloseGoingAway {
		t.Fatal("the backend got a close frame in the middle of a frame")
	}
}

// exchangeRaw writes req on c and reads the response head (and whatever
// came with it).
func exchangeRaw(t *testing.T, c net.Conn, req string) (head, rest string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var b []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(b, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	_ = c.SetDeadline(time.Time{})
	i := bytes.Index(b, []byte("\r\n\r\n")) + 4
	return string(b[:i]), string(b[i:])
}
