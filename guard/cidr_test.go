package guard

import (
	"net/netip"
	"testing"
)

func TestAllowDeny(t *testing.T) {
	l, err := NewAllowDeny([]string{"10.0.0.0/8", "2001:db8::/32"}, []string{"10.0.0.66", "all"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"10.0.0.66", false},          // more specific deny first
		{"::ffff:10.1.2.3", true},     // v4-mapped unmapped
		{"::ffff:10.0.0.66", false},   // a mapped socket does not dodge a deny
		{"192.168.1.1", false},        // deny all
		{"2001:db8::1", true},         // v6 allow
		{"2001:db9::1", false},        // v6 deny all
		{"127.0.0.1", false},          // deny all
		{"::ffff:192.168.1.1", false}, // mapped deny all
	}
	for _, tt := range tests {
		if got := l.Allowed(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if l.Allowed(netip.Addr{}) {
		t.Error("an unknown address passed a non-empty list")
	}
	var empty *CIDRList
	if !empty.Allowed(netip.MustParseAddr("1.2.3.4")) {
		t.Error("empty list refused")
	}
	only, _ := NewAllowDeny(nil, []string{"127.0.0.2"})
	if only.Allowed(netip.MustParseAddr("127.0.0.2")) || !only.Allowed(netip.MustParseAddr("127.0.0.3")) {
		t.Error("deny-only list: no match must allow")
	}
}

func TestFirstMatchWins(t *testing.T) {
	l := NewCIDRList([]Rule{
		{netip.MustParsePrefix("10.0.0.0/8"), false},
		{netip.MustParsePrefix("10.0.0.1/32"), true}, // dead: shadowed, as in nginx
	})
	if l.Allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("first match must win")
	}
}

func TestParsePrefix(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "10.0.0.x", "", "fe80::1%eth0", "all/8", "1.2.3.4/"} {
		if _, err := ParsePrefix(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	ps, err := ParsePrefix("::ffff:10.0.0.0/104")
	if err != nil || ps[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("mapped prefix: %v %v", ps, err)
	}
	ps, _ = ParsePrefix("10.1.2.3/8")
	if ps[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("not masked: %v", ps)
	}
}
