package bench

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewSources(t *testing.T) {
	tests := []struct {
		n       int
		first   string
		last    string
		wantErr bool
	}{
		{1, "127.0.0.2", "127.0.0.2", false},
		{253, "127.0.0.2", "127.0.0.254", false},
		{254, "127.0.0.2", "127.0.1.2", false},
		{MaxSources, "127.0.0.2", "127.0.253.254", false},
		{0, "", "", true},
		{MaxSources + 1, "", "", true},
	}
	for _, tt := range tests {
		s, err := NewSources(tt.n)
		if (err != nil) != tt.wantErr {
			t.Fatalf("NewSources(%d) err = %v", tt.n, err)
		}
		if err != nil {
			continue
		}
		if s.Len() != tt.n || s.addrs[0].String() != tt.first || s.addrs[tt.n-1].String() != tt.last {
			t.Errorf("NewSources(%d): len %d, %s..%s, want %s..%s", tt.n, s.Len(), s.addrs[0], s.addrs[tt.n-1], tt.first, tt.last)
		}
		seen := map[string]bool{}
		for _, a := range s.addrs {
			if seen[a.String()] || !a.IsLoopback() {
				t.Fatalf("bad or repeated source %s", a)
			}
			seen[a.String()] = true
		}
	}
}

// TestSourcesDialFromEachAddress connects from each of several sources to a
// real listener and checks the server sees those sources, in rotation.
func TestSourcesDialFromEachAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, _ := NewSources(3)
	want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"}
	for i, w := range want {
		c, err := s.Dialer(time.Second).Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := net.SplitHostPort(sc.RemoteAddr().String())
		if host != w {
			t.Errorf("connection %d came from %s, want %s", i, host, w)
		}
		sc.Close()
		c.Close()
	}
}

// TestSourcesAt spreads connections over distinct addresses, wraps around
// and is safe to share between goroutines (run with -race).
func TestSourcesAt(t *testing.T) {
	s, err := NewSources(5)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		i    int
		want string
	}{
		{0, "127.0.0.2"}, {4, "127.0.0.6"}, {5, "127.0.0.2"}, {12, "127.0.0.4"}, {1<<62 + 2, "127.0.0.3"},
	}
	for _, tt := range tests {
		if got := s.At(tt.i).String(); got != tt.want {
			t.Errorf("At(%d) = %s, want %s", tt.i, got, tt.want)
		}
	}
	counts := make([]map[string]int, 8)
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range counts {
		counts[g] = map[string]int{}
		wg.Go(func() {
			for range 1000 {
				counts[g][s.At(int(next.Add(1)-1)).String()]++
			}
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, c := range counts {
		for a, n := range c {
			total[a] += n
		}
	}
	if len(total) != 5 {
		t.Fatalf("%d distinct sources used, want 5", len(total))
	}
	for a, n := range total {
		if n != 8000/5 {
			t.Errorf("%s used %d times, want %d (an even spread)", a, n, 8000/5)
		}
	}
}
