package bench

import (
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	r := &Result{
		Mode: ModeRate, URL: "ws://127.0.0.1:9000/", Conns: 100, Rate: 2000, Payload: 16 << 10, Sources: 1, Elapsed: 3,
		Sent: 6010, Echoed: 6000, Errors: map[string]int64{"timeout": 3, "mismatch": 7, "status_404": 7},
		MsgsPerSec: 2000, MBPerSec: 32.768,
		Latency:          Latency{Count: 6000, Mean: 95.5, P50: 90, P90: 150, P99: 1500, P999: 25000, Max: 2_500_000},
		HandshakeLatency: Latency{Count: 100, Mean: 800, P50: 700, P90: 900, P99: 999, P999: 999, Max: 999},
	}
	var b strings.Builder
	r.WriteTable(&b)
	out := b.String()
	for _, want := range []string{
		"mode     rate\n", "target   ws://127.0.0.1:9000/\n", "conns    100\n", "rate     2000 msg/s\n", "payload  16 KiB\n",
		"elapsed  3.00 s\n", "sent     6010\n", "echoed   6000\n",
		"errors   17 (mismatch 7, status_404 7, timeout 3)\n", "msgs/s   2000.0\n", "MB/s     32.768\n",
		"latency    count  mean   p50    p90    p99     p99.9    max\n",
		"echo       6000   96µs   90µs   150µs  1.50ms  25.00ms  2.50s\n",
		"handshake  100    800µs  700µs  900µs  999µs   999µs    999µs\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "handshakes/s") || strings.Contains(out, "alive") {
		t.Errorf("rate table shows handshake or idle rows:\n%s", out)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int]string{0: "0 B", 128: "128 B", 1000: "1000 B", 1024: "1 KiB", 1536: "1536 B", 1 << 20: "1 MiB", 64 << 20: "64 MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
