package upstream

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// literal returns n server configs on 127.0.0.1, ports 1001, 1002, ...
// with the given weights (missing weights are 1).
func literal(n int, weights ...int) []ServerConfig {
	out := make([]ServerConfig, n)
	for i := range out {
		out[i].Address = fmt.Sprintf("127.0.0.1:%d", 1001+i)
		out[i].MaxFails = DefaultMaxFails
		if i < len(weights) {
			out[i].Weight = weights[i]
		}
	}
	return out
}

func newGroup(t testing.TB, c Config) *Group {
	t.Helper()
	if c.Name == "" {
		c.Name = "g"
	}
	g, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// index returns the position of s in g's server list.
func index(g *Group, s *Server) int {
	for i, x := range g.Servers() {
		if x == s {
			return i
		}
	}
	return -1
}

// pickOnce runs one selection to its first server and ends the attempt as
// a handshake that got a non-101 answer would: the slot is freed.
func pickOnce(t testing.TB, g *Group, k Key) int {
	t.Helper()
	var sel Selection
	sel.Reset(k)
	s, err := g.Next(&sel)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	s.Answered()
	return index(g, s)
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no servers", Config{}, "no servers"},
		{"unknown method", Config{Servers: literal(2), Method: "fastest"}, `unknown method "fastest"`},
		{"hash without key", Config{Servers: literal(2), Method: Hash}, "hash key"},
		{"bad key", Config{Servers: literal(2), Method: Hash, HashKey: "$host"}, "want $remote_addr"},
		{"key without hash", Config{Servers: literal(2), HashKey: "$uri"}, "need method"},
		{"backup with ip_hash", Config{Servers: append(literal(1), ServerConfig{Address: "127.0.0.1:9", Backup: true}), Method: IPHash}, "backup cannot be used"},
		{"only backups", Config{Servers: []ServerConfig{{Address: "127.0.0.1:9", Backup: true}}}, "every server is a backup"},
		{"bad name", Config{Servers: []ServerConfig{{Address: "no-such-host.invalid:80"}}}, "resolve"},
		{"no port", Config{Servers: []ServerConfig{{Address: "127.0.0.1"}}}, "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Options{ResolveTimeout: 2 * time.Second})
			if err == nil || !contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{}, Options{}); !errors.Is(err, ErrNoServers) {
		t.Fatalf("err = %v, want ErrNoServers", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(1)})
	s := g.Servers()[0]
	if s.Weight() != 1 || s.maxFails != 1 || s.failTimeout != int64(10*time.Second) || s.MaxConns() != 0 {
		t.Fatalf("defaults: weight %d max_fails %d fail_timeout %d max_conns %d", s.Weight(), s.maxFails, s.failTimeout, s.MaxConns())
	}
	if g.Method() != RoundRobin || s.State() != StateUp || s.State().String() != "up" {
		t.Fatalf("method %q state %v", g.Method(), s.State())
	}
}

// TestNextTriesEachServerOnce: whatever the method, retries never return
// a server twice, and stop at max_tries or when every server was tried.
func TestNextTriesEachServerOnce(t *testing.T) {
	for _, m := range []Method{RoundRobin, LeastConn, IPHash, Hash, Random} {
		for _, tc := range []struct{ n, maxTries, want int }{{3, 0, 3}, {3, 2, 2}, {3, 9, 3}, {1, 0, 1}, {100, 0, 100}} {
			t.Run(fmt.Sprintf("%s/%d/%d", m, tc.n, tc.maxTries), func(t *testing.T) {
				c := Config{Servers: literal(tc.n, 2, 1, 3), Method: m, MaxTries: tc.maxTries}
				if m == Hash {
					c.HashKey = "$arg_user"
				}
				g := newGroup(t, c)
				for round := 0; round < 5; round++ {
					var sel Selection
					sel.Reset(keyFor(m, round))
					seen := map[*Server]bool{}
					for {
						s, err := g.Next(&sel)
						if err != nil {
							if len(seen) < tc.want && !errors.Is(err, ErrTriesSpent) {
								t.Fatalf("after %d servers: %v", len(seen), err)
							}
							break
						}
						if seen[s] {
							t.Fatalf("server %s returned twice", s.Addr)
						}
						seen[s] = true
						s.Failed()
					}
					if len(seen) != tc.want || sel.Attempts() != tc.want {
						t.Fatalf("visited %d servers (%d attempts), want %d", len(seen), sel.Attempts(), tc.want)
					}
					for s := range seen {
						s.fails.Store(0)
					}
				}
				for _, s := range g.Servers() {
					if s.Conns() != 0 {
						t.Fatalf("%s holds %d slots after every attempt ended", s.Addr, s.Conns())
					}
				}
			})
		}
	}
}

func keyFor(m Method, i int) Key {
	switch m {
	case IPHash:
		return AddrKey(netip.AddrFrom4([4]byte{10, byte(i), 7, 1}))
	case Hash:
		return KeyOf([]byte(fmt.Sprintf("user-%d", i)))
	}
	return Key{}
}

func TestNextUpstreamTimeout(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(3), NextUpstreamTimeout: 50 * time.Millisecond})
	var sel Selection
	s, err := g.Next(&sel)
	if err != nil {
		t.Fatal(err)
	}
	s.Abandoned()
	s, err = g.Next(&sel) // within the time: a retry
	if err != nil {
		t.Fatal(err)
	}
	s.Abandoned()
	sel.start -= int64(time.Second) // as if the first try was a second ago
	if s, err := g.Next(&sel); !errors.Is(err, ErrNextTimeout) || s != nil {
		t.Fatalf("after the timeout: %v, %v; want ErrNextTimeout", s, err)
	}
}

func TestBackupAndDown(t *testing.T) {
	servers := []ServerConfig{
		{Address: "127.0.0.1:1001", MaxFails: 1},
		{Address: "127.0.0.1:1002", MaxFails: 1, Down: true},
		{Address: "127.0.0.1:1003", MaxFails: 1, Backup: true},
	}
	g := newGroup(t, Config{Servers: servers})
	byAddr := map[string]*Server{}
	for _, s := range g.Servers() {
		byAddr[s.Addr.String()] = s
	}
	primary, down, backup := byAddr["127.0.0.1:1001"], byAddr["127.0.0.1:1002"], byAddr["127.0.0.1:1003"]
	if down.State() != StateDown || !backup.Backup() {
		t.Fatalf("down %v backup %v", down.State(), backup.Backup())
	}
	for i := 0; i < 10; i++ {
		if got := g.Servers()[pickOnce(t, g, Key{})]; got != primary {
			t.Fatalf("pick %d went to %s while the primary is up", i, got.Addr)
		}
	}
	primary.unhealthy.Store(true)
	for i := 0; i < 10; i++ {
		if got := g.Servers()[pickOnce(t, g, Key{})]; got != backup {
			t.Fatalf("pick %d went to %s, want the backup", i, got.Addr)
		}
	}
	// A retry after the primary failed goes to the backup too.
	primary.unhealthy.Store(false)
	var sel Selection
	s, _ := g.Next(&sel)
	s.Abandoned()
	if s, err := g.Next(&sel); err != nil || s != backup {
		t.Fatalf("retry: %v %v, want the backup", s, err)
	}
	backup.unhealthy.Store(true)
	primary.unhealthy.Store(true)
	if _, err := g.Next(new(Selection)); !errors.Is(err, ErrNoLiveUpstreams) {
		t.Fatalf("all unhealthy: %v, want ErrNoLiveUpstreams", err)
	}
}

// TestPassiveHealth follows nginx's max_fails/fail_timeout: max_fails
// failures make a server unavailable for fail_timeout; then one trial;
// a success after it clears the count.
func TestPassiveHealth(t *testing.T) {
	servers := literal(2)
	servers[0].MaxFails, servers[0].FailTimeout = 2, 80*time.Millisecond
	g := newGroup(t, Config{Servers: servers})
	a, b := g.Servers()[0], g.Servers()[1]

	a.conns.Add(2) // two attempts that then fail
	a.Failed()
	if a.State() != StateUp {
		t.Fatalf("one failure of max_fails=2: state %v", a.State())
	}
	a.Failed()
	if a.State() != StateFailed {
		t.Fatalf("two failures: state %v, want failed", a.State())
	}
	for i := 0; i < 20; i++ {
		if g.Servers()[pickOnce(t, g, Key{})] != b {
			t.Fatal("a failed server got a tunnel within fail_timeout")
		}
	}
	time.Sleep(100 * time.Millisecond)
	// After fail_timeout: exactly one trial, whoever asks first.
	var got []*Server
	var sels [4]Selection
	for i := range sels {
		s, err := g.Next(&sels[i])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	trials := 0
	for _, s := range got {
		if s == a {
			trials++
		}
	}
	if trials != 1 {
		t.Fatalf("%d trials after fail_timeout, want 1", trials)
	}
	for _, s := range got {
		if s == a {
			s.Opened() // the trial succeeds
			s.Closed()
		} else {
			s.Answered()
		}
	}
	if a.fails.Load() != 0 || a.State() != StateUp {
		t.Fatalf("after a successful trial: fails %d state %v", a.fails.Load(), a.State())
	}
}

// TestAllFailedRevives: when every server failed (passive), nginx marks
// them all live again rather than refusing; active-check failures are not
// revived.
func TestAllFailedRevives(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(2)})
	for _, s := range g.Servers() {
		s.conns.Add(1)
		s.Failed()
		if s.State() != StateFailed {
			t.Fatalf("state %v", s.State())
		}
	}
	pickOnce(t, g, Key{})
	for _, s := range g.Servers() {
		if s.State() != StateUp {
			t.Fatalf("after the revival: state %v", s.State())
		}
		s.unhealthy.Store(true)
	}
	if _, err := g.Next(new(Selection)); !errors.Is(err, ErrNoLiveUpstreams) {
		t.Fatalf("all unhealthy: %v, want ErrNoLiveUpstreams", err)
	}
}

func TestMaxFailsZeroDisables(t *testing.T) {
	servers := literal(2)
	servers[0].MaxFails = 0
	g := newGroup(t, Config{Servers: servers})
	for _, s := range g.Servers() {
		s.conns.Add(3)
		s.Failed()
		s.Failed()
		s.Failed()
	}
	if g.Servers()[0].State() != StateUp || g.Servers()[1].State() != StateFailed {
		t.Fatalf("states %v %v", g.Servers()[0].State(), g.Servers()[1].State())
	}
}

func TestMaxConns(t *testing.T) {
	servers := literal(2)
	servers[0].MaxConns, servers[1].MaxConns = 2, 1
	g := newGroup(t, Config{Servers: servers, Method: LeastConn})
	var held []*Server
	for i := 0; i < 3; i++ {
		s, err := g.Next(new(Selection))
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		s.Opened()
		held = append(held, s)
	}
	if _, err := g.Next(new(Selection)); !errors.Is(err, ErrAllFull) {
		t.Fatalf("every server full: %v, want ErrAllFull", err)
	}
	if g.Servers()[0].State() != StateFull || g.Servers()[1].State() != StateFull {
		t.Fatalf("states %v %v", g.Servers()[0].State(), g.Servers()[1].State())
	}
	held[0].Closed()
	s, err := g.Next(new(Selection))
	if err != nil || s != held[0] {
		t.Fatalf("after one closed: %v %v", s, err)
	}
	s.Abandoned()
	for _, s := range held[1:] {
		s.Closed()
	}
	for _, s := range g.Servers() {
		if s.Conns() != 0 || s.Live() != 0 {
			t.Fatalf("%s: conns %d live %d after every tunnel closed", s.Addr, s.Conns(), s.Live())
		}
	}
}

// TestMaxConnsExactUnderRace: many goroutines picking at once never put
// more than max_conns on a server.
func TestMaxConnsExactUnderRace(t *testing.T) {
	servers := literal(3)
	for i := range servers {
		servers[i].MaxConns = 5
	}
	g := newGroup(t, Config{Servers: servers, Method: Random})
	done := make(chan int)
	for w := 0; w < 8; w++ {
		go func() {
			n := 0
			for i := 0; i < 10; i++ {
				if s, err := g.Next(new(Selection)); err == nil {
					s.Opened()
					n++
				}
			}
			done <- n
		}()
	}
	total := 0
	for w := 0; w < 8; w++ {
		total += <-done
	}
	if total != 15 {
		t.Fatalf("%d tunnels opened, want exactly 3×max_conns = 15", total)
	}
	for _, s := range g.Servers() {
		if s.Conns() != 5 {
			t.Fatalf("%s holds %d, want 5", s.Addr, s.Conns())
		}
	}
}

func TestCounters(t *testing.T) {
	g := newGroup(t, Config{Servers: literal(1)})
	s := g.Servers()[0]
	s.conns.Add(3)
	s.Opened()
	s.Opened()
	s.Closed()
	s.Failed()
	if s.Live() != 1 || s.Handshakes() != 2 || s.Failures() != 1 || s.Conns() != 1 {
		t.Fatalf("live %d handshakes %d failures %d conns %d", s.Live(), s.Handshakes(), s.Failures(), s.Conns())
	}
}
