package handshake

import "bytes"

// tchar marks the bytes allowed in a token (RFC 9110 §5.6.2): method names,
// header field names, list elements of Connection and Upgrade.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// hostChar marks the bytes allowed in a Host value: uri-host [":" port]
// (RFC 3986 §3.2.2): unreserved, pct-encoded, sub-delims, ':' and the
// brackets of an IP-literal. Routing keys on Host, so anything else is refused
// rather than guessed at.
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~%!$&'()*+,;=:[]" {
		t[c] = true
	}
	return
}()

// isToken reports whether b is a non-empty token.
func isToken(b []byte) bool {
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return len(b) > 0
}

// isTokenString is isToken for a string (Forward.Proto).
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return len(s) > 0
}

// validHost reports whether b is a non-empty Host value made of hostChar bytes.
func validHost(b []byte) bool {
	for _, c := range b {
		if !hostChar[c] {
			return false
		}
	}
	return len(b) > 0
}

// isOWS reports optional whitespace (RFC 9110 §5.6.3).
func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS trims SP and HTAB from both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// lower folds one ASCII letter; header names and tokens are ASCII, so
// Unicode folding (bytes.EqualFold) would be both slower and wrong: it
// equates 'K' (Kelvin sign) with 'k'.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares b with the lower-case ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// equalFoldBytes compares two byte strings ignoring ASCII case.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// nextElement splits the first element off a comma-separated list
// (RFC 9110 §5.6.1) and trims it of OWS. Empty elements come back empty;
// the RFC says a recipient MUST accept and ignore them.
func nextElement(list []byte) (elem, rest []byte) {
	i := bytes.IndexByte(list, ',')
	if i < 0 {
		return trimOWS(list), nil
	}
	return trimOWS(list[:i]), list[i+1:]
}

// hasToken reports whether the list holds tok (lower case), ignoring case.
func hasToken(list []byte, tok string) bool {
	for len(list) > 0 {
		var elem []byte
		elem, list = nextElement(list)
		if equalFold(elem, tok) {
			return true
		}
	}
	return false
}

// protocolName strips an Upgrade element's "/version" (RFC 9110 §7.8:
// protocol = protocol-name ["/" protocol-version]). "websocket/13" is thus
// accepted as websocket: the name is what decides what gets tunnelled, and
// RFC 6455 defines no version suffix to check against.
func protocolName(elem []byte) []byte {
	if i := bytes.IndexByte(elem, '/'); i >= 0 {
		return elem[:i]
	}
	return elem
}

// hasProtocol reports whether an Upgrade list names protocol (lower case).
func hasProtocol(list []byte, protocol string) bool {
	for len(list) > 0 {
		var elem []byte
		elem, list = nextElement(list)
		if equalFold(protocolName(elem), protocol) {
			return true
		}
	}
	return false
}

// lastElement returns the last non-empty element of a list (the final
// transfer coding, RFC 9112 §6.3).
func lastElement(list []byte) []byte {
	var last []byte
	for len(list) > 0 {
		var elem []byte
		elem, list = nextElement(list)
		if len(elem) > 0 {
			last = elem
		}
	}
	return last
}

// namedByConnection reports whether name is one of the options listed in
// the head's Connection header(s) (RFC 9110 §7.6.1: "connection-option"s
// name header fields that are meant for this hop only). Every Connection
// header counts: a list may be split over several lines (RFC 9110 §5.3).
//
// Cost: headers × options length compares; the head limit bounds both, so a
// hostile list costs at most a few hundred microseconds and only the sender.
func namedByConnection(hdrs []Header, kinds []uint8, name []byte) bool {
	for i := range hdrs {
		if kinds[i] != kConnection {
			continue
		}
		list := hdrs[i].Value
		for len(list) > 0 {
			var elem []byte
			elem, list = nextElement(list)
			if equalFoldBytes(elem, name) {
				return true
			}
		}
	}
	return false
}
