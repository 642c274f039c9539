package upstream

import (
	"fmt"
	"hash/crc32"
	"testing"
)

func TestParseHashKey(t *testing.T) {
	tests := []struct {
		in   string
		want KeySource
		err  bool
	}{
		{"$remote_addr", KeySource{Kind: KeyRemoteAddr}, false},
		{"$uri", KeySource{Kind: KeyURI}, false},
		{"$http_x_user_id", KeySource{Kind: KeyHeader, Name: "x-user-id"}, false},
		{"$http_Authorization", KeySource{Kind: KeyHeader, Name: "authorization"}, false},
		{"$cookie_session", KeySource{Kind: KeyCookie, Name: "session"}, false},
		{"$arg_room", KeySource{Kind: KeyArg, Name: "room"}, false},
		{"$host", KeySource{}, true},
		{"$cookie_", KeySource{}, true},
		{"$arg_a b", KeySource{}, true},
		{"$remote_addr$uri", KeySource{}, true},
		{"session", KeySource{}, true},
	}
	for _, tt := range tests {
		got, err := ParseHashKey(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseHashKey(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestRehashCRC: the combined crc of "N"+key equals crc32 of the bytes.
func TestRehashCRC(t *testing.T) {
	for _, key := range []string{"user-3", "x", "a much longer session identifier, 64 bytes or so, to be safe!!"} {
		k := KeyOf([]byte(key))
		for _, n := range []uint32{0, 1, 7, 12, 20, 123456} {
			prefix := ""
			if n > 0 {
				prefix = fmt.Sprint(n)
			}
			if got, want := k.rehashCRC(n), crc32.ChecksumIEEE([]byte(prefix+key)); got != want {
				t.Errorf("rehash %d of %q: %08x, want %08x", n, key, got, want)
			}
		}
	}
	// Independent values (Python's zlib.crc32).
	k := KeyOf([]byte("user-3"))
	if k.rehashCRC(7) != 3510813241 || k.rehashCRC(12) != 844349034 {
		t.Fatalf("rehash crcs %d %d", k.rehashCRC(7), k.rehashCRC(12))
	}
}

func consistentGroup(t testing.TB, addrs []string, weights ...int) *Group {
	t.Helper()
	c := Config{Method: Hash, HashKey: "$cookie_session", Consistent: true}
	for i, a := range addrs {
		sc := ServerConfig{Address: a}
		if i < len(weights) {
			sc.Weight = weights[i]
		}
		c.Servers = append(c.Servers, sc)
	}
	return newGroup(t, c)
}

// TestConsistentMatchesNginx: the ring is nginx's (Cache::Memcached::Fast
// points, 160 per weight), so a key lands where nginx with the same
// servers would send it. Expected values: a Python transcription of
// ngx_http_upstream_update_chash and get_chash_peer (zlib.crc32). Being
// constants, they also pin the ring across processes and restarts: no
// per-process seed can hide here.
func TestConsistentMatchesNginx(t *testing.T) {
	addrs := []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{1, 1, 1}, []int{0, 1, 2, 2, 2, 0, 1, 0, 1, 2, 2, 0}},
		{[]int{1, 2, 1}, []int{1, 1, 2, 2, 2, 0, 1, 0, 1, 1, 1, 0}},
	}
	for _, tt := range tests {
		g := consistentGroup(t, addrs, tt.weights...)
		for i, want := range tt.want {
			if got := pickOnce(t, g, KeyOf([]byte(fmt.Sprintf("user-%d", i)))); got != want {
				t.Errorf("weights %v key user-%d: server %d, want %d", tt.weights, i, got, want)
			}
		}
	}
}

// TestConsistentMoves: adding a fifth server to four, or removing one of
// five, moves about 1/N of 10,000 keys, within [0.5/N, 1.5/N], and only
// keys of the server removed (or to the server added) move.
func TestConsistentMoves(t *testing.T) {
	five := []string{"10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80", "10.1.0.5:80"}
	mapping := func(addrs []string) []string {
		g := consistentGroup(t, addrs)
		out := make([]string, 10000)
		for i := range out {
			var sel Selection
			sel.Reset(KeyOf([]byte(fmt.Sprintf("k%d", i))))
			s, err := g.Next(&sel)
			if err != nil {
				t.Fatal(err)
			}
			s.Abandoned()
			out[i] = s.Name
		}
		return out
	}
	m4, m5 := mapping(five[:4]), mapping(five)
	added := 0
	for i := range m4 {
		if m4[i] != m5[i] {
			added++
			if m5[i] != five[4] {
				t.Fatalf("key %d moved from %s to %s, not to the new server", i, m4[i], m5[i])
			}
		}
	}
	removedAddrs := []string{five[0], five[2], five[3], five[4]} // five without its second
	mr := mapping(removedAddrs)
	removed := 0
	for i := range m5 {
		if m5[i] != mr[i] {
			removed++
			if m5[i] != five[1] {
				t.Fatalf("key %d moved from %s, which stayed", i, m5[i])
			}
		}
	}
	t.Logf("4→5 moved %d of 10000 (1/5 = 2000); 5→4 moved %d (1/5 = 2000)", added, removed)
	for _, c := range []struct {
		name  string
		moved int
		n     int
	}{{"4→5", added, 5}, {"5→4", removed, 5}} {
		lo, hi := 10000*0.5/float64(c.n), 10000*1.5/float64(c.n)
		if float64(c.moved) < lo || float64(c.moved) > hi {
			t.Errorf("%s moved %d keys, want within [%.0f, %.0f]", c.name, c.moved, lo, hi)
		}
	}
	// The same servers in another order map every key the same way.
	shuffled := mapping([]string{five[3], five[0], five[4], five[2], five[1]})
	for i := range m5 {
		if shuffled[i] != m5[i] {
			t.Fatalf("key %d: %s with the servers reordered, %s before", i, shuffled[i], m5[i])
		}
	}
}

// TestConsistentSkipsUnavailable: a key whose server is out walks on to
// the next server on the ring; other keys do not move.
func TestConsistentSkipsUnavailable(t *testing.T) {
	g := consistentGroup(t, []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"})
	before := make([]int, 300)
	for i := range before {
		before[i] = pickOnce(t, g, KeyOf([]byte(fmt.Sprint(i))))
	}
	g.Servers()[0].unhealthy.Store(true)
	for i := range before {
		got := pickOnce(t, g, KeyOf([]byte(fmt.Sprint(i))))
		if got == 0 || (before[i] != 0 && got != before[i]) {
			t.Fatalf("key %d: server %d, before %d", i, got, before[i])
		}
	}
}

func TestRingCapped(t *testing.T) {
	servers := make([]*Server, 3)
	for i := range servers {
		servers[i] = &Server{weight: 5000, id: fmt.Sprintf("10.0.0.%d:80", i)}
	}
	r := newRing(servers)
	if len(r.hash) > maxRingPoints || len(r.hash) < maxRingPoints/2 {
		t.Fatalf("%d points", len(r.hash))
	}
}
