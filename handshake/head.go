package handshake

import "bytes"

// Header is one header field; Name and Value alias the parsed buffer (Value
// trimmed of OWS). Name keeps the case it was sent in.
type Header struct{ Name, Value []byte }

// MaxHeaders caps header fields per head; more is ErrTooManyHeaders (→ 431).
// It sizes the fixed array inside Request and Response, which is why parsing
// never allocates: the cap is ours, not the peer's.
const MaxHeaders = 100

// Default limits used when a caller passes limit <= 0.
const (
	// DefaultRequestLimit matches a common max_header_bytes (nginx's large_client_header_buffers is 8k).
	DefaultRequestLimit = 8192
	// DefaultResponseLimit allows upstreams the larger heads (cookies) they tend to send.
	DefaultResponseLimit = 16384
)

// Header kinds, found once per field while parsing so that CheckUpgrade,
// the rewrite and the relay never compare names again.
const (
	kOther uint8 = iota
	kHost
	kUpgrade
	kConnection
	kKey     // Sec-WebSocket-Key
	kVersion // Sec-WebSocket-Version
	kAccept  // Sec-WebSocket-Accept
	kSecWS   // any other Sec-WebSocket-*
	kContentLength
	kTransferEncoding
	kHopByHop // Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate, Proxy-Authorization
	kXRealIP
	kXForwardedFor
	kXForwardedProto
)

// kindOf classifies a field name, ignoring case. Switching on the length
// first keeps this to one or two short compares per field.
func kindOf(name []byte) uint8 {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return kHopByHop
		}
	case 4:
		if equalFold(name, "host") {
			return kHost
		}
	case 7:
		if equalFold(name, "upgrade") {
			return kUpgrade
		}
		if equalFold(name, "trailer") {
			return kHopByHop
		}
	case 9:
		if equalFold(name, "x-real-ip") {
			return kXRealIP
		}
	case 10:
		if equalFold(name, "connection") {
			return kConnection
		}
		if equalFold(name, "keep-alive") {
			return kHopByHop
		}
	case 14:
		if equalFold(name, "content-length") {
			return kContentLength
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return kXForwardedFor
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return kHopByHop
		}
	case 17:
		if equalFold(name, "sec-websocket-key") {
			return kKey
		}
		if equalFold(name, "transfer-encoding") {
			return kTransferEncoding
		}
		if equalFold(name, "x-forwarded-proto") {
			return kXForwardedProto
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return kHopByHop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return kHopByHop
		}
	case 20:
		if equalFold(name, "sec-websocket-accept") {
			return kAccept
		}
	case 21:
		if equalFold(name, "sec-websocket-version") {
			return kVersion
		}
	}
	if len(name) >= 14 && equalFold(name[:14], "sec-websocket-") {
		return kSecWS
	}
	return kOther
}

// nextLine returns the line that starts at pos, without its CRLF, and the
// offset just past its LF. Only the first limit bytes of buf are looked at.
//
// Every line must end in CRLF (ErrBareLF otherwise). When no LF is found:
// ErrHeadTooLarge if buf already holds limit bytes, else ErrIncomplete —
// unless the partial line already holds a control byte, which no amount of
// further input can make valid (ErrControlChar).
func nextLine(buf []byte, pos, limit int) ([]byte, int, error) {
	window := buf
	if len(window) > limit {
		window = window[:limit]
	}
	i := bytes.IndexByte(window[pos:], '\n')
	if i < 0 {
		if len(buf) >= limit {
			return nil, 0, ErrHeadTooLarge
		}
		if badPartial(window[pos:]) {
			return nil, 0, ErrControlChar
		}
		return nil, 0, ErrIncomplete
	}
	end := pos + i
	if end == pos || window[end-1] != '\r' {
		return nil, 0, ErrBareLF
	}
	return window[pos : end-1], end + 1, nil
}

// badPartial reports a control byte (other than HTAB, and a CR that may be
// the first half of the CRLF still arriving) in an unfinished line.
func badPartial(p []byte) bool {
	for i, c := range p {
		if (c < 0x20 && c != '\t' && !(c == '\r' && i == len(p)-1)) || c == 0x7f {
			return true
		}
	}
	return false
}

// parseField splits one header line (RFC 9112 §5: field-name ":" OWS
// field-value OWS) and validates both halves.
func parseField(line []byte) (name, value []byte, err error) {
	if isOWS(line[0]) {
		return nil, nil, ErrObsFold
	}
	i := 0
	for i < len(line) && tchar[line[i]] {
		i++
	}
	switch {
	case i == len(line):
		return nil, nil, ErrNoColon
	case line[i] == ':':
		if i == 0 {
			return nil, nil, ErrBadHeaderName
		}
	case isOWS(line[i]):
		if bytes.IndexByte(line[i:], ':') < 0 {
			return nil, nil, ErrNoColon
		}
		return nil, nil, ErrSpaceBeforeColon
	default:
		return nil, nil, ErrBadHeaderName
	}
	value = trimOWS(line[i+1:])
	for _, c := range value {
		// field-vchar / SP / HTAB / obs-text (RFC 9110 §5.5). CR, LF and NUL
		// are the ones that matter: a value carrying them could split into a
		// second header one hop later.
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, nil, ErrBadHeaderValue
		}
	}
	return line[:i], value, nil
}

// scanFields parses header lines from pos up to and including the empty line
// that ends the head. It fills hdrs and kinds and returns the field count
// and the head length.
func scanFields(buf []byte, pos, limit int, hdrs *[MaxHeaders]Header, kinds *[MaxHeaders]uint8) (n, headLen int, err error) {
	for {
		line, next, err := nextLine(buf, pos, limit)
		if err != nil {
			return n, 0, err
		}
		pos = next
		if len(line) == 0 {
			return n, pos, nil
		}
		name, value, err := parseField(line)
		if err != nil {
			return n, 0, err
		}
		if n == MaxHeaders {
			return n, 0, ErrTooManyHeaders
		}
		hdrs[n] = Header{Name: name, Value: value}
		kinds[n] = kindOf(name)
		n++
	}
}

// parseVersion reads "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3). ok is false on
// any other shape; the major number is returned as read so that callers can
// tell "HTTP/2.0" (well formed, wrong version) from garbage.
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		!isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// maxContentLength caps a declared length at what fits in an int64 with room
// to spare; the number is never used to size a buffer.
const maxContentLength = 1<<62 - 1

// parseContentLength reads 1*DIGIT (RFC 9110 §8.6). A list ("5, 5"), a sign
// or a space inside is refused: parsers that disagree on such forms are how
// bodies get smuggled.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > maxContentLength {
			return 0, false
		}
	}
	return n, true
}

// framing is what the Content-Length and Transfer-Encoding fields of a head
// say about its body, after RFC 9112 §6 consistency checks.
type framing struct {
	contentLength int64 // -1 when absent
	te            bool  // any Transfer-Encoding present
	chunked       bool  // chunked is the final coding
}

// readFraming walks the length fields of a parsed head.
func readFraming(hdrs []Header, kinds []uint8) (framing, error) {
	f := framing{contentLength: -1}
	for i := range hdrs {
		switch kinds[i] {
		case kContentLength:
			n, ok := parseContentLength(hdrs[i].Value)
			if !ok || (f.contentLength >= 0 && n != f.contentLength) {
				return f, ErrBadContentLength
			}
			f.contentLength = n
		case kTransferEncoding:
			f.te = true
			if last := lastElement(hdrs[i].Value); last != nil {
				f.chunked = equalFold(last, "chunked")
			}
		}
	}
	if f.te && f.contentLength >= 0 {
		// RFC 9112 §6.1: "ought to be handled as an error"; one hop honouring
		// each is request smuggling.
		return f, ErrBadFraming
	}
	return f, nil
}
