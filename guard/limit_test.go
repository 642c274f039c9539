package guard

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestConnLimiter(t *testing.T) {
	l := NewConnLimiter(10)
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	for i := 0; i < 10; i++ {
		if !l.Acquire(a) {
			t.Fatalf("slot %d refused", i+1)
		}
	}
	if l.Acquire(a) {
		t.Fatal("11th slot granted")
	}
	if l.Acquire(netip.MustParseAddr("::ffff:127.0.0.2")) {
		t.Fatal("a v4-mapped spelling got an extra slot")
	}
	if !l.Acquire(b) {
		t.Fatal("another address refused")
	}
	l.Release(a)
	if !l.Acquire(a) {
		t.Fatal("freed slot not reusable")
	}
	for i := 0; i < 10; i++ {
		l.Release(a)
	}
	l.Release(b)
	l.Release(b) // extra: ignored, never negative
	if l.Total() != 0 || l.Count(a) != 0 {
		t.Fatalf("leak: total %d", l.Total())
	}
	if !NewConnLimiter(0).Acquire(a) {
		t.Fatal("limit 0 must admit")
	}
}

func TestConnLimiterConcurrentNoLeak(t *testing.T) {
	l := NewConnLimiter(3)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(g % 2)})
			for i := 0; i < 2000; i++ {
				if l.Acquire(a) {
					if c := l.Count(a); c > 3 {
						t.Errorf("count %d over limit", c)
					}
					l.Release(a)
				}
			}
		}(g)
	}
	wg.Wait()
	if l.Total() != 0 {
		t.Fatalf("leak: %d", l.Total())
	}
}

func TestRateLimiterNginxBurst(t *testing.T) {
	r, err := ParseRate("10r/s")
	if err != nil {
		t.Fatal(err)
	}
	l := NewRateLimiter(r, 5)
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	now := time.Unix(1000, 0)
	for i := 0; i < 6; i++ { // burst=5 nodelay: 1 + 5 at once, as nginx
		if ok, _ := l.Allow(a, now); !ok {
			t.Fatalf("event %d refused", i+1)
		}
	}
	ok, retry := l.Allow(a, now)
	if ok || retry != time.Second {
		t.Fatalf("7th: ok=%v retry=%v, want refused with 1s", ok, retry)
	}
	if ok, _ := l.Allow(b, now); !ok {
		t.Fatal("another key refused")
	}
	if ok, _ := l.Allow(a, now.Add(99*time.Millisecond)); ok {
		t.Fatal("admitted before one interval drained")
	}
	if ok, _ := l.Allow(a, now.Add(100*time.Millisecond)); !ok {
		t.Fatal("refused after one interval")
	}
	// Idle keys are forgotten.
	l.Sweep(now.Add(10 * time.Second))
	if n := l.Keys(); n != 0 {
		t.Fatalf("%d keys after sweep", n)
	}
}

func TestRateLimiterRetryAfterRoundsUp(t *testing.T) {
	r, _ := ParseRate("30r/m") // one per 2s
	l := NewRateLimiter(r, 0)
	a := netip.MustParseAddr("2001:db8::1")
	now := time.Unix(1000, 0)
	l.Allow(a, now)
	if ok, retry := l.Allow(a, now.Add(100*time.Millisecond)); ok || retry != 2*time.Second {
		t.Fatalf("ok=%v retry=%v, want 2s", ok, retry)
	}
}

func TestRateLimiterBoundedMemory(t *testing.T) {
	r, _ := ParseRate("100r/s")
	l := NewRateLimiter(r, 0)
	now := time.Unix(1000, 0)
	for i := 0; i < 200000; i++ {
		// Each key once, 1 ms apart: every key drained 10 ms later.
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(a, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := l.Keys(); n > 2*1024*rateShards {
		t.Fatalf("%d keys held: not bounded", n)
	}
}

func TestParseRate(t *testing.T) {
	for _, s := range []string{"10", "10r/h", "0r/s", "-1r/s", "r/s", "1.5r/s"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if r, _ := ParseRate("30r/m"); r.PerSecond != 0.5 {
		t.Errorf("30r/m = %v", r.PerSecond)
	}
}

func TestRealIP(t *testing.T) {
	r, err := NewRealIP([]string{"10.0.0.0/8", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	h := func(v ...string) [][]byte {
		var out [][]byte
		for _, s := range v {
			out = append(out, []byte(s))
		}
		return out
	}
	tests := []struct {
		name, peer string
		xff        [][]byte
		want       string
	}{
		{"untrusted peer: header ignored", "203.0.113.9", h("1.2.3.4"), "203.0.113.9"},
		{"trusted peer, one hop", "127.0.0.1", h("198.51.100.7"), "198.51.100.7"},
		{"forged left part ignored", "127.0.0.1", h("6.6.6.6, 198.51.100.7"), "198.51.100.7"},
		{"trusted hops skipped", "127.0.0.1", h("6.6.6.6, 198.51.100.7, 10.1.1.1"), "198.51.100.7"},
		{"several headers", "10.0.0.5", h("6.6.6.6", "198.51.100.7, 10.2.2.2"), "198.51.100.7"},
		{"all trusted: leftmost", "127.0.0.1", h("10.9.9.9, 10.1.1.1"), "10.9.9.9"},
		{"garbage stops at last good", "127.0.0.1", h("6.6.6.6, garbage, 10.1.1.1"), "10.1.1.1"},
		{"no header", "127.0.0.1", nil, "127.0.0.1"},
		{"mapped peer", "::ffff:127.0.0.1", h("198.51.100.7"), "198.51.100.7"},
		{"v6 client", "127.0.0.1", h("2001:db8::7"), "2001:db8::7"},
		{"empty items", "127.0.0.1", h(" , ,198.51.100.7, "), "198.51.100.7"},
	}
	for _, tt := range tests {
		got := r.FromForwarded(netip.MustParseAddr(tt.peer), tt.xff)
		if got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	none, _ := NewRealIP(nil)
	if got := none.FromForwarded(netip.MustParseAddr("127.0.0.1"), h("1.2.3.4")); got.String() != "127.0.0.1" {
		t.Errorf("no trusted set: got %s", got)
	}
}
