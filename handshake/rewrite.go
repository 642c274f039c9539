package handshake

// Forward says what the proxy adds when it forwards a request upstream.
type Forward struct {
	ClientAddr []byte // client IP as text, no port ("127.0.0.1", "::1")
	Proto      string // "http" or "https", for X-Forwarded-Proto
	Host       []byte // if non-nil, replaces the Host header; nil keeps the client's Host
}

// maxAddrLen bounds ClientAddr: the longest IPv6 text with a zone fits easily.
const maxAddrLen = 64

// unknownAddr stands in for a ClientAddr that is not an IP in text form.
// "unknown" is RFC 7239 §6's word for it. Writing something keeps the last
// X-Forwarded-For entry the proxy's own: leaving it out would let the
// client's last forged entry pose as the address the proxy saw.
const unknownAddr = "unknown"

// validAddr accepts the characters of an IPv4, IPv6 or zoned IPv6 text
// ("fe80::1%eth0"). It is a guard against header injection through a
// caller's bug, not an IP parser.
func validAddr(b []byte) bool {
	if len(b) == 0 || len(b) > maxAddrLen {
		return false
	}
	for _, c := range b {
		if !(isDigit(c) || ('a' <= lower(c) && lower(c) <= 'z') || c == '.' || c == ':' || c == '%' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// AppendUpstreamRequest appends the request to send upstream for a request
// that CheckUpgrade accepted, and returns the extended buffer. It does not
// allocate when dst has room (BenchmarkAppendUpstreamRequest).
//
// Calling it for a request CheckUpgrade refused is a caller bug: a request
// body would lose its Transfer-Encoding here, and it is only safe because a
// handshake has no body.
//
// Nothing it writes can hold CR or LF: parsed names and values cannot (the
// parser refuses them) and each Forward field is checked first. A bad
// fwd.Host is ignored (the client's Host is kept), a bad fwd.ClientAddr is
// written as "unknown", a fwd.Proto that is not a token leaves
// X-Forwarded-Proto out. A nil fwd behaves like an empty Forward.
func AppendUpstreamRequest(dst []byte, req *Request, fwd *Forward) []byte {
	var host, addr []byte
	var proto string
	if fwd != nil {
		if validHost(fwd.Host) {
			host = fwd.Host
		}
		if validAddr(fwd.ClientAddr) {
			addr = fwd.ClientAddr
		}
		if isTokenString(fwd.Proto) {
			proto = fwd.Proto
		}
	}

	// Method and target exactly as received: the upstream routes on the path
	// and the query often carries a token. The version is ours: a proxy
	// sends its own HTTP version (RFC 9110 §6.2), and CheckUpgrade has made
	// sure the client spoke 1.1 or later.
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)

	if !req.hasHost && host != nil {
		dst = appendHeader(dst, "Host", host)
	}

	hdrs, kinds := req.Headers, req.kinds[:len(req.Headers)]
	for i, h := range hdrs {
		switch kinds[i] {
		case kConnection, kUpgrade, kTransferEncoding, kHopByHop:
			// Hop-by-hop fields (RFC 9110 §7.6.1) describe the client's
			// connection to sluice, not sluice's to the upstream. Connection
			// and Upgrade are rewritten below with websocket as the only
			// protocol, so an "Upgrade: websocket, h2c" cannot make the
			// upstream switch to h2c. Proxy-Authorization carries the
			// client's credentials for this proxy, never for the upstream.
			continue
		case kXRealIP, kXForwardedProto:
			// The proxy sets its own. Passing the client's would let it claim
			// any address or scheme to an upstream that trusts these headers.
			continue
		case kXForwardedFor:
			// Merged into the one X-Forwarded-For written below.
			continue
		case kHost:
			// Host and Sec-WebSocket-* are kept even if Connection names
			// them: the upgrade cannot work without them end to end, so a
			// client naming them is broken or hostile and obeying would only
			// break its own handshake (or route it by some other Host).
			if host != nil {
				dst = appendField(dst, Header{Name: h.Name, Value: host})
			} else {
				dst = appendField(dst, h)
			}
			continue
		case kKey, kVersion, kAccept, kSecWS:
			dst = appendField(dst, h)
			continue
		}
		// RFC 9110 §7.6.1: a proxy MUST remove every field the Connection
		// header names; that is how a client marks a header as meant for
		// this hop only. (net/http/httputil's removeHopByHopHeaders does the same.)
		if namedByConnection(hdrs, kinds, h.Name) {
			continue
		}
		// End-to-end: name and value byte for byte, in the order received;
		// only the separator is normalised to ": ".
		dst = appendField(dst, h)
	}

	// The upgrade itself, for this hop (RFC 9110 §7.8: a sender of Upgrade
	// MUST also send the "upgrade" connection option).
	dst = append(dst, "Connection: Upgrade\r\nUpgrade: websocket\r\n"...)

	// What the proxy saw, written after all the dropping above so that a
	// client naming these in Connection cannot remove them.
	if addr == nil {
		dst = append(dst, "X-Real-IP: "+unknownAddr+"\r\n"...)
	} else {
		dst = appendHeader(dst, "X-Real-IP", addr)
	}
	// X-Forwarded-For: the client's list (all its X-Forwarded-For lines, in
	// order, as one list) plus the address the proxy saw, last. Only that
	// last entry is trustworthy; upstreams must read from the right. If the
	// client's Connection names X-Forwarded-For, its list is dropped like any
	// named header and only the proxy's entry remains.
	dst = append(dst, "X-Forwarded-For: "...)
	dropXFF := false
	for i := range hdrs {
		if kinds[i] == kXForwardedFor {
			dropXFF = namedByConnection(hdrs, kinds, hdrs[i].Name)
			break
		}
	}
	if !dropXFF {
		for i := range hdrs {
			if kinds[i] == kXForwardedFor {
				if v := hdrs[i].Value; len(trimList(v)) > 0 {
					dst = append(dst, trimList(v)...)
					dst = append(dst, ", "...)
				}
			}
		}
	}
	if addr == nil {
		dst = append(dst, unknownAddr...)
	} else {
		dst = append(dst, addr...)
	}
	dst = append(dst, "\r\n"...)
	if proto != "" {
		dst = append(dst, "X-Forwarded-Proto: "...)
		dst = append(dst, proto...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// trimList trims OWS and stray commas from both ends of a list value, so
// that joining "a," and "b" with ", " does not make an empty element.
func trimList(v []byte) []byte {
	for len(v) > 0 && (isOWS(v[0]) || v[0] == ',') {
		v = v[1:]
	}
	for len(v) > 0 && (isOWS(v[len(v)-1]) || v[len(v)-1] == ',') {
		v = v[:len(v)-1]
	}
	return v
}

// appendField writes a parsed header as "Name: Value\r\n".
func appendField(dst []byte, h Header) []byte {
	dst = append(dst, h.Name...)
	dst = append(dst, ": "...)
	dst = append(dst, h.Value...)
	return append(dst, "\r\n"...)
}

// appendHeader writes "name: value\r\n"; callers vouch for both.
func appendHeader(dst []byte, name string, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}
