package guard

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimiter limits events (handshakes, requests) per key with nginx's
// limit_req algorithm: a leaky bucket that drains at Rate per second and
// holds up to Burst events beyond the one being served. With nodelay, as
// here, an event that fits is served at once, one that does not is refused
// (429 with Retry-After). The state per key is its "excess" and the time it
// was computed, exactly nginx's, so configs carry over with the same
// verdicts: burst = 20 admits 21 events at once, then one per 1/rate.
//
// Why: a handshake costs sluice a parse, a connect and an upstream's
// accept; a client that repeats it in a loop (a reconnect storm, a
// credential-stuffing script) must be stopped at the cost of a 429, not of
// a backend connection.
//
// nginx without nodelay delays excess requests instead of refusing them;
// a delay would hold a connection in an event loop, so sluice always
// behaves as nodelay (configs refuses "nodelay = false").
//
// Memory is bounded by the keys that are active: a key whose bucket has
// drained is equivalent to an absent one and is swept when its shard grows.
type RateLimiter struct {
	rate  float64 // events per nanosecond
	burst float64
	seed  maphash.Seed
	shard [rateShards]rateShard
}

const rateShards = 64

type rateShard struct {
	mu        sync.Mutex
	m         map[netip.Addr]bucket
	nextSweep int
}

type bucket struct {
	excess float64 // events beyond the one served, as nginx's excess/1000
	last   int64   // unix nanoseconds
}

// Rate is a parsed "10r/s" or "30r/m".
type Rate struct {
	PerSecond float64
}

// ParseRate reads nginx's rate syntax: N "r/s" or N "r/m", N a positive
// integer.
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "r/")
	v, err := strconv.Atoi(n)
	if !ok || err != nil || v <= 0 || (unit != "s" && unit != "m") {
		return Rate{}, fmt.Errorf("invalid rate %q: want e.g. \"10r/s\" or \"30r/m\"", s)
	}
	if unit == "m" {
		return Rate{float64(v) / 60}, nil
	}
	return Rate{float64(v)}, nil
}

// NewRateLimiter returns a limiter draining at r and allowing burst events
// beyond the rate (nginx's burst=N nodelay).
func NewRateLimiter(r Rate, burst int) *RateLimiter {
	l := &RateLimiter{rate: r.PerSecond / 1e9, burst: float64(max(burst, 0)), seed: maphash.MakeSeed()}
	for i := range l.shard {
		l.shard[i].m = map[netip.Addr]bucket{}
		l.shard[i].nextSweep = 1024
	}
	return l
}

// Allow records one event for key at now and reports whether it is within
// the limit. When it is not, retry is how long until one event would be:
// rounded up to whole seconds for a Retry-After header, never 0. A refused
// event does not count (nginx does not charge a rejected request either).
func (l *RateLimiter) Allow(key netip.Addr, now time.Time) (ok bool, retry time.Duration) {
	if l == nil {
		return true, 0
	}
	key = key.Unmap()
	b := key.As16()
	s := &l.shard[maphash.Bytes(l.seed, b[:])%rateShards]
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	bk, seen := s.m[key]
	if !seen {
		// nginx: the first request of a key is served with excess 0.
		s.m[key] = bucket{0, t}
		if len(s.m) >= s.nextSweep {
			l.sweep(s, t)
		}
		return true, 0
	}
	excess := bk.excess - l.rate*float64(max(t-bk.last, 0)) + 1
	if excess < 0 {
		excess = 0
	}
	if excess > l.burst {
		// Time until excess, drained, is burst-1 so that +1 fits.
		need := (bk.excess - l.rate*float64(max(t-bk.last, 0)) + 1 - l.burst) / l.rate
		sec := math.Ceil(need / 1e9)
		return false, time.Duration(max(sec, 1)) * time.Second
	}
	s.m[key] = bucket{excess, t}
	return true, 0
}

// sweep forgets keys whose bucket has drained (they are as good as new)
// and schedules the next sweep at twice the survivors, so the work is
// amortized over inserts and memory stays within twice the active keys.
func (l *RateLimiter) sweep(s *rateShard, now int64) {
	for k, bk := range s.m {
		if bk.excess-l.rate*float64(now-bk.last) <= 0 {
			delete(s.m, k)
		}
	}
	s.nextSweep = max(2*len(s.m), 1024)
}

// Keys is the number of keys held (tests, metrics).
func (l *RateLimiter) Keys() int {
	n := 0
	for i := range l.shard {
		s := &l.shard[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Sweep forgets every drained key now (a test hook, and for a ticker that
// wants memory back sooner than the amortized sweep gives it).
func (l *RateLimiter) Sweep(now time.Time) {
	for i := range l.shard {
		s := &l.shard[i]
		s.mu.Lock()
		l.sweep(s, now.UnixNano())
		s.mu.Unlock()
	}
}
