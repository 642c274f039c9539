package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/bench"
)

// BenchmarkIdleTLSTunnelMemory is BenchmarkIdleTunnelMemory for wss://:
// 2,000 TLS tunnels through a sluice child process (TLS terminated by
// sluice, plaintext to the echo backend), each carrying one message, then
// idle. It reports the growth of sluice's PSS per tunnel. The test process
// holds 2,000 TLS clients, so it is heavier than the plaintext benchmark.
//
//	go test -run XXX -bench IdleTLSTunnelMemory -benchtime 1x ./engine/
func BenchmarkIdleTLSTunnelMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		b.ReportMetric(measureIdleTLS(b, "sluice"), "KiB/tunnel")
	}
}

// BenchmarkIdleTLSTunnelMemoryNginx is the same measurement through nginx
// (one worker, listen ... ssl, the WebSocket proxy settings of
// bench/compare), PSS of the worker process.
//
//	go test -run XXX -bench IdleTLSTunnelMemoryNginx -benchtime 1x ./engine/
func BenchmarkIdleTLSTunnelMemoryNginx(b *testing.B) {
	if _, err := exec.LookPath("nginx"); err != nil {
		b.Skip("no nginx")
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		b.ReportMetric(measureIdleTLS(b, "nginx"), "KiB/tunnel")
	}
}

const idleTLSTunnels = 2000

func measureIdleTLS(b *testing.B, target string) float64 {
	n := idleTLSTunnels
	sluiceBin, echoBin := buildBinaries(b)
	ca := newCA(b)
	dir := b.TempDir()
	ca.leaf(b, dir, "site", "a.test")
	echoAddr, proxyAddr := freeAddr(b), freeAddr(b)
	startChild(b, echoBin, "-listen", echoAddr, "-quiet")
	waitListening(b, echoAddr)
	var pid int
	if target == "nginx" {
		pid = startNginxTLS(b, dir, proxyAddr, echoAddr)
	} else {
		pid = startSluiceTLS(b, sluiceBin, dir, "site", proxyAddr, echoAddr).Process.Pid
	}

	sources, err := bench.NewSources(50)
	if err != nil {
		b.Fatal(err)
	}
	dial := func() *websocket.Conn {
		d := &websocket.Dialer{
			HandshakeTimeout: 10 * time.Second,
			NetDial:          sources.Dialer(10 * time.Second).Dial,
			TLSClientConfig:  &tls.Config{RootCAs: ca.pool, ServerName: "a.test"},
			ReadBufferSize:   256, WriteBufferSize: 256,
		}
		c, _, err := d.Dial("wss://"+proxyAddr+"/ws/", nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		return c
	}
	warm := dial()
	warm.Close()
	time.Sleep(200 * time.Millisecond)
	before, err := smapsPSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		conns = append(conns, dial())
	}
	time.Sleep(500 * time.Millisecond)
	after, err := smapsPSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	per := float64(after-before) / float64(n)
	b.Logf("%s PSS %d KiB → %d KiB with %d idle TLS tunnels: %.2f KiB per tunnel", target, before, after, n, per)
	return per
}

// startSluiceTLS runs a sluice child (one worker, no access log)
// terminating TLS on listen with dir's NAME.pem and NAME.key in front of
// backend, and waits until it listens.
func startSluiceTLS(t testing.TB, sluiceBin, dir, name, listen, backend string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(dir, "sluice.toml")
	writeFile(t, cfg, fmt.Appendf(nil, `
workers = 1
[log]
level = "warn"
access_log = "off"
[[server]]
listen = [%q]
  [server.tls]
  certificates = [{ cert = "%[3]s.pem", key = "%[3]s.key" }]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %[2]q
`, listen, backend, name))
	cmd := startChild(t, sluiceBin, "--config", cfg)
	waitListening(t, listen)
	return cmd
}

// startNginxTLS runs nginx (master and one worker) terminating TLS with
// dir's site.pem in front of backend, and returns the worker's PID.
func startNginxTLS(b *testing.B, dir, listen, backend string) int {
	conf := filepath.Join(dir, "nginx.conf")
	user := ""
	if os.Getuid() == 0 {
		user = "user root;"
	}
	text := fmt.Sprintf(`%s
worker_processes 1;
worker_rlimit_nofile 20000;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 19900; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream backend { server %[4]s; }
    server {
        listen %[3]s ssl;
        ssl_certificate %[2]s/site.pem;
        ssl_certificate_key %[2]s/site.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /ws/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffer_size 16k;
            proxy_buffers 4 16k;
        }
    }
}
`, user, dir, listen, backend)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	master := startChild(b, "nginx", "-p", dir, "-c", conf, "-g", "daemon off;")
	// Registered after startChild's kill, so it runs first: SIGTERM makes
	// the master stop its worker, which a SIGKILL to the master would orphan.
	b.Cleanup(func() {
		_ = master.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = master.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	})
	waitListening(b, listen)
	deadline := time.Now().Add(3 * time.Second)
	for {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master.Process.Pid, master.Process.Pid))
		var worker int
		if _, err := fmt.Sscan(string(kids), &worker); err == nil && worker > 0 {
			return worker
		}
		if time.Now().After(deadline) {
			b.Fatal("nginx started no worker")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkTLSHandshakes measures new wss:// connections (TCP connect, full
// TLS handshake without session resumption, upgrade, one echo, close) per
// second and the proxy's CPU per handshake, for sluice and for nginx in the
// same run, each with one worker pinned to CPU 0 and the load generator
// (this process) and the echo backend on CPU 1:
//
//	go test -run XXX -bench TLSHandshakes -benchtime 1x -count 3 ./engine/
func BenchmarkTLSHandshakes(b *testing.B) {
	if _, err := exec.LookPath("nginx"); err != nil {
		b.Skip("no nginx")
	}
	for _, target := range []string{"sluice", "nginx"} {
		b.Run(target, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				rate, cpu := measureTLSHandshakes(b, target)
				b.ReportMetric(rate, "handshakes/s")
				b.ReportMetric(cpu, "CPU-µs/handshake")
			}
		})
	}
}

func measureTLSHandshakes(b *testing.B, target string) (perSec, cpuPer float64) {
	sluiceBin, echoBin := buildBinaries(b)
	ca := newCA(b)
	dir := b.TempDir()
	ca.leaf(b, dir, "site", "a.test")
	echoAddr, proxyAddr := freeAddr(b), freeAddr(b)
	startChild(b, "taskset", "-c", "1", echoBin, "-listen", echoAddr, "-quiet")
	waitListening(b, echoAddr)
	var pids []int
	if target == "nginx" {
		w := startNginxTLS(b, dir, proxyAddr, echoAddr)
		pids = []int{w}
	} else {
		pids = []int{startSluiceTLS(b, sluiceBin, dir, "site", proxyAddr, echoAddr).Process.Pid}
	}
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(pid)).CombinedOutput(); err != nil {
			b.Fatalf("taskset: %v %s", err, out)
		}
	}
	if out, err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		b.Fatalf("taskset: %v %s", err, out)
	}
	defer func() { _ = exec.Command("taskset", "-a", "-p", "-c", "0-1", strconv.Itoa(os.Getpid())).Run() }()

	var t0, t1 int64
	res, err := bench.Run(context.Background(), bench.Options{
		Mode: bench.ModeHandshake, URL: "wss://" + proxyAddr + "/ws/", Conns: 16, Payload: 16,
		Warmup: time.Second, Duration: 5 * time.Second,
		TLS: &tls.Config{RootCAs: ca.pool, ServerName: "a.test"},
		OnMeasure: func(begin bool) {
			if begin {
				t0 = cpuTicks(b, pids)
			} else {
				t1 = cpuTicks(b, pids)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if res.Handshakes == 0 || len(res.Errors) > 0 {
		b.Fatalf("%s: %d handshakes, errors %v", target, res.Handshakes, res.Errors)
	}
	cpuPer = float64(t1-t0) * 1e6 / 100 / float64(res.Handshakes) // CLK_TCK = 100
	b.Logf("%s: %.0f handshakes/s, %.1f CPU µs per handshake", target, res.HandshakesPerSec, cpuPer)
	return res.HandshakesPerSec, cpuPer
}

// cpuTicks sums utime+stime (fields 14 and 15 of /proc/PID/stat, in clock
// ticks) over pids.
func cpuTicks(b *testing.B, pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'.
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + s
	}
	return sum
}
