package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkReloadWith9000Tunnels holds 9,000 tunnels through a sluice
// child process (to echo children) and reloads its config ten times,
// alternating the upstream between two echo backends. It reports the
// median and the longest reload as sluice measured them (from "reload
// done" in its log: reading and checking the file, building the new
// routing, swapping it in), and checks that every tunnel still echoes
// afterwards. Run it with -benchtime=1x:
//
//	go test -run XXX -bench ReloadWith9000Tunnels -benchtime 1x ./engine/
func BenchmarkReloadWith9000Tunnels(b *testing.B) {
	const n, reloads = 9000, 10
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sluiceBin, echoBin := buildBinaries(b)
		echo1, echo2, proxyAddr := freeAddr(b), freeAddr(b), freeAddr(b)
		startChild(b, echoBin, "-listen", echo1, "-quiet")
		startChild(b, echoBin, "-listen", echo2, "-quiet")
		waitListening(b, echo1)
		waitListening(b, echo2)
		dir := b.TempDir()
		cfgPath, errLog := filepath.Join(dir, "sluice.toml"), filepath.Join(dir, "error.log")
		write := func(backend string) {
			writeFile(b, cfgPath, []byte(fmt.Sprintf(`
workers = 2
[log]
level = "info"
error_log = %q
access_log = "off"
[[server]]
listen = [%q]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, errLog, proxyAddr, backend)))
		}
		write(echo1)
		cmd := startChild(b, sluiceBin, "--config", cfgPath)
		waitListening(b, proxyAddr)
		conns := openTunnels(b, proxyAddr, n)
		took := regexp.MustCompile(`reload done.*"took": "([^"]+)"`)
		var times []time.Duration
		for k := 1; k <= reloads; k++ {
			write([]string{echo1, echo2}[k%2])
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				b.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				log, _ := os.ReadFile(errLog)
				if m := took.FindAllSubmatch(log, -1); len(m) >= k {
					d, err := time.ParseDuration(string(m[k-1][1]))
					if err != nil {
						b.Fatal(err)
					}
					times = append(times, d)
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("reload %d not logged:\n%s", k, log)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		for j, c := range conns {
			msg := []byte(fmt.Sprintf("after %d", j))
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				b.Fatalf("tunnel %d: %v", j, err)
			}
		}
		for j, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, []byte(fmt.Sprintf("after %d", j))) {
				b.Fatalf("tunnel %d after the reloads: %q %v", j, got, err)
			}
			c.Close()
		}
		sort.Slice(times, func(x, y int) bool { return times[x] < times[y] })
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms/reload-median")
		b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms/reload-max")
		b.Logf("%d reloads with %d tunnels: %v", reloads, n, times)
	}
}
