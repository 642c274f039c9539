package guard

import "testing"

func TestOriginPolicy(t *testing.T) {
	p, err := NewOriginPolicy([]string{"https://example.com", "https://*.example.org", "http://localhost:8080", "HTTPS://Upper.Example.NET:443"}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin  string
		present bool
		want    bool
	}{
		{"https://example.com", true, true},
		{"HTTPS://EXAMPLE.COM", true, true},             // scheme and host lowercased (RFC 6454 §6.2)
		{"https://example.com:443", true, true},         // default port elided
		{"https://example.com:0443", true, true},        // a port is a number
		{"https://example.com:8443", true, false},       // another port, another origin
		{"http://example.com", true, false},             // another scheme
		{"https://example.com.", true, false},           // trailing dot: another host
		{"https://example.com.evil.net", true, false},   // suffix attack
		{"https://evilexample.com", true, false},        // no label boundary
		{"https://example.com/", true, false},           // not a serialized origin
		{"https://example.com/path", true, false},       // path
		{"https://user@example.com", true, false},       // userinfo
		{"https://example.com:", true, false},           // empty port
		{"https://example.com:99999", true, false},      // port out of range
		{"null", true, false},                           // opaque origin, not listed
		{"", true, false},                               // empty header
		{"example.com", true, false},                    // no scheme
		{"https://a.example.org", true, true},           // wildcard: one label
		{"https://a.b.example.org", true, true},         // wildcard: several labels
		{"https://example.org", true, false},            // wildcard needs a label
		{"https://.example.org", true, false},           // empty label
		{"https://A.Example.ORG", true, true},           // case
		{"http://a.example.org", true, false},           // wildcard keeps its scheme
		{"https://a.example.org:8443", true, false},     // and its port
		{"https://a.example.org.evil.net", true, false}, // suffix attack on a wildcard
		{"https://*.example.org", true, false},          // a literal star is no origin
		{"http://localhost:8080", true, true},
		{"http://localhost", true, false},
		{"https://upper.example.net", true, true},
		{"", false, false}, // missing, policy deny
	}
	for _, tt := range tests {
		if got := p.Allow([]byte(tt.origin), tt.present, []byte("example.com")); got != tt.want {
			t.Errorf("Allow(%q, present=%v) = %v, want %v", tt.origin, tt.present, got, tt.want)
		}
	}
}

func TestOriginSameOriginMissingNull(t *testing.T) {
	p, err := NewOriginPolicy([]string{"null"}, true, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin, host string
		present      bool
		want         bool
	}{
		{"", "chat.example.com", false, true}, // missing: allow
		{"null", "chat.example.com", true, true},
		{"https://chat.example.com", "chat.example.com", true, true},
		{"https://chat.example.com", "CHAT.example.com", true, true},
		{"https://chat.example.com", "chat.example.com:443", true, true},
		{"http://chat.example.com:8080", "chat.example.com:8080", true, true},
		{"http://chat.example.com", "chat.example.com:8080", true, false},
		{"http://chat.example.com:8080", "chat.example.com", true, false},
		{"https://chat.example.com.", "chat.example.com", true, false},
		{"https://chat.example.com", "chat.example.com.", true, false},
		{"https://evil.net", "chat.example.com", true, false},
		{"https://chat.example.com.evil.net", "chat.example.com", true, false},
		{"http://[::1]:8080", "[::1]:8080", true, true},
	}
	for _, tt := range tests {
		if got := p.Allow([]byte(tt.origin), tt.present, []byte(tt.host)); got != tt.want {
			t.Errorf("Allow(%q, Host %q) = %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}

func TestOriginPolicyConfigErrors(t *testing.T) {
	for _, o := range []string{"example.com", "https://", "https://*.", "https://a.*.com", "https://ex ample.com", "https://example.com/x", "https://*"} {
		if _, err := NewOriginPolicy([]string{o}, false, true); err == nil {
			t.Errorf("%q accepted", o)
		}
	}
	var zero *OriginPolicy
	if zero.Active() {
		t.Error("nil policy active")
	}
	p, _ := NewOriginPolicy(nil, false, true)
	if p.Active() {
		t.Error("empty allow-missing policy active")
	}
}
