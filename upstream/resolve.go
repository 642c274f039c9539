package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// defaultResolveTimeout bounds one round of lookups when Options says
// nothing.
const defaultResolveTimeout = 5 * time.Second

// isLiteral reports whether a "host:port" needs no lookup.
func isLiteral(hostport string) bool {
	_, err := netip.ParseAddrPort(hostport)
	return err == nil
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server address %q: %w", s, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// lookup returns the addresses to dial for a configured "host:port": the
// literal itself, or every address the name resolves to, as "ip:port".
//
// A name with both A and AAAA records uses its A records only: the usual
// case is "localhost", and a backend listening on 127.0.0.1 would
// otherwise see every other tunnel fail on ::1. The list is sorted, so
// every sluice instance builds the same server order (which the hashing
// methods depend on) whatever order the DNS server answered in.
func (g *Group) lookup(ctx context.Context, hostport string) ([]string, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return []string{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()}, nil
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("server %q: invalid port", hostport)
	}
	r := g.opts.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("server %q: resolve: %w", hostport, err)
	}
	var v4, v6 []netip.Addr
	for _, ip := range ips {
		if ip = ip.Unmap(); ip.Is4() {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	use := v4
	if len(use) == 0 {
		use = v6
	}
	if len(use) == 0 {
		return nil, fmt.Errorf("server %q: resolve: %w", hostport, errNoAddresses)
	}
	slices.SortFunc(use, netip.Addr.Compare)
	use = slices.Compact(use)
	out := make([]string, len(use))
	for i, ip := range use {
		out[i] = netip.AddrPortFrom(ip, uint16(port)).String()
	}
	return out, nil
}

var errNoAddresses = errors.New("no addresses")

// resolveLoop looks the names up again every ResolveEvery (nginx's
// "server NAME resolve" with the resolver's valid= time) and publishes a
// new snapshot when an answer changed. New tunnels use the new addresses
// at once; tunnels already open stay where they are; a server whose
// address stays keeps its counters and health. A failed lookup keeps the
// previous addresses (a DNS outage must not empty the group).
func (g *Group) resolveLoop(ctx context.Context) {
	defer g.wg.Done()
	tick := time.NewTicker(g.cfg.ResolveEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.reresolve(ctx)
		}
	}
}

// reresolve runs one round of lookups.
func (g *Group) reresolve(parent context.Context) {
	timeout := g.opts.ResolveTimeout
	if timeout <= 0 {
		timeout = defaultResolveTimeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	old := g.snap.Load()
	addrs := make([][]string, len(old.addrs))
	changed := false
	for i, s := range g.cfg.Servers {
		addrs[i] = old.addrs[i]
		if isLiteral(s.Address) {
			continue
		}
		list, err := g.lookup(ctx, s.Address)
		if parent.Err() != nil {
			return // stopping: the answer does not matter any more
		}
		if err != nil {
			g.event(Event{Kind: EventResolveFailed, Name: s.Address, Err: err})
			continue
		}
		if !slices.Equal(list, old.addrs[i]) {
			addrs[i], changed = list, true
			g.event(Event{Kind: EventResolved, Name: s.Address})
		}
	}
	if !changed {
		return
	}
	sn, err := g.build(addrs, old)
	if err != nil {
		g.event(Event{Kind: EventResolveFailed, Err: err})
		return
	}
	g.snap.Store(sn)
}
