package upstream

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestSmoothRoundRobinOrder: the precomputed sequence is nginx's. The
// expected orders are those of nginx's own loop (the {5,1,1} one is the
// example in the commit that introduced smooth weighting, 52327e0627f4).
func TestSmoothRoundRobinOrder(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}},
		{[]int{1, 1, 1}, []int{0, 1, 2}},
		{[]int{2, 2}, []int{0, 1}}, // reduced by the gcd
		{[]int{3, 1}, []int{0, 0, 1, 0}},
		{[]int{1, 2, 3}, []int{2, 1, 0, 2, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			g := newGroup(t, Config{Servers: literal(len(tt.weights), tt.weights...)})
			for round := 0; round < 3; round++ {
				for i, want := range tt.want {
					if got := pickOnce(t, g, Key{}); got != want {
						t.Fatalf("round %d pick %d: server %d, want %d", round, i, got, want)
					}
				}
			}
		})
	}
}

func TestSequenceCapped(t *testing.T) {
	servers := literal(3, 100000, 99999, 1)
	g := newGroup(t, Config{Servers: servers})
	seq := g.snap.Load().tiers[0].rr.seq
	if len(seq) > maxSequence+3 {
		t.Fatalf("sequence of %d entries", len(seq))
	}
	n := [3]int{}
	for _, i := range seq {
		n[i]++
	}
	if n[2] < 1 || n[0] < n[1] || n[1] < 1000*n[2] {
		t.Fatalf("scaled shares %v do not keep the weights' order", n)
	}
}

// TestDistribution: every method respects weights 3:1 when tunnels are
// opened and closed one after another. Round robin and least_conn are
// exact (ties rotate in smooth order); the random ones are within ±40 of
// 300 over 400 (about 4.6 standard deviations).
func TestDistribution(t *testing.T) {
	tests := []struct {
		m         Method
		tolerance int
	}{
		{RoundRobin, 0},
		{LeastConn, 0},
		{Random, 40},
		{Hash, 40},
		{IPHash, 40},
	}
	for _, tt := range tests {
		t.Run(string(tt.m), func(t *testing.T) {
			c := Config{Servers: literal(2, 3, 1), Method: tt.m}
			if tt.m == Hash {
				c.HashKey = "$cookie_session"
			}
			g := newGroup(t, c)
			n := [2]int{}
			for i := 0; i < 400; i++ {
				var k Key
				switch tt.m {
				case Hash:
					k = KeyOf([]byte(fmt.Sprintf("session-%d", i)))
				case IPHash:
					k = AddrKey(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}))
				}
				n[pickOnce(t, g, k)]++
			}
			if d := n[0] - 300; d < -tt.tolerance || d > tt.tolerance {
				t.Fatalf("weights 3:1 over 400: %v, want 300±%d : 100", n, tt.tolerance)
			}
			t.Logf("%s 3:1 over 400: %v", tt.m, n)
		})
	}
}

// TestLeastConnPrefersIdle: with tunnels held on one server, the next ones
// go elsewhere; per unit of weight.
func TestLeastConnPrefersIdle(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(3, 1, 1, 2), Method: LeastConn})
	s := g.Servers()
	s[0].conns.Store(5)
	s[1].conns.Store(2)
	s[2].conns.Store(4) // 4/2 = 2/1: tied with s[1]
	counts := map[int]int{}
	for i := 0; i < 30; i++ {
		var sel Selection
		x, err := g.Next(&sel)
		if err != nil {
			t.Fatal(err)
		}
		x.Opened() // held
		counts[index(g, x)]++
	}
	if counts[0] >= counts[1] {
		t.Fatalf("least_conn spread %v over loads 5,2,4 with weights 1,1,2", counts)
	}
	// 41 tunnels over 4 units of weight level out near 10.25 per unit.
	for _, x := range s {
		per := float64(x.Conns()) / float64(x.Weight())
		if per < 9.5 || per > 11.5 {
			t.Fatalf("after 30 held tunnels, conns per weight %v (server %d: %d/%d)", per, index(g, x), x.Conns(), x.Weight())
		}
	}
}

// TestRandomTwoChoicesPrefersIdle: the two draws are distinct servers,
// so the most loaded of three never wins while the others are usable;
// the two idle ones share the tunnels.
func TestRandomTwoChoicesPrefersIdle(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(3), Method: Random})
	g.Servers()[0].conns.Store(100)
	n := [3]int{}
	for i := 0; i < 400; i++ {
		n[pickOnce(t, g, Key{})]++
	}
	if n[0] != 0 || n[1] < 160 || n[2] < 160 {
		t.Fatalf("loads 100,0,0: picks %v, want 0 and about 200 each", n)
	}
}

// TestIPHashMatchesNginx: the server for a client network is nginx's. The
// expected indexes come from a direct transcription of
// ngx_http_upstream_get_ip_hash_peer (Python, in the commit message of
// this test): hash = 89, hash = (hash*113 + octet) % 6271 over three
// octets, hash % total_weight walked over the weights.
func TestIPHashMatchesNginx(t *testing.T) {
	tests := []struct {
		weights []int
		net     func(i int) [4]byte
		want    []int
	}{
		{[]int{1, 1, 1}, func(i int) [4]byte { return [4]byte{127, 0, byte(2 + i), 1} }, []int{1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0}},
		{[]int{3, 1, 2}, func(i int) [4]byte { return [4]byte{10, byte(i), 7, 99} }, []int{2, 1, 0, 0, 0, 2, 2, 1, 0, 0, 0, 2}},
	}
	for _, tt := range tests {
		g := newGroup(t, Config{Servers: literal(len(tt.weights), tt.weights...), Method: IPHash})
		for i, want := range tt.want {
			ip := tt.net(i)
			if got := pickOnce(t, g, AddrKey(netip.AddrFrom4(ip))); got != want {
				t.Errorf("weights %v client %v: server %d, want %d", tt.weights, ip, got, want)
			}
		}
	}
}

// TestIPHashSameNetwork: the last octet does not matter; an IPv4-mapped
// IPv6 address is the IPv4 one; an IPv6 address hashes all its bytes.
func TestIPHashSameNetwork(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(5), Method: IPHash})
	first := pickOnce(t, g, AddrKey(netip.MustParseAddr("192.0.2.1")))
	for _, a := range []string{"192.0.2.2", "192.0.2.254", "::ffff:192.0.2.77"} {
		if got := pickOnce(t, g, AddrKey(netip.MustParseAddr(a))); got != first {
			t.Fatalf("%s: server %d, want %d (same /24)", a, got, first)
		}
	}
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		seen[pickOnce(t, g, AddrKey(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})))] = true
	}
	if len(seen) < 4 {
		t.Fatalf("50 IPv6 clients differing in the last byte reached %d of 5 servers", len(seen))
	}
}

// TestIPHashRehashesPastUnavailable: an unavailable server costs a
// rehash, so its clients spread over the others, and the rest stay put.
func TestIPHashRehashesPastUnavailable(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(3), Method: IPHash})
	before := map[int]int{}
	for i := 0; i < 60; i++ {
		before[i] = pickOnce(t, g, AddrKey(netip.AddrFrom4([4]byte{10, 1, byte(i), 1})))
	}
	g.Servers()[1].unhealthy.Store(true)
	moved := 0
	for i := 0; i < 60; i++ {
		got := pickOnce(t, g, AddrKey(netip.AddrFrom4([4]byte{10, 1, byte(i), 1})))
		if got == 1 {
			t.Fatal("an unhealthy server got a client")
		}
		if before[i] != 1 && got != before[i] {
			t.Fatalf("client %d moved from a healthy server %d to %d", i, before[i], got)
		}
		if got != before[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no client moved off the unhealthy server")
	}
}

// TestHashMatchesNginx: non-consistent hash, first choice, against a
// transcription of ngx_http_upstream_get_hash_peer in Python (zlib.crc32).
func TestHashMatchesNginx(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{1, 1, 1}, []int{0, 2, 0, 2, 0, 1, 0, 2, 2, 2, 0, 1}},
		{[]int{2, 1, 5}, []int{0, 2, 2, 0, 2, 2, 1, 2, 1, 2, 2, 0}},
	}
	for _, tt := range tests {
		g := newGroup(t, Config{Servers: literal(len(tt.weights), tt.weights...), Method: Hash, HashKey: "$arg_user"})
		for i, want := range tt.want {
			if got := pickOnce(t, g, KeyOf([]byte(fmt.Sprintf("user-%d", i)))); got != want {
				t.Errorf("weights %v key user-%d: server %d, want %d", tt.weights, i, got, want)
			}
		}
	}
}

// TestNoKeyIsRoundRobin: a request without the key (no such cookie) is
// balanced round robin instead of all landing on one server.
func TestNoKeyIsRoundRobin(t *testing.T) {
	for _, c := range []Config{
		{Servers: literal(3), Method: Hash, HashKey: "$cookie_s"},
		{Servers: literal(3), Method: Hash, HashKey: "$cookie_s", Consistent: true},
		{Servers: literal(3), Method: IPHash},
	} {
		g := newGroup(t, c)
		n := [3]int{}
		for i := 0; i < 30; i++ {
			n[pickOnce(t, g, KeyOf(nil))]++
		}
		if n != [3]int{10, 10, 10} {
			t.Fatalf("%s consistent=%v without a key: %v", c.Method, c.Consistent, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, m := range []Method{RoundRobin, LeastConn, IPHash, Hash, "hash_consistent", Random} {
		for _, n := range []int{3, 100} {
			b.Run(fmt.Sprintf("%s/%d", m, n), func(b *testing.B) {
				g, k := benchGroup(b, m, n)
				b.ReportAllocs()
				b.ResetTimer()
				var sel Selection
				for i := 0; i < b.N; i++ {
					sel.Reset(k)
					s, err := g.Next(&sel)
					if err != nil {
						b.Fatal(err)
					}
					s.Abandoned()
				}
			})
		}
	}
}

func benchGroup(tb testing.TB, m Method, n int) (*Group, Key) {
	c := Config{Servers: literal(n), Method: m}
	for i := range c.Servers {
		c.Servers[i].Weight = 1 + i%3
	}
	if m == "hash_consistent" {
		c.Method, c.Consistent = Hash, true
	}
	if c.Method == Hash {
		c.HashKey = "$cookie_session"
	}
	k := Key{}
	switch c.Method {
	case IPHash:
		k = AddrKey(netip.MustParseAddr("198.51.100.23"))
	case Hash:
		k = KeyOf([]byte("3f2a9c1e-session"))
	}
	return newGroup(tb, c), k
}

// TestPickDoesNotAllocate guards the hot path: Next, for every method.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, m := range []Method{RoundRobin, LeastConn, IPHash, Hash, "hash_consistent", Random} {
		for _, n := range []int{3, 100} {
			g, k := benchGroup(t, m, n)
			var sel Selection
			allocs := testing.AllocsPerRun(1000, func() {
				sel.Reset(k)
				s, err := g.Next(&sel)
				if err != nil {
					t.Fatal(err)
				}
				s.Abandoned()
			})
			if allocs != 0 {
				t.Errorf("%s/%d: %v allocations per pick", m, n, allocs)
			}
		}
	}
	keys := testing.AllocsPerRun(100, func() {
		_ = KeyOf([]byte("session-id-value"))
		_ = AddrKey(netip.MustParseAddr("198.51.100.23"))
	})
	if keys != 0 {
		t.Errorf("KeyOf/AddrKey: %v allocations", keys)
	}
}
