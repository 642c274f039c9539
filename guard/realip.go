package guard

import (
	"bytes"
	"net/netip"
)

// RealIP finds the client's address behind trusted proxies: nginx's
// set_real_ip_from with real_ip_recursive on.
//
// Why so strict: X-Forwarded-For is written by whoever sends the request.
// Believing it from anyone lets a client pick the address every other rule
// (allow/deny, limit_conn, limit_req) sees, defeating all of them. So the
// header is read only when the TCP peer is a trusted proxy, and then from
// the right: each trusted proxy appends the address it saw, so the
// rightmost address that is not itself trusted is the first one no
// trusted party can vouch for having been forged, and that is the client.
// Anything to its left was written by the client and is ignored.
type RealIP struct {
	trusted *CIDRList
}

// NewRealIP trusts the given prefixes (ParsePrefix forms). An empty list
// trusts no one: every address is the TCP peer's.
func NewRealIP(trusted []string) (*RealIP, error) {
	var rules []Rule
	for _, s := range trusted {
		ps, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			rules = append(rules, Rule{p, true})
		}
	}
	return &RealIP{trusted: NewCIDRList(rules)}, nil
}

// Trusted reports whether a is a trusted proxy.
func (r *RealIP) Trusted(a netip.Addr) bool { return r != nil && r.trusted.Contains(a) }

// FromForwarded returns the client address for a connection from peer
// carrying the X-Forwarded-For header values in order (each a comma list).
// An untrusted peer's header is ignored. Walking from the right, trusted
// addresses are skipped; the first untrusted one is the client. If every
// address is trusted, the leftmost is. An entry that is not an address
// stops the walk at the last good one (a trusted hop, or the peer): a
// garbled header cannot make sluice believe anything a trusted hop did not
// write.
func (r *RealIP) FromForwarded(peer netip.Addr, values [][]byte) netip.Addr {
	peer = peer.Unmap()
	if !r.Trusted(peer) {
		return peer
	}
	cur := peer
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for len(v) > 0 {
			var item []byte
			if j := bytes.LastIndexByte(v, ','); j >= 0 {
				item, v = v[j+1:], v[:j]
			} else {
				item, v = v, nil
			}
			item = bytes.TrimSpace(item)
			if len(item) == 0 {
				continue
			}
			a, err := netip.ParseAddr(string(item))
			if err != nil || a.Zone() != "" {
				return cur
			}
			cur = a.Unmap()
			if !r.trusted.Contains(cur) {
				return cur
			}
		}
	}
	return cur
}
