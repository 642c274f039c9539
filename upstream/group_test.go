package upstream

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func servers(t *testing.T, addrs ...string) []*Server {
	t.Helper()
	var out []*Server
	for _, a := range addrs {
		s, err := Resolve(a, time.Second)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", a, err)
		}
		out = append(out, s)
	}
	return out
}

func TestRoundRobinRotates(t *testing.T) {
	g, err := NewGroup("g", servers(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), 0)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := 0; i < 300; i++ {
		s, _ := g.Pick()
		counts[s.Name]++
	}
	for _, n := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} {
		if counts[n] != 100 {
			t.Errorf("%s picked %d times, want 100 (%v)", n, counts[n], counts)
		}
	}
}

func TestNextWalksEachServerOnce(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		maxTries int
		want     int // servers a selection may visit
	}{
		{"all once", 3, 0, 3},
		{"bounded", 3, 2, 2},
		{"over", 3, 9, 3},
		{"single", 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for i := 0; i < tt.n; i++ {
				addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i)).String())
			}
			g, err := NewGroup("g", servers(t, addrs...), tt.maxTries)
			if err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 5; round++ {
				first, cur := g.Pick()
				seen := map[*Server]bool{first: true}
				visited := 1
				for a := 1; ; a++ {
					s := g.Next(cur, a)
					if s == nil {
						break
					}
					if seen[s] {
						t.Fatalf("server %s visited twice", s.Name)
					}
					seen[s] = true
					visited++
				}
				if visited != tt.want {
					t.Fatalf("visited %d servers, want %d", visited, tt.want)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"127.0.0.1:9000", "127.0.0.1:9000", false},
		{"[::1]:80", "[::1]:80", false},
		{"localhost:9000", "127.0.0.1:9000", false},
		{"127.0.0.1", "", true},
		{"127.0.0.1:notaport", "", true},
		{"no-such-host.invalid:80", "", true},
	}
	for _, tt := range tests {
		s, err := Resolve(tt.in, 2*time.Second)
		if (err != nil) != tt.err {
			t.Errorf("Resolve(%q) err = %v, want err %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && s.Addr.String() != tt.want {
			t.Errorf("Resolve(%q) = %s, want %s", tt.in, s.Addr, tt.want)
		}
	}
}

func TestEmptyGroup(t *testing.T) {
	if _, err := NewGroup("g", nil, 0); !errors.Is(err, ErrNoServers) {
		t.Fatalf("err = %v, want ErrNoServers", err)
	}
}

func TestCounters(t *testing.T) {
	s := servers(t, "127.0.0.1:1")[0]
	s.Opened()
	s.Opened()
	s.Closed()
	s.Failed()
	if s.Live() != 1 || s.Handshakes() != 2 || s.Failures() != 1 {
		t.Fatalf("live %d handshakes %d failures %d", s.Live(), s.Handshakes(), s.Failures())
	}
}

func BenchmarkPick(b *testing.B) {
	var list []*Server
	for i := 0; i < 3; i++ {
		list = append(list, &Server{Name: "s", Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(i+1))})
	}
	g, _ := NewGroup("g", list, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, c := g.Pick()
			if s == nil || g.Next(c, 1) == nil {
				b.Fatal("nil server")
			}
		}
	})
}
