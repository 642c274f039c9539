package guard

import (
	"hash/maphash"
	"net/netip"
	"sync"
)

// connShards splits the per-address counts so event loops admitting
// different clients rarely meet on one mutex. A lock is taken once when a
// connection is admitted and once when it ends: never per relayed chunk.
const connShards = 64

// ConnLimiter caps the connections a key (a client address) holds at once:
// nginx's limit_conn with limit_conn_zone $binary_remote_addr. A slot is
// taken when the request head has been judged, before the upstream is
// dialed, and given back when the tunnel or the attempt ends, so handshakes
// in progress count as nginx counts them.
//
// Why per address and not only globally: one client opening thousands of
// idle tunnels would otherwise starve everyone else of file descriptors
// and backend slots. The count is exact; an address with no connection
// holds no memory.
type ConnLimiter struct {
	limit  int
	seed   maphash.Seed
	shards [connShards]connShard
}

type connShard struct {
	mu sync.Mutex
	n  map[netip.Addr]int32
}

// NewConnLimiter returns a limiter admitting at most limit connections per
// key; limit <= 0 admits everything (and counts nothing).
func NewConnLimiter(limit int) *ConnLimiter {
	l := &ConnLimiter{limit: limit, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].n = map[netip.Addr]int32{}
	}
	return l
}

// Limit is the per-key cap (0: none).
func (l *ConnLimiter) Limit() int { return l.limit }

func (l *ConnLimiter) shard(a netip.Addr) *connShard {
	b := a.As16()
	return &l.shards[maphash.Bytes(l.seed, b[:])%connShards]
}

// Acquire takes a slot for a and reports whether one was free. Every true
// must be matched by exactly one Release; a false takes nothing.
func (l *ConnLimiter) Acquire(a netip.Addr) bool {
	if l == nil || l.limit <= 0 {
		return true
	}
	a = a.Unmap()
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(s.n[a]) >= l.limit {
		return false
	}
	s.n[a]++
	return true
}

// Release gives back a slot taken by Acquire. The key is forgotten when
// its last slot goes, so memory follows live connections only.
func (l *ConnLimiter) Release(a netip.Addr) {
	if l == nil || l.limit <= 0 {
		return
	}
	a = a.Unmap()
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.n[a]; {
	case n > 1:
		s.n[a] = n - 1
	case n == 1:
		delete(s.n, a)
	}
	// n == 0: a Release without Acquire is a caller bug; ignoring it keeps
	// the count from going negative (which would lift the limit).
}

// Count is the number of slots a holds.
func (l *ConnLimiter) Count(a netip.Addr) int {
	if l == nil || l.limit <= 0 {
		return 0
	}
	a = a.Unmap()
	s := l.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.n[a])
}

// Total is the number of slots held over all keys (tests, metrics).
func (l *ConnLimiter) Total() int {
	if l == nil {
		return 0
	}
	t := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, n := range s.n {
			t += int(n)
		}
		s.mu.Unlock()
	}
	return t
}
