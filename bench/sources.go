// Source addresses for client connections: see "Source addresses" in the
// package documentation (doc.go).

package bench

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Sources hands out loopback source addresses round robin.
type Sources struct {
	addrs []netip.Addr
	next  int
}

// MaxSources bounds NewSources: 127.0.0.2 .. 127.0.253.254 (253 per third
// octet, 254 third octets) stays inside
// 127.0.0.0/8 and clear of 127.0.0.1, which servers under test listen on.
const MaxSources = 254 * 253

// NewSources returns n source addresses starting at 127.0.0.2, skipping
// .0, .1 and .255 in the last octet.
func NewSources(n int) (*Sources, error) {
	if n < 1 || n > MaxSources {
		return nil, fmt.Errorf("bench: %d source addresses: want 1..%d", n, MaxSources)
	}
	s := &Sources{addrs: make([]netip.Addr, 0, n)}
	for third := 0; len(s.addrs) < n; third++ {
		for last := 2; last <= 254 && len(s.addrs) < n; last++ {
			s.addrs = append(s.addrs, netip.AddrFrom4([4]byte{127, 0, byte(third), byte(last)}))
		}
	}
	return s, nil
}

// Len is the number of addresses.
func (s *Sources) Len() int { return len(s.addrs) }

// Next returns the next source address. Not safe for concurrent use: give
// each load goroutine its own Sources.
func (s *Sources) Next() netip.Addr {
	a := s.addrs[s.next]
	s.next = (s.next + 1) % len(s.addrs)
	return a
}

// At returns address i modulo Len. Unlike Next it is safe for concurrent
// use: goroutines that share one Sources spread over it with a shared
// atomic counter.
func (s *Sources) At(i int) netip.Addr {
	return s.addrs[uint(i)%uint(len(s.addrs))]
}

// Dialer returns a net.Dialer bound to the next source address.
func (s *Sources) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.Next(), 0)), Timeout: timeout}
}
