package engine

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/configs"
)

func mustParse(t *testing.T, text string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(text), "reload.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	return cfg
}

// TestReloadKeepsTunnels: a reload sends new tunnels to the new upstream
// and serves the new locations, while a tunnel opened before keeps its
// backend; per-location counters carry over.
func TestReloadKeepsTunnels(t *testing.T) {
	be1 := startBackend(t, backendOpts{})
	be2 := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be1.addr))
	old := dialWS(t, p, "/ws/", nil, nil)
	defer old.Close()
	echoOnce(t, old, websocket.TextMessage, []byte("before"))

	text := strings.Replace(simpleConfig(be2.addr), "{{listen}}", p.addr, 1) + `
  [[server.location]]
  path = "/new/"
  proxy_pass = "` + be2.addr + `"
`
	gen, err := p.e.Reload(mustParse(t, text))
	if err != nil || gen != 1 || p.e.Generation() != 1 {
		t.Fatalf("reload: generation %d, %v", gen, err)
	}
	echoOnce(t, old, websocket.TextMessage, []byte("after")) // untouched
	fresh := dialWS(t, p, "/ws/", nil, nil)
	defer fresh.Close()
	echoOnce(t, fresh, websocket.TextMessage, []byte("new"))
	if _, _, uri := be2.lastHeader(t); uri != "/ws/" {
		t.Fatalf("new tunnel reached %q on the new backend", uri)
	}
	nl := dialWS(t, p, "/new/", nil, nil)
	nl.Close()
	var ws *location
	for _, l := range p.e.rt().listeners[0].servers[0].locations {
		if string(l.path) == "/ws/" {
			ws = l
		}
	}
	if got := ws.m.outcomes[101].Load(); got != 2 {
		t.Fatalf("/ws/ handshakes after the reload: %d, want 2 (carried over)", got)
	}
}

// TestReloadListeners: a reload opens the listen addresses the file adds
// and closes those it drops, while the address in both keeps accepting;
// an address that cannot be bound fails the reload, leaving everything as
// it was.
func TestReloadListeners(t *testing.T) {
	be := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(be.addr))
	other := "127.0.0.250:" + strings.Split(freeAddr(t), ":")[1] // see TestReloadUnderLoad
	both := strings.Replace(simpleConfig(be.addr), `listen = ["{{listen}}"]`, fmt.Sprintf(`listen = [%q, %q]`, p.addr, other), 1)
	one := strings.Replace(simpleConfig(be.addr), "{{listen}}", p.addr, 1)
	ws := func(addr string) error {
		c, _, err := (&websocket.Dialer{HandshakeTimeout: 3 * time.Second}).Dial("ws://"+addr+"/ws/", nil)
		if err == nil {
			echoOnce(t, c, websocket.TextMessage, []byte("hi"))
			c.Close()
		}
		return err
	}
	if _, err := p.e.Reload(mustParse(t, both)); err != nil {
		t.Fatal(err)
	}
	if err := ws(other); err != nil {
		t.Fatalf("added listener: %v", err)
	}
	if _, err := p.e.Reload(mustParse(t, one)); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", other, time.Second); err == nil {
		c.Close()
		t.Fatal("a removed listener still accepts")
	}
	if err := ws(p.addr); err != nil {
		t.Fatalf("the kept listener: %v", err)
	}
	// Taken by someone else: the reload fails and nothing changes.
	squat, err := net.Listen("tcp", other)
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	if _, err := p.e.Reload(mustParse(t, both)); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("reload onto a taken address: %v", err)
	}
	if p.e.Generation() != 2 {
		t.Fatalf("generation %d after a failed reload, want 2", p.e.Generation())
	}
	if err := ws(p.addr); err != nil {
		t.Fatalf("after the failed reload: %v", err)
	}
}

// TestReloadUnderLoad: tunnels echo continuously while the config is
// reloaded 50 times, alternating the upstream between two backends and
// adding and removing a second listener, and new handshakes keep arriving
// on the unchanged listener: no tunnel drops, no handshake fails, and the
// fd count comes back to its baseline.
func TestReloadUnderLoad(t *testing.T) {
	n := 2000
	if raceEnabled || testing.Short() {
		n = 300
	}
	var echoes [2]*bench.EchoServer
	for i := range echoes {
		s, err := bench.ListenEcho("127.0.0.1:0", bench.EchoOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		echoes[i] = s
	}
	p := startProxy(t, simpleConfig(echoes[0].Addr()))
	// The two configs alternate the upstream, and the second also opens a
	// second listen address, which the first closes again.
	// On an address no client of this test connects from: a port from the
	// ephemeral range that is free now can become the local port of one of
	// the test's own outgoing connections once the listener is closed.
	extra := "127.0.0.250:" + strings.Split(freeAddr(t), ":")[1]
	cfgs := [2]*configs.Config{
		mustParse(t, strings.Replace(simpleConfig(echoes[0].Addr()), "{{listen}}", p.addr, 1)),
		mustParse(t, strings.Replace(simpleConfig(echoes[1].Addr()), `listen = ["{{listen}}"]`, fmt.Sprintf(`listen = [%q, %q]`, p.addr, extra), 1)),
	}
	base := openFDs(t)

	tunnels := make([]net.Conn, n)
	for i := range tunnels {
		c, resp := openFrom(t, sourceFor(i), p.addr, head("/ws/"))
		if statusOf(resp) != 101 {
			t.Fatalf("tunnel %d: %q", i, resp)
		}
		tunnels[i] = c
	}
	var (
		stop           atomic.Bool
		echoed, failed atomic.Int64
		wg             sync.WaitGroup
		firstErr       atomic.Value
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for round := 0; !stop.Load(); round++ {
				for i := w; i < n && !stop.Load(); i += 8 {
					if err := wsEcho(tunnels[i], []byte(fmt.Sprintf("t%d r%d", i, round))); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("tunnel %d: %v", i, err))
						return
					}
					echoed.Add(1)
				}
			}
		}(w)
	}
	var handshakes, badHandshakes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			c, resp := openFrom(t, "127.0.0.1", p.addr, head("/ws/"))
			c.Close()
			handshakes.Add(1)
			if statusOf(resp) != 101 {
				badHandshakes.Add(1)
			}
		}
	}()
	start := time.Now()
	for i := 0; i < 50; i++ {
		if _, err := p.e.Reload(cfgs[(i+1)%2]); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d tunnels failed to echo during the reloads; first: %v", failed.Load(), firstErr.Load())
	}
	if badHandshakes.Load() != 0 || handshakes.Load() == 0 {
		t.Fatalf("%d of %d handshakes during the reloads failed", badHandshakes.Load(), handshakes.Load())
	}
	for i, c := range tunnels { // every tunnel still there, on its first backend
		if err := wsEcho(c, []byte("last")); err != nil {
			t.Fatalf("tunnel %d after the reloads: %v", i, err)
		}
		c.Close()
	}
	t.Logf("%d tunnels, 50 reloads in %v: %d echoes and %d new handshakes meanwhile, none failed",
		n, took, echoed.Load(), handshakes.Load())
	waitFor(t, "tunnels to end", func() bool { return p.e.Tunnels() == 0 && p.e.Pending() == 0 })
	expectFDs(t, base)
}

// sourceFor spreads connections over 127.0.0.2 and up, 1,000 each, past
// the ephemeral ports of one source address.
func sourceFor(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i/1000) }

// wsEcho sends one masked binary frame and reads its echo.
func wsEcho(c net.Conn, msg []byte) error {
	if len(msg) > 125 {
		return fmt.Errorf("message too long")
	}
	frame := append([]byte{0x82, 0x80 | byte(len(msg)), 0, 0, 0, 0}, msg...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return err
	}
	back := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(c, back); err != nil {
		return err
	}
	if back[0] != 0x82 || !bytes.Equal(back[2:], msg) {
		return fmt.Errorf("echo %q", back)
	}
	return nil
}

// TestReloadOnSIGHUP: a real sluice reloads its file on SIGHUP; a broken
// file leaves the running config serving, with the file and line in the
// log; a good one sends new tunnels to the new backend.
func TestReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	sluiceBin, _ := buildBinaries(t)
	be1 := startBackend(t, backendOpts{})
	be2 := startBackend(t, backendOpts{})
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "sluice.toml")
	errLog := filepath.Join(dir, "error.log")
	write := func(backend, extra string) {
		writeFile(t, cfgPath, []byte(fmt.Sprintf(`
[log]
error_log = %q
access_log = "off"
[[server]]
listen = [%q]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
%s`, errLog, addr, backend, extra)))
	}
	write(be1.addr, "")
	cmd := startChild(t, sluiceBin, "--config", cfgPath)
	waitListening(t, addr)
	tunnel := func() {
		t.Helper()
		c, _, err := (&websocket.Dialer{HandshakeTimeout: 3 * time.Second}).Dial("ws://"+addr+"/ws/", nil)
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c, websocket.TextMessage, []byte("hi"))
		c.Close()
	}
	logHas := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(errLog)
			if strings.Contains(string(b), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("error log lacks %q:\n%s", want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tunnel()
	write(be2.addr, "  read_timeout = \"soon\"\n") // broken: not a duration
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logHas("sluice.toml:10:3: server[0].location[0].read_timeout")
	logHas("the running one stays in force")
	before := be2.seen()
	tunnel()
	if be2.seen() != before {
		t.Fatal("a broken config was applied")
	}
	write(be2.addr, "")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logHas("config reloaded")
	tunnel()
	if _, _, uri := be2.lastHeader(t); uri != "/ws/" {
		t.Fatalf("after the reload the new backend saw %q", uri)
	}
}

// TestReloadCommand: `sluice reload -c FILE` finds the running sluice by
// the config's pid_file and makes it reload; the pid file goes away when
// sluice exits.
func TestReloadCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	sluiceBin, _ := buildBinaries(t)
	be := startBackend(t, backendOpts{})
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "sluice.toml")
	errLog := filepath.Join(dir, "error.log")
	writeFile(t, cfgPath, []byte(fmt.Sprintf(`
pid_file = "sluice.pid"
[log]
error_log = %q
access_log = "off"
[[server]]
listen = [%q]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, errLog, addr, be.addr)))
	cmd := startChild(t, sluiceBin, "--config", cfgPath)
	waitListening(t, addr)
	out, err := exec.Command(sluiceBin, "reload", "-c", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("process %d", cmd.Process.Pid)) {
		t.Fatalf("sluice reload: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(errLog)
		if strings.Contains(string(b), "config reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload in the log:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_, _ = cmd.Process.Wait()
	if _, err := os.Stat(filepath.Join(dir, "sluice.pid")); !os.IsNotExist(err) {
		t.Fatalf("pid file left behind: %v", err)
	}
}

// TestReloadDrainsRemovedServers: with reload_drain_removed, a reload that
// drops an upstream server closes that server's tunnels with 1001 on both
// sides, and leaves the tunnels of servers still there alone.
func TestReloadDrainsRemovedServers(t *testing.T) {
	be1, codes1 := closeBackend(t)
	be2, _ := closeBackend(t)
	text := func(servers string) string {
		return "reload_drain_removed = true\n" + simpleConfig(servers)
	}
	p := startProxy(t, text(be1+","+be2))
	var on1, on2 *websocket.Conn
	for on1 == nil || on2 == nil { // round robin: one tunnel on each
		c := dialWS(t, p, "/ws/", nil, nil)
		echoOnce(t, c, websocket.TextMessage, []byte("hi"))
		switch up := p.e.live.snapshot(); up[len(up)-1].cur.Addr.String() {
		case be1:
			on1 = c
		default:
			on2 = c
		}
	}
	defer on1.Close()
	defer on2.Close()
	if _, err := p.e.Reload(mustParse(t, strings.Replace(text(be2), "{{listen}}", p.addr, 1))); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(on1); code != websocket.CloseGoingAway {
		t.Fatalf("tunnel of the removed server: close code %d, want 1001", code)
	}
	if code := <-codes1; code != websocket.CloseGoingAway {
		t.Fatalf("removed server's side: close code %d, want 1001", code)
	}
	echoOnce(t, on2, websocket.TextMessage, []byte("still here"))
}
