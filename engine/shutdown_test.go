package engine

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
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
