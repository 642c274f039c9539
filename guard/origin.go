package guard

import (
	"fmt"
	"strings"
)

// OriginPolicy decides whether a handshake's Origin header is acceptable.
//
// Why: a browser attaches cookies to a cross-site WebSocket handshake, and
// the same-origin policy does not stop a page on evil.net from opening
// wss://chat.example.com (cross-site WebSocket hijacking). RFC 6455 §10.2
// leaves the defence to the server: browsers always send Origin, and a
// server that only wants its own pages refuses the others. Non-browser
// clients usually send no Origin at all, hence the separate policy for a
// missing header.
//
// Comparison follows RFC 6454 §6.2 (ASCII serialization of an origin):
// scheme, host and port, scheme and host lowercased, the scheme's default
// port elided. Nothing else is forgiven: a trailing dot makes a different
// host ("https://example.com." is not "https://example.com": browsers keep
// them as separate origins, with separate cookies), a path, userinfo or
// anything after the port makes the header invalid and refused, and the
// opaque origin "null" (sandboxed iframes, file: pages, some redirects;
// anyone can produce it) is refused unless "null" is listed.
//
// The zero value allows only requests without an Origin. An OriginPolicy
// is read-only after NewOriginPolicy and safe for concurrent use.
type OriginPolicy struct {
	exact      map[string]bool // serialized origins ("https://example.com")
	wildcards  []wildOrigin
	sameOrigin bool
	allowNull  bool
	// AllowMissing admits a handshake without an Origin header (non-browser
	// clients); false refuses it.
	AllowMissing bool
}

// wildOrigin is "scheme://*.suffix[:port]": one or more labels before the
// suffix, any of them.
type wildOrigin struct {
	scheme, suffix, port string // suffix starts with "."
}

// NewOriginPolicy builds a policy from origins (each "scheme://host[:port]",
// "scheme://*.domain[:port]" or "null"), sameOrigin (also admit an Origin
// whose host and port equal the Host header's) and allowMissing. An
// unparsable entry is an error: a typo must not silently open or close a
// site.
func NewOriginPolicy(origins []string, sameOrigin, allowMissing bool) (*OriginPolicy, error) {
	p := &OriginPolicy{exact: map[string]bool{}, sameOrigin: sameOrigin, AllowMissing: allowMissing}
	for _, o := range origins {
		if o == "null" {
			p.allowNull = true
			continue
		}
		scheme, host, port, ok := parseOrigin(o)
		if !ok {
			return nil, fmt.Errorf("invalid origin %q: want scheme://host[:port], scheme://*.domain or \"null\"", o)
		}
		if rest, wild := strings.CutPrefix(host, "*."); wild {
			if rest == "" || strings.Contains(rest, "*") {
				return nil, fmt.Errorf("invalid origin %q: a wildcard is \"*.\" followed by a domain", o)
			}
			p.wildcards = append(p.wildcards, wildOrigin{scheme, "." + rest, port})
			continue
		}
		if strings.Contains(host, "*") {
			return nil, fmt.Errorf("invalid origin %q: \"*\" is allowed only as the first label", o)
		}
		p.exact[serialize(scheme, host, port)] = true
	}
	return p, nil
}

// Active reports whether the policy restricts anything: origins were
// listed, same-origin is on, or a missing Origin is refused.
func (p *OriginPolicy) Active() bool {
	return p != nil && (len(p.exact) > 0 || len(p.wildcards) > 0 || p.sameOrigin || p.allowNull || !p.AllowMissing)
}

// Allow judges one handshake: origin is the Origin header value (present
// false when there is none) and host the Host header. More than one Origin
// header is the caller's to refuse (RFC 6454 §7.3 allows one).
func (p *OriginPolicy) Allow(origin []byte, present bool, host []byte) bool {
	if !present {
		return p.AllowMissing
	}
	if string(origin) == "null" {
		return p.allowNull
	}
	scheme, h, port, ok := parseOrigin(string(origin))
	if !ok || strings.Contains(h, "*") {
		return false
	}
	if p.exact[serialize(scheme, h, port)] {
		return true
	}
	for _, w := range p.wildcards {
		// At least one label before the suffix, and the suffix starts at a
		// label boundary: "https://example.com.evil.net" ends in neither
		// ".example.com" nor anything else listed.
		if w.scheme == scheme && w.port == port && len(h) > len(w.suffix) &&
			strings.HasSuffix(h, w.suffix) && h[len(h)-len(w.suffix)-1] != '.' {
			return true
		}
	}
	return p.sameOrigin && sameHost(scheme, h, port, string(host))
}

// sameHost compares an origin with the request's Host (RFC 9110 §7.2,
// uri-host [":" port]): a Host without a port means the scheme's default.
// Hosts compare case-insensitively and exactly otherwise.
func sameHost(scheme, host, port, hostHeader string) bool {
	hh, hp := splitHostPort(hostHeader)
	hh = strings.ToLower(hh)
	if hh == "" || hh != host {
		return false
	}
	if hp == "" || hp == defaultPort(scheme) {
		hp = ""
	}
	return hp == port
}

// parseOrigin reads "scheme://host[:port]" and returns the RFC 6454
// components: lowercase scheme and host, port without leading zeros or ""
// for the scheme's default. ok is false for anything else (a path, a query,
// userinfo, an empty host, a port that is not 1 to 65535, bytes outside
// the host alphabet).
func parseOrigin(s string) (scheme, host, port string, ok bool) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", "", "", false
	}
	scheme = strings.ToLower(s[:i])
	for j := 0; j < len(scheme); j++ {
		c := scheme[j]
		if !(c >= 'a' && c <= 'z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", "", "", false
		}
	}
	host, port = splitHostPort(s[i+3:])
	if host == "" || !hostChars(host) {
		return "", "", "", false
	}
	if port != "" {
		n := 0
		for j := 0; j < len(port); j++ {
			c := port[j]
			if c < '0' || c > '9' || n > 65535 {
				return "", "", "", false
			}
			n = n*10 + int(c-'0')
		}
		if n == 0 || n > 65535 {
			return "", "", "", false
		}
		port = fmt.Sprint(n)
		if port == defaultPort(scheme) {
			port = ""
		}
	}
	return scheme, strings.ToLower(host), port, true
}

// splitHostPort splits "host[:port]" or "[v6][:port]"; a ":" with nothing
// after it leaves port "" but is then refused by hostChars (the colon stays).
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", ""
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, ""
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", ""
		}
		return host, rest[1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if i == len(s)-1 {
			return "", ""
		}
		return s[:i], s[i+1:]
	}
	return s, ""
}

// hostChars accepts a reg-name or IPv4 address (letters, digits, "-", "."
// and the "*" of a configured wildcard) or a bracketed IPv6 address. A "/",
// "@", "?" or "#" (a path, userinfo, a query, a fragment) fails here.
func hostChars(h string) bool {
	if h[0] == '[' {
		for j := 1; j < len(h)-1; j++ {
			c := h[j]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		return len(h) > 2
	}
	for j := 0; j < len(h); j++ {
		c := h[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*' || c == '_') {
			return false
		}
	}
	return true
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

func serialize(scheme, host, port string) string {
	if port == "" {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}
