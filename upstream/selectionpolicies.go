package upstream

import (
	"math/rand/v2"
	"sync/atomic"
)

// Method names a balancing method, as written in the config.
type Method string

// The balancing methods. Each is one small Picker below.
const (
	// RoundRobin is nginx's smooth weighted round robin (its default).
	RoundRobin Method = "round_robin"
	// LeastConn picks the server with the fewest tunnels per unit of
	// weight (nginx's least_conn).
	LeastConn Method = "least_conn"
	// IPHash keeps a client network on one server (nginx's ip_hash).
	IPHash Method = "ip_hash"
	// Hash hashes a request key (nginx's hash KEY [consistent]).
	Hash Method = "hash"
	// Random draws two servers by weight and takes the one with fewer
	// tunnels per unit of weight (nginx's random two least_conn).
	Random Method = "random"
)

// Picker is one balancing method. It chooses a server of one tier (the
// primary servers, or the backups) for a new tunnel or for a retry, among
// the servers sel says are usable, and returns its index in the tier or -1.
//
// Every Picker runs on the handshake path of every event loop at once: it
// must not allocate, lock or log. Its state is atomics, or lives in the
// Selection (one per handshake), or is fixed when the tier is built.
type Picker interface {
	pick(sel *Selection, t *tier) int
}

// tier is a list of servers balanced together and its precomputed state.
type tier struct {
	servers []*Server
	base    int     // index of servers[0] in the snapshot, for Selection.tried
	cum     []int64 // cum[i] = weight of servers[0..i], down servers included (nginx's total_weight walk)
	total   int64
	rr      *roundRobin // every method falls back to it, as nginx's do
	picker  Picker
}

func newTier(servers []*Server, base int, m Method, consistent bool) tier {
	t := tier{servers: servers, base: base, cum: make([]int64, len(servers))}
	for i, s := range servers {
		t.total += s.weight
		t.cum[i] = t.total
	}
	t.rr = &roundRobin{seq: smoothSequence(servers)}
	switch m {
	case LeastConn:
		t.picker = leastConn{}
	case IPHash:
		t.picker = ipHash{}
	case Hash:
		if consistent {
			t.picker = &consistentHash{ring: newRing(servers)}
		} else {
			t.picker = hashPicker{}
		}
	case Random:
		t.picker = twoChoices{}
	default:
		t.picker = t.rr
	}
	return t
}

// walk maps w in [0, total) to the server whose weight range holds it:
// nginx's "while (w >= peer->weight) { w -= peer->weight; peer = peer->next; }".
func (t *tier) walk(w int64) int {
	lo, hi := 0, len(t.cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.cum[m] <= w {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// scan returns the first usable server from index from on, wrapping.
func (t *tier) scan(c *Selection, from int) int {
	n := len(t.servers)
	for k := 0; k < n; k++ {
		i := (from + k) % n
		if c.usable(t, i) {
			return i
		}
	}
	return -1
}

// clock reads the monotonic clock at most once per pick, and only when
// a server has failures on record.
func (c *Selection) clock() int64 {
	if c.now == 0 {
		c.now = mono()
	}
	return c.now
}

// usable reports whether server i of t may get this handshake: not tried
// by it yet, not down, not unhealthy, not failed (passive), not full.
// Atomic loads only; the clock only for a server with max_fails reached.
func (c *Selection) usable(t *tier, i int) bool {
	if c.wasTried(t.base + i) {
		return false
	}
	s := t.servers[i]
	if s.down || s.unhealthy.Load() {
		return false
	}
	if s.maxConns > 0 && s.conns.Load() >= s.maxConns {
		return false
	}
	if s.maxFails > 0 && s.fails.Load() >= s.maxFails && !c.ignorePassive && s.passiveFailed(c.clock()) {
		c.sawPassive = true
		return false
	}
	return true
}

// roundRobin is nginx's smooth weighted round robin, precomputed: the
// order nginx's per-pick loop (current_weight += weight; take the largest;
// subtract the total) produces with every server up repeats after
// sum(weight)/gcd(weights) picks, so that period is computed once and an
// atomic counter walks it. Same order as nginx, without its mutex. A
// server that is unavailable is skipped for the next one in the sequence,
// so its share spreads over the others in their smooth order.
type roundRobin struct {
	seq  []uint16 // tier-local server indexes; servers down in config are left out
	next atomic.Uint32
}

// maxSequence caps the precomputed period (2 bytes an entry). Weights
// whose reduced sum is larger are scaled down to fit, each keeping at
// least 1: the order is then nginx's for the scaled weights.
const maxSequence = 1 << 16

func smoothSequence(servers []*Server) []uint16 {
	var w []int64
	var idx []uint16
	g := int64(0)
	for i, s := range servers {
		if s.down {
			continue
		}
		w = append(w, s.weight)
		idx = append(idx, uint16(i))
		g = gcd(g, s.weight)
	}
	if len(w) == 0 {
		return nil
	}
	sum := int64(0)
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > maxSequence {
		scaled := int64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxSequence/sum)
			scaled += w[i]
		}
		sum = scaled
	}
	seq := make([]uint16, 0, sum)
	cur := make([]int64, len(w))
	for range sum {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		seq = append(seq, idx[best])
	}
	return seq
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (p *roundRobin) pick(c *Selection, t *tier) int {
	n := uint32(len(p.seq))
	if n == 0 {
		return -1
	}
	start := p.next.Add(1) - 1
	// Walk the sequence past unavailable servers, but not forever: with a
	// long sequence and most servers out, finish with a plain scan.
	limit := min(n, 4*uint32(len(t.servers)))
	for k := uint32(0); k < limit; k++ {
		i := int(p.seq[(start+k)%n])
		if c.usable(t, i) {
			return i
		}
	}
	if limit == n {
		return -1 // the whole sequence, so every server, was looked at
	}
	return t.scan(c, int(p.seq[start%n]))
}

// leastConn is nginx's least_conn: the usable server with the fewest
// tunnels (live plus being set up) per unit of weight, compared by
// cross-multiplication (conns_a·weight_b < conns_b·weight_a) so there is
// no division. Ties go to the first tied server from a start point that
// walks the smooth round-robin sequence, so, as in nginx, ties rotate in
// weighted order: with every server idle, 3:1 weights still split 3:1.
// One atomic add and one load per server; no lock.
type leastConn struct{}

func (leastConn) pick(c *Selection, t *tier) int {
	n := len(t.servers)
	if len(t.rr.seq) == 0 {
		return -1
	}
	off := int(t.rr.seq[(t.rr.next.Add(1)-1)%uint32(len(t.rr.seq))])
	best := -1
	var bc, bw int64
	for k := 0; k < n; k++ {
		i := off + k
		if i >= n {
			i -= n
		}
		// Compare first: a server that cannot beat the best so far needs
		// no availability check.
		s := t.servers[i]
		conns, w := s.conns.Load(), s.weight
		if (best < 0 || conns*bw < bc*w) && c.usable(t, i) {
			best, bc, bw = i, conns, w
		}
	}
	return best
}

// maxRehash is nginx's bound on rehashes (ip_hash, hash) and ring steps
// (consistent hash) before falling back to round robin.
const maxRehash = 20

// ipHash is ngx_http_upstream_ip_hash_module, step for step: the hash
// starts at 89; for each byte of the client's network (first three
// octets of IPv4, sixteen of IPv6) hash = (hash·113 + byte) mod 6271;
// hash mod total_weight walks the weighted server list (down servers
// keep their place). A server that is unusable or already tried costs a
// rehash (the loop runs again from the current hash); after 20, round
// robin. The hash carries over to retries, as iphp->hash does.
type ipHash struct{}

func (ipHash) pick(c *Selection, t *tier) int {
	sel := c
	k := &sel.key
	if k.netN == 0 || len(t.servers) == 1 || t.total == 0 {
		return t.rr.pick(c, t)
	}
	if !sel.hashing {
		sel.hashing, sel.hash = true, 89
	}
	for sel.tries <= maxRehash {
		h := sel.hash
		for _, b := range k.net[:k.netN] {
			h = (h*113 + uint32(b)) % 6271
		}
		sel.hash = h
		if i := t.walk(int64(h) % t.total); c.usable(t, i) {
			return i
		}
		sel.tries++
	}
	return t.rr.pick(c, t)
}

// hashPicker is ngx_http_upstream_hash_module without "consistent":
// ((crc32([REHASH] KEY) >> 16) & 0x7fff) is added to the running hash
// (Cache::Memcached's scheme), REHASH being the decimal of the rehash
// number and absent the first time; the sum mod total_weight walks the
// weighted list. Unusable or tried: rehash; after 20, round robin.
type hashPicker struct{}

func (hashPicker) pick(c *Selection, t *tier) int {
	sel := c
	if !sel.key.set || sel.key.netN != 0 || len(t.servers) == 1 || t.total == 0 {
		return t.rr.pick(c, t)
	}
	for sel.tries <= maxRehash {
		sel.hash += (sel.key.rehashCRC(sel.rehash) >> 16) & 0x7fff
		sel.rehash++
		if i := t.walk(int64(sel.hash) % t.total); c.usable(t, i) {
			return i
		}
		sel.tries++
	}
	return t.rr.pick(c, t)
}

// consistentHash walks the ketama ring (see ring) from the key's point:
// the first usable server on it wins; each unusable point costs a step,
// and after 20, round robin (nginx's get_chash_peer).
type consistentHash struct {
	ring ring
}

func (p *consistentHash) pick(c *Selection, t *tier) int {
	sel := c
	n := uint32(len(p.ring.hash))
	if !sel.key.set || sel.key.netN != 0 || n == 0 {
		return t.rr.pick(c, t)
	}
	if !sel.hashing {
		sel.hashing, sel.hash = true, uint32(p.ring.find(sel.key.crc))
	}
	for sel.tries <= maxRehash {
		if i := int(p.ring.srv[sel.hash%n]); c.usable(t, i) {
			return i
		}
		sel.hash++
		sel.tries++
	}
	return t.rr.pick(c, t)
}

// twoChoices is the power of two choices: two servers drawn at random by
// weight, and the one with fewer tunnels per unit of weight wins (nginx's
// "random two least_conn"). Draws that hit an unusable server are
// redrawn, 20 times at most, then round robin. The random numbers come
// from math/rand/v2's global source: per-thread state, no lock.
type twoChoices struct{}

func (twoChoices) pick(c *Selection, t *tier) int {
	if t.total == 0 {
		return t.rr.pick(c, t)
	}
	first := -1
	for range maxRehash {
		i := t.walk(rand.Int64N(t.total))
		if i == first || !c.usable(t, i) {
			continue
		}
		if first < 0 {
			first = i
			if len(t.servers) == 1 {
				break
			}
			continue
		}
		a, b := t.servers[first], t.servers[i]
		if b.conns.Load()*a.weight < a.conns.Load()*b.weight {
			return i
		}
		return first
	}
	if first >= 0 {
		return first
	}
	return t.rr.pick(c, t)
}
