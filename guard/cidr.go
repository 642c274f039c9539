package guard

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// CIDRList is an ordered list of allow and deny rules on the client
// address; the first rule that matches decides, and an address no rule
// matches is allowed (nginx's allow/deny in the ngx_http_access_module).
//
// Addresses are compared unmapped: "::ffff:10.0.0.1", which a dual-stack
// listener reports for an IPv4 client, is 10.0.0.1, so an IPv4 deny rule
// cannot be dodged by connecting over a v4-mapped socket.
//
// A CIDRList is read-only once built and safe for concurrent use.
type CIDRList struct {
	rules []Rule
}

// Rule is one allow or deny entry.
type Rule struct {
	Prefix netip.Prefix
	Allow  bool
}

// ParsePrefix reads an address ("10.0.0.1", "2001:db8::1"), a CIDR
// ("10.0.0.0/8") or "all". "all" is returned as two prefixes (0.0.0.0/0
// and ::/0).
func ParsePrefix(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "all" {
		return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return []netip.Prefix{p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("invalid address %q: want an address, a CIDR such as 10.0.0.0/8, or \"all\"", s)
	}
	if a.Zone() != "" {
		return nil, fmt.Errorf("invalid address %q: no zone allowed", s)
	}
	a = a.Unmap()
	return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// NewCIDRList builds a list from rules in the order given: first match wins.
func NewCIDRList(rules []Rule) *CIDRList {
	return &CIDRList{rules: append([]Rule(nil), rules...)}
}

// NewAllowDeny builds a list from two separate lists of entries (ParsePrefix
// forms), as written in sluice's config where allow and deny are two keys
// and their interleaving is lost. Rules are ordered most specific first
// (longest prefix), deny before allow at equal length. That is the order
// in which every nginx list without a dead rule reads: "deny 10.0.0.66;
// allow 10.0.0.0/8; deny all;" gives the same verdicts as sluice's
// allow = ["10.0.0.0/8"], deny = ["10.0.0.66", "all"].
func NewAllowDeny(allow, deny []string) (*CIDRList, error) {
	var rules []Rule
	for _, set := range []struct {
		list  []string
		allow bool
	}{{deny, false}, {allow, true}} {
		for _, s := range set.list {
			ps, err := ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				rules = append(rules, Rule{p, set.allow})
			}
		}
	}
	sort.SliceStable(rules, func(i, j int) bool {
		return rules[i].Prefix.Bits() > rules[j].Prefix.Bits()
	})
	return NewCIDRList(rules), nil
}

// Len is the number of rules; a nil or empty list allows everyone.
func (l *CIDRList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.rules)
}

// Allowed reports the verdict of the first matching rule, true when none
// matches. An invalid address (no peer address known) is refused if the
// list has any rule: no rule can vouch for it.
func (l *CIDRList) Allowed(a netip.Addr) bool {
	if l.Len() == 0 {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, r := range l.rules {
		if r.Prefix.Contains(a) {
			return r.Allow
		}
	}
	return true
}

// Contains reports whether any rule's prefix holds a (ignoring the
// allow/deny verdict): used for sets of trusted proxies.
func (l *CIDRList) Contains(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, r := range l.rules {
		if r.Prefix.Contains(a) {
			return true
		}
	}
	return false
}
