package handshake

import "bytes"

// Request is a parsed request head. Every []byte aliases the input buffer,
// so a Request is valid only while that buffer is unchanged. Reuse one
// Request per event loop: ParseRequest resets it and does 0 allocations.
// Headers points into the Request's own fixed array, so a copied Request
// shares that array with the original; pass *Request around instead.
type Request struct {
	Method, Target, Path, Query []byte // Target = Path + "?" + Query as sent; Query without '?'
	ProtoMajor, ProtoMinor      int
	Host                        []byte   // the Host header value (nil if absent)
	Upgrade                     []byte   // raw value of the first Upgrade header (nil if absent)
	Key                         []byte   // first Sec-WebSocket-Key
	Version                     []byte   // first Sec-WebSocket-Version
	ContentLength               int64    // declared body length; -1 when absent
	Chunked                     bool     // Transfer-Encoding present (ParseRequest guarantees chunked is its final coding)
	Headers                     []Header // slice over an internal fixed array, in order
	HeadLen                     int      // bytes of the head including the final CRLFCRLF

	hdrs                 [MaxHeaders]Header
	kinds                [MaxHeaders]uint8
	nUpgrade, nKey, nVer int
	hasHost              bool
}

// reset clears the scalar fields; the fixed arrays are overwritten as
// fields are parsed, so clearing their 5 KB every time would be waste.
func (r *Request) reset() {
	r.Method, r.Target, r.Path, r.Query = nil, nil, nil, nil
	r.ProtoMajor, r.ProtoMinor = 0, 0
	r.Host, r.Upgrade, r.Key, r.Version = nil, nil, nil, nil
	r.ContentLength, r.Chunked = -1, false
	r.Headers = r.hdrs[:0]
	r.HeadLen = 0
	r.nUpgrade, r.nKey, r.nVer = 0, 0, 0
	r.hasHost = false
}

// ParseRequest parses the head at the start of buf. limit is the maximum
// head size (the server's max_header_bytes; <= 0 means DefaultRequestLimit).
// It returns:
//   - ErrIncomplete if buf holds no complete head yet and len(buf) < limit
//     (the caller waits for more);
//   - ErrHeadTooLarge if no complete head ends within limit bytes;
//   - a syntax error (matching ErrMalformed), ErrHTTPVersion, ErrNoHost or
//     ErrDuplicateHost for a head that is broken whatever comes next; such
//     errors are reported as soon as the offending line is complete, even
//     before the head ends, so garbage costs the sender and not a slot;
//   - nil when req is filled.
//
// It checks syntax and what RFC 9112 never allows from a client (two Hosts,
// ambiguous framing); whether the request is a WebSocket upgrade is
// CheckUpgrade's job. Leading empty lines before the request line (RFC 9112
// §2.2 SHOULD ignore) are refused: sluice parses only the first request of a
// connection, where there is no previous body for them to trail.
//
// This is the handshake hot path: it must not allocate (see
// TestZeroAllocs); a Request that escapes is allocated once per loop, not per call.
func ParseRequest(buf []byte, limit int, req *Request) error {
	req.reset()
	if limit <= 0 {
		limit = DefaultRequestLimit
	}
	line, pos, err := nextLine(buf, 0, limit)
	if err != nil {
		return err
	}
	if err := req.parseRequestLine(line); err != nil {
		return err
	}
	n, headLen, err := scanFields(buf, pos, limit, &req.hdrs, &req.kinds)
	if err != nil {
		return err
	}
	req.Headers = req.hdrs[:n]
	for i := range req.Headers {
		v := req.hdrs[i].Value
		switch req.kinds[i] {
		case kHost:
			if req.hasHost {
				return ErrDuplicateHost
			}
			req.hasHost = true
			req.Host = v
			// An empty Host is legal syntax (RFC 9112 §3.2) and is turned
			// into ErrNoHost by CheckUpgrade; anything else must be a host.
			if len(v) > 0 && !validHost(v) {
				return ErrBadHost
			}
		case kUpgrade:
			if req.nUpgrade == 0 {
				req.Upgrade = v
			}
			req.nUpgrade++
		case kKey:
			if req.nKey == 0 {
				req.Key = v
			}
			req.nKey++
		case kVersion:
			if req.nVer == 0 {
				req.Version = v
			}
			req.nVer++
		}
	}
	if !req.hasHost && req.ProtoMinor >= 1 {
		return ErrNoHost
	}
	f, err := readFraming(req.Headers, req.kinds[:n])
	if err != nil {
		return err
	}
	if f.te && (!f.chunked || req.ProtoMinor == 0) {
		// RFC 9112 §6.3 item 4: a request whose final coding is not chunked
		// has no knowable length: MUST 400. §6.1: Transfer-Encoding in an
		// HTTP/1.0 request is treated as faulty (1.0 hops ignore it).
		return ErrBadFraming
	}
	req.ContentLength, req.Chunked = f.contentLength, f.te
	req.HeadLen = headLen
	return nil
}

// parseRequestLine reads method SP request-target SP HTTP-version (RFC 9112
// §3), exactly one SP between parts: the RFC's "MAY parse on whitespace"
// leniency is what lets two hops split one line differently.
func (r *Request) parseRequestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return ErrBadRequestLine
	}
	if !isToken(line[:sp1]) {
		return ErrBadMethod
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		// Also HTTP/0.9's "GET /": no version, no headers; never served.
		return ErrBadRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	// A well-formed version other than 1.x is a 505 whatever the target:
	// that is how the HTTP/2 preface "PRI * HTTP/2.0" gets a clear answer.
	major, minor, ok := parseVersion(version)
	if ok && major != 1 {
		return ErrHTTPVersion
	}
	// Origin-form only (RFC 9112 §3.2.1). Absolute-form would carry an
	// authority that can disagree with Host, and sluice routes on Host;
	// '*' (asterisk-form) is for OPTIONS, never a handshake.
	if len(target) == 0 || target[0] != '/' {
		return ErrBadTarget
	}
	for _, c := range target {
		// Visible ASCII only, and no fragment: a target with raw spaces,
		// controls or bytes >= 0x80 is not a URI (RFC 3986 §2), and a '#' is
		// never sent by a conforming client (RFC 9110 §7.1: the fragment stays client-side).
		if c <= ' ' || c >= 0x7f || c == '#' {
			return ErrBadTarget
		}
	}
	if !ok {
		return ErrBadVersion
	}
	r.Method = line[:sp1]
	r.Target = target
	r.Path, r.Query = target, nil
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		r.Path, r.Query = target[:q], target[q+1:]
	}
	r.ProtoMajor, r.ProtoMinor = major, minor
	return nil
}

// CheckUpgrade judges a request that ParseRequest accepted against RFC 6455
// §4.2.1 and returns nil or one of ErrNotUpgrade, ErrUpgradeHTTP10,
// ErrMethod, ErrNoHost, ErrRequestBody, ErrUpgradeNotWebSocket,
// ErrConnectionNotUpgrade, ErrVersion, ErrBadKey, checked in that order:
// "is this an upgrade at all" first, so a plain request gets a 426 naming
// what would work; the version before the key so a client speaking an old
// draft gets the 426 that tells it to use 13. 0 allocations.
//
// Duplicates: two Sec-WebSocket-Key headers are ErrBadKey, two
// Sec-WebSocket-Version headers are ErrVersion (RFC 6455 §11.3.5 allows
// repeats only in responses; the 426 tells the client the one to send).
func CheckUpgrade(req *Request) error {
	if req.nUpgrade == 0 {
		return ErrNotUpgrade
	}
	if req.ProtoMajor != 1 {
		return ErrHTTPVersion
	}
	if req.ProtoMinor < 1 {
		return ErrUpgradeHTTP10
	}
	// Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
	if string(req.Method) != "GET" {
		return ErrMethod
	}
	if len(req.Host) == 0 {
		return ErrNoHost
	}
	if req.ContentLength > 0 || req.Chunked {
		return ErrRequestBody
	}
	hdrs, kinds := req.Headers, req.kinds[:len(req.Headers)]
	upgrade, connection := false, false
	for i := range hdrs {
		switch kinds[i] {
		case kUpgrade:
			upgrade = upgrade || hasProtocol(hdrs[i].Value, "websocket")
		case kConnection:
			connection = connection || hasToken(hdrs[i].Value, "upgrade")
		}
	}
	if !upgrade {
		return ErrUpgradeNotWebSocket
	}
	if !connection {
		return ErrConnectionNotUpgrade
	}
	if req.nVer != 1 || string(req.Version) != "13" {
		return ErrVersion
	}
	if req.nKey != 1 || !validKey(req.Key) {
		return ErrBadKey
	}
	return nil
}
