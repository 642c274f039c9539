package bench

import (
	"runtime"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 60 s with 3
// significant figures (±0.1%).
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// recorder collects one latency distribution from many goroutines. A
// histogram of this range and precision is 139 KB, so one per goroutine
// would cost 1.4 GB at 10,000 connections: goroutines share a fixed set of
// shards instead, goroutine g recording into shard g mod len. With no
// more goroutines than shards each has its own, and its mutex is never
// contended; beyond that a few goroutines share one. The shards are
// merged when the run ends.
type recorder struct {
	shards []shard
}

type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keep neighbouring shards' locks off one cache line
}

// newRecorder makes a recorder for the given number of goroutines.
func newRecorder(goroutines int) *recorder {
	n := min(max(goroutines, 1), 4*runtime.GOMAXPROCS(0))
	r := &recorder{shards: make([]shard, n)}
	for i := range r.shards {
		r.shards[i].h = newHistogram()
	}
	return r
}

// record adds d, clamped to the histogram's range, for goroutine g.
// Hot path: no allocation.
func (r *recorder) record(g int, d time.Duration) {
	us := min(max(d.Microseconds(), histMin), histMax)
	s := &r.shards[g%len(r.shards)]
	s.mu.Lock()
	_ = s.h.RecordValue(us)
	s.mu.Unlock()
}

// summary merges the shards and summarizes them.
func (r *recorder) summary() Latency {
	hs := make([]*hdrhistogram.Histogram, len(r.shards))
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		hs[i] = s.h
		s.mu.Unlock()
	}
	return summarize(merge(hs...))
}

// merge returns a new histogram holding every value of hs.
func merge(hs ...*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	m := newHistogram()
	for _, h := range hs {
		m.Merge(h)
	}
	return m
}

// summarize reads the summary Result reports from h (µs).
func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean(),
		P50:   float64(h.ValueAtQuantile(50)),
		P90:   float64(h.ValueAtQuantile(90)),
		P99:   float64(h.ValueAtQuantile(99)),
		P999:  float64(h.ValueAtQuantile(99.9)),
		Max:   float64(h.Max()),
	}
}
