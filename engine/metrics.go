package engine

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are plain atomics updated where the event already costs a
// system call or more (a verdict, a tunnel's end, a request's answer):
// never per relayed chunk, never under a lock. The admin listener
// (admin.go) reads them.

// locMetrics are one location's counters.
type locMetrics struct {
	tunnels   atomic.Int64                // verified tunnels alive
	outcomes  [maxStatus + 1]atomic.Int64 // handshakes by the status the client got; 0 = left before any
	requests  [maxStatus + 1]atomic.Int64 // plain HTTP requests by status
	bytesUp   atomic.Int64                // client → upstream, of ended tunnels
	bytesDown atomic.Int64                // upstream → client, of ended tunnels
}

const maxStatus = 599

func statusIndex(s int) int {
	if s < 0 || s > maxStatus {
		return 0
	}
	return s
}

// engineMetrics are the process-wide ones.
type engineMetrics struct {
	started          time.Time
	refused          [maxStatus + 1]atomic.Int64 // refusals by status; 0 = closed without an answer
	tunnelDuration   histogram                   // seconds, from accept to the tunnel's end
	handshakeLatency histogram                   // seconds, from accept to the verified 101
}

// histogram is a fixed-bucket Prometheus histogram with atomic counts.
type histogram struct {
	bounds []float64      // upper bounds, ascending; +Inf implied
	counts []atomic.Int64 // per bucket (not cumulative), len(bounds)+1
	sum    atomic.Uint64  // float64 bits
	n      atomic.Int64
}

func newHistogram(bounds ...float64) histogram {
	return histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// countRefused counts a handshake or request the proxy refused itself,
// by the status it answered (0: closed without an answer).
func (e *Engine) countRefused(status int) {
	e.stats.refused.Add(1)
	e.metrics.refused[statusIndex(status)].Add(1)
}

func newEngineMetrics() *engineMetrics {
	return &engineMetrics{
		started: time.Now(),
		// Tunnels live from a second to days.
		tunnelDuration: newHistogram(1, 10, 60, 300, 1800, 3600, 4*3600, 24*3600),
		// A handshake through a healthy backend takes well under a
		// millisecond on a LAN; tens of ms means a slow backend.
		handshakeLatency: newHistogram(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
	}
}

// liveTunnels is the set of verified tunnels alive, for /tunnels. A
// tunnel is added when its 101 is verified and removed when it ends: one
// sharded mutex each time, never on the relay path.
type liveTunnels struct {
	next   atomic.Uint64
	shards [liveShards]liveShard
}

const liveShards = 16

type liveShard struct {
	mu sync.Mutex
	m  map[uint64]*tunnel
}

func (l *liveTunnels) add(t *tunnel) {
	t.id = l.next.Add(1)
	s := &l.shards[t.id%liveShards]
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]*tunnel)
	}
	s.m[t.id] = t
	s.mu.Unlock()
}

func (l *liveTunnels) remove(t *tunnel) {
	s := &l.shards[t.id%liveShards]
	s.mu.Lock()
	delete(s.m, t.id)
	s.mu.Unlock()
}

// snapshot returns the tunnels alive, oldest first.
func (l *liveTunnels) snapshot() []*tunnel {
	var out []*tunnel
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, t := range s.m {
			out = append(out, t)
		}
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
