// Package upstream holds server groups and chooses which server a new tunnel
// goes to. It knows addresses and counters, not HTTP and not the event loops.
//
// This is the first cut: one balancing method (round robin) and bounded
// next-server retries. Weights, stickiness, health and re-resolution come
// later behind the same Group.Pick / Group.Next contract.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Server is one upstream address and its counters. Counters are atomics so
// every event loop can update them without a lock.
type Server struct {
	// Name is the address as configured ("backend:9000" or "127.0.0.1:9000").
	Name string
	// Addr is the resolved address the proxy dials.
	Addr netip.AddrPort

	live       atomic.Int64
	handshakes atomic.Int64
	failures   atomic.Int64
}

// Live is the number of tunnels currently open to this server.
func (s *Server) Live() int64 { return s.live.Load() }

// Handshakes is the number of tunnels this server has ever accepted.
func (s *Server) Handshakes() int64 { return s.handshakes.Load() }

// Failures is the number of connect attempts or upgrade answers that failed.
func (s *Server) Failures() int64 { return s.failures.Load() }

// Opened records a verified tunnel to s.
func (s *Server) Opened() {
	s.live.Add(1)
	s.handshakes.Add(1)
}

// Closed records the end of a tunnel that Opened counted.
func (s *Server) Closed() { s.live.Add(-1) }

// Failed records a failed connect or an invalid upgrade answer.
func (s *Server) Failed() { s.failures.Add(1) }

// Group is a set of servers balanced round robin. It is safe for concurrent
// use; Pick costs one atomic add and allocates nothing.
type Group struct {
	// Name is the group's name in the config ("chat"), or the address list
	// for an anonymous group written inline in proxy_pass.
	Name    string
	servers []*Server
	next    atomic.Uint32
	tries   int
}

// ErrNoServers is returned by NewGroup for an empty server list.
var ErrNoServers = errors.New("upstream group has no servers")

// NewGroup builds a group. maxTries bounds how many servers one handshake
// may try before the client gets a 502; 0 or more than the number of
// servers means each server once, as nginx's proxy_next_upstream_tries 0.
func NewGroup(name string, servers []*Server, maxTries int) (*Group, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("upstream %q: %w", name, ErrNoServers)
	}
	if maxTries <= 0 || maxTries > len(servers) {
		maxTries = len(servers)
	}
	return &Group{Name: name, servers: servers, tries: maxTries}, nil
}

// Servers returns the group's servers in configuration order. The slice is
// shared: do not modify it.
func (g *Group) Servers() []*Server { return g.servers }

// Tries is how many servers one handshake may try.
func (g *Group) Tries() int { return g.tries }

// Pick starts a selection and returns its first server and a cursor for
// Next. Successive Picks rotate through the servers.
func (g *Group) Pick() (first *Server, cursor uint32) {
	c := g.next.Add(1) - 1
	return g.servers[c%uint32(len(g.servers))], c
}

// Next returns the server for retry number attempt (1-based) of the
// selection that Pick began with cursor, or nil once the group's tries are
// spent. Retries walk on from the first choice so that a refused server is
// not tried twice by one handshake.
func (g *Group) Next(cursor uint32, attempt int) *Server {
	if attempt >= g.tries {
		return nil
	}
	return g.servers[(cursor+uint32(attempt))%uint32(len(g.servers))]
}

// Resolve turns a configured "host:port" into a Server. A literal IP needs
// no lookup; a hostname is resolved once, now, to its first address (name
// re-resolution comes with health checks). The timeout bounds the lookup.
func Resolve(hostport string, timeout time.Duration) (*Server, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return &Server{Name: hostport, Addr: ap}, nil
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("upstream server %q: %w", hostport, err)
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil {
		return nil, fmt.Errorf("upstream server %q: port: %w", hostport, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("upstream server %q: resolve: %w", hostport, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("upstream server %q: resolve: no addresses", hostport)
	}
	// Prefer IPv4: loopback backends usually listen on 127.0.0.1 only.
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return &Server{Name: hostport, Addr: netip.AddrPortFrom(best.Unmap(), uint16(port))}, nil
}
