package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/bench"
)

// buildBinaries compiles sluice and the echo backend once per test binary.
func buildBinaries(t testing.TB) (sluice, echo string) {
	t.Helper()
	dir := t.TempDir()
	sluice, echo = filepath.Join(dir, "sluice"), filepath.Join(dir, "echo")
	for out, pkg := range map[string]string{sluice: "../cmd/sluice", echo: "../examples/echo"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return sluice, echo
}

// startChild runs a process for the test and stops it (by its PID) at the end.
func startChild(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd
}

func childFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestManyConcurrentTunnels holds 5,000 tunnels open at once through a
// sluice child process to an echo child process, checks every one echoes,
// then closes them and checks sluice's fd count returns to its baseline.
// The test process holds only the client sockets and uses no goroutine per
// connection, so it runs under the race detector too.
func TestManyConcurrentTunnels(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	const n = 5000
	sluiceBin, echoBin := buildBinaries(t)
	echoAddr, proxyAddr := freeAddr(t), freeAddr(t)
	startChild(t, echoBin, "-listen", echoAddr, "-quiet")
	waitListening(t, echoAddr)
	proxyCmd := startChild(t, sluiceBin, "--listen", proxyAddr, "--proxy", "/ws/="+echoAddr, "--log-level", "warn", "--workers", "2")
	waitListening(t, proxyAddr)
	time.Sleep(100 * time.Millisecond)
	base := childFDs(t, proxyCmd.Process.Pid)

	conns := openTunnels(t, proxyAddr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if got := childFDs(t, proxyCmd.Process.Pid) - base; got < 2*n {
		t.Fatalf("sluice holds %d more fds with %d tunnels open, want ≥ %d", got, n, 2*n)
	}
	for i, c := range conns {
		msg := []byte(fmt.Sprintf("tunnel %d", i))
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatalf("tunnel %d write: %v", i, err)
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || !bytes.Equal(got, []byte(fmt.Sprintf("tunnel %d", i))) {
			t.Fatalf("tunnel %d echo: %q %v", i, got, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(5 * time.Second)
	for childFDs(t, proxyCmd.Process.Pid) > base {
		if time.Now().After(deadline) {
			t.Fatalf("sluice holds %d fds after all tunnels closed, baseline %d", childFDs(t, proxyCmd.Process.Pid), base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smapsPSS reads a process's proportional set size in KiB.
func smapsPSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "Pss:") {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimPrefix(s.Text(), "Pss:"), "%d", &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("no Pss line")
}

// BenchmarkIdleTunnelMemory opens 9,000 tunnels through a sluice child
// process and reports the growth of sluice's PSS per idle tunnel. Run it
// with -benchtime=1x: one iteration is one full measurement.
//
//	go test -run XXX -bench IdleTunnelMemory -benchtime 1x ./engine/
func BenchmarkIdleTunnelMemory(b *testing.B) {
	const n = 9000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		perTunnel := measureIdle(b, n)
		b.ReportMetric(perTunnel, "KiB/tunnel")
	}
}

func measureIdle(b *testing.B, n int) float64 {
	sluiceBin, echoBin := buildBinaries(b)
	echoAddr, proxyAddr := freeAddr(b), freeAddr(b)
	startChild(b, echoBin, "-listen", echoAddr, "-quiet")
	waitListening(b, echoAddr)
	proxy := startChild(b, sluiceBin, "--listen", proxyAddr, "--proxy", "/ws/="+echoAddr, "--log-level", "warn", "--workers", "1")
	waitListening(b, proxyAddr)
	// Warm up: one tunnel, so the loops' shared buffers exist before the baseline.
	warm, _, err := websocket.DefaultDialer.Dial("ws://"+proxyAddr+"/ws/", nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = warm.WriteMessage(websocket.TextMessage, []byte("warm"))
	_, _, _ = warm.ReadMessage()
	warm.Close()
	time.Sleep(200 * time.Millisecond)
	before, err := smapsPSS(proxy.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	conns := openTunnels(b, proxyAddr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Every tunnel carries one message, as a real idle chat client would
	// have, then sits idle.
	for i, c := range conns {
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			b.Fatalf("tunnel %d: %v", i, err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatalf("tunnel %d: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	after, err := smapsPSS(proxy.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	per := float64(after-before) / float64(n)
	b.Logf("sluice PSS %d KiB → %d KiB with %d idle tunnels: %.2f KiB per tunnel", before, after, n, per)
	return per
}

// openTunnels opens n WebSocket tunnels to ws://addr/ws/, spread over 50
// loopback source addresses so ephemeral ports never run out.
func openTunnels(tb testing.TB, addr string, n int) []*websocket.Conn {
	tb.Helper()
	sources, err := bench.NewSources(50)
	if err != nil {
		tb.Fatal(err)
	}
	conns := make([]*websocket.Conn, 0, n)
	for i := 0; i < n; i++ {
		d := &websocket.Dialer{
			HandshakeTimeout: 10 * time.Second,
			NetDial:          sources.Dialer(10 * time.Second).Dial,
			ReadBufferSize:   256, WriteBufferSize: 256,
		}
		c, _, err := d.Dial("ws://"+addr+"/ws/", nil)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			tb.Fatalf("tunnel %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// BenchmarkIdlePlainConnMemory: what a kept-alive plain HTTP connection
// that has gone quiet costs sluice's heap and stacks (after two GCs, so
// pooled buffers are gone too), parked in the event loops (goFront.park)
// and, for comparison, left on its goroutine. In process: the client side
// of each connection (a net.Conn, no buffer kept) is counted too, the same
// in both.
func BenchmarkIdlePlainConnMemory(b *testing.B) {
	const n = 2000
	root := b.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<!doctype html><p>hi</p>\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		park time.Duration
	}{{"parked", parkAfter}, {"on-goroutines", time.Hour}} {
		b.Run(tc.name, func(b *testing.B) {
			saved := parkAfter
			parkAfter = tc.park
			defer func() { parkAfter = saved }()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := startProxy(b, fmt.Sprintf("[log]\naccess_log = \"off\"\n[[server]]\nlisten = [\"{{listen}}\"]\n  [[server.location]]\n  path = \"/\"\n  root = %q\n", root))
				get := func() net.Conn {
					c, err := net.Dial("tcp", p.addr)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						b.Fatal(err)
					}
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("%v %v", resp, err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					return c
				}
				get().Close() // warm up: the loops' and fasthttp's first allocations
				time.Sleep(100 * time.Millisecond)
				m0 := heapAndStacks()
				conns := make([]net.Conn, n)
				for j := range conns {
					conns[j] = get()
				}
				time.Sleep(saved + 1500*time.Millisecond)
				m1 := heapAndStacks()
				if tc.park < time.Hour && p.e.goFront.live.Load() != 0 {
					b.Fatalf("%d connections did not park", p.e.goFront.live.Load())
				}
				per := float64(m1-m0) / n / 1024
				b.Logf("heap and stacks %d KiB, %d KiB with %d idle connections %s: %.2f KiB each", m0>>10, m1>>10, n, tc.name, per)
				b.ReportMetric(per, "KiB/idle-conn")
				for _, c := range conns {
					c.Close()
				}
			}
		})
	}
}

// heapAndStacks is the Go memory in use after two collections (the second
// empties sync.Pool's victim cache).
func heapAndStacks() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
