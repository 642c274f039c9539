package guard

import (
	"net/netip"
	"testing"
	"time"
)

// The rules run once per handshake in an event loop, never per relayed
// chunk; these keep their cost visible (go test -bench . -benchmem).

func BenchmarkOriginAllow(b *testing.B) {
	p, _ := NewOriginPolicy([]string{"https://example.com", "https://*.example.org"}, true, false)
	o, h := []byte("https://chat.example.org"), []byte("example.com")
	b.ReportAllocs()
	for b.Loop() {
		p.Allow(o, true, h)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	r, _ := ParseRate("1000000r/s")
	l := NewRateLimiter(r, 100)
	a := netip.MustParseAddr("203.0.113.7")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(a, now)
	}
}

func BenchmarkConnLimiterAcquireRelease(b *testing.B) {
	l := NewConnLimiter(10)
	a := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		l.Acquire(a)
		l.Release(a)
	}
}

func BenchmarkCIDRListAllowed(b *testing.B) {
	l, _ := NewAllowDeny([]string{"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"}, []string{"10.0.0.66", "all"})
	a := netip.MustParseAddr("192.168.7.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Allowed(a)
	}
}
