package engine

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/bench/harness"
)

// BenchmarkMetricsCost measures what the admin listener costs: CPU per
// 128-byte round trip at 20,000 messages a second over 1,000 tunnels,
// through a sluice child pinned to CPU 0 with one worker (the echo child
// and this load generator on CPU 1), without an admin listener and with
// /metrics scraped every second, alternated twice. It reports each
// variant's best run and their ratio. Needs taskset (util-linux) and two
// CPUs; run it with -benchtime=1x on a quiet machine:
//
//	go test -run XXX -bench MetricsCost -benchtime 1x ./engine/
func BenchmarkMetricsCost(b *testing.B) {
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("taskset not found")
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sluiceBin, echoBin := buildBinaries(b)
		echoAddr := freeAddr(b)
		startChild(b, "taskset", "-c", "1", echoBin, "-listen", echoAddr, "-quiet")
		waitListening(b, echoAddr)
		best := map[bool]float64{}
		for _, scraped := range []bool{false, true, false, true} {
			us := metricsCostRun(b, sluiceBin, echoAddr, scraped)
			if v, ok := best[scraped]; !ok || us < v {
				best[scraped] = us
			}
			b.Logf("scraped=%v: %.1f µs CPU per round trip", scraped, us)
		}
		b.ReportMetric(best[false], "µs/rt-plain")
		b.ReportMetric(best[true], "µs/rt-scraped")
		b.ReportMetric(best[true]/best[false], "ratio")
	}
}

func metricsCostRun(b *testing.B, sluiceBin, echoAddr string, scraped bool) float64 {
	dir := b.TempDir()
	addr, admin := freeAddr(b), freeAddr(b)
	cfg := fmt.Sprintf("workers = 1\n[log]\nlevel = \"warn\"\naccess_log = \"off\"\n[[server]]\nlisten = [%q]\n  [[server.location]]\n  path = \"/ws/\"\n  proxy_pass = %q\n", addr, echoAddr)
	if scraped {
		cfg += fmt.Sprintf("[admin]\nlisten = %q\n", admin)
	}
	path := filepath.Join(dir, "sluice.toml")
	writeFile(b, path, []byte(cfg))
	cmd := startChild(b, "taskset", "-c", "0", sluiceBin, "--config", path)
	waitListening(b, addr)
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if scraped {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if resp, err := http.Get("http://" + admin + "/metrics"); err == nil {
					resp.Body.Close()
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	var before, after harness.ProcStat
	read := func(s *harness.ProcStat) {
		st, err := harness.ReadProcStat(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		*s = st
	}
	res, err := bench.Run(ctx, bench.Options{
		Mode: bench.ModeRate, URL: "ws://" + addr + "/ws/", Conns: 1000, Rate: 20000, Payload: 128,
		Warmup: 2 * time.Second, Duration: 8 * time.Second,
		OnMeasure: func(begin bool) {
			if begin {
				read(&before)
			} else {
				read(&after)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if res.Echoed == 0 {
		b.Fatal("nothing echoed")
	}
	cpu := float64(after.CPU()-before.CPU()) / harness.ClockTicks()
	return cpu / float64(res.Echoed) * 1e6
}
