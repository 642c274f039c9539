package handshake

// Plain (non-upgrade) requests: what the engine needs to judge and forward
// a request that fasthttp serves, with the same rules as the upgrade path.

// CheckPlain judges a request that ParseRequest accepted and that will be
// served or proxied as plain HTTP. ParseRequest already refused what makes
// framing ambiguous (Content-Length with Transfer-Encoding, two different
// lengths, a final coding other than chunked, obs-fold, bare LF, control
// bytes in values); on top of that a plain request may carry only the one
// coding every hop agrees on: exactly "Transfer-Encoding: chunked", once.
// "gzip, chunked" is valid HTTP, but an upstream that does not decode gzip
// would read a different body than the one sluice framed (RFC 9112 §6.1
// lets a server answer 501; nginx does the same). 0 allocations.
func CheckPlain(req *Request) error {
	if !req.Chunked {
		return nil
	}
	n := 0
	for i, h := range req.Headers {
		if req.kinds[i] != kTransferEncoding {
			continue
		}
		n++
		if n > 1 || !equalFold(trimList(h.Value), "chunked") {
			return ErrBadFraming
		}
	}
	return nil
}

// DropOnForward reports whether header i of req must not be sent upstream
// with a plain request: hop-by-hop fields (RFC 9110 §7.6.1: Connection,
// Upgrade, Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate,
// Proxy-Authorization) and any field the Connection header names, which
// describe the client's connection to sluice; and X-Real-IP,
// X-Forwarded-For and X-Forwarded-Proto, which the proxy writes itself
// (AppendForwardedFor) so a client cannot claim an address or scheme.
// Upgrade goes too, so a plain request never reaches an upstream with
// "Upgrade" or "Connection: upgrade" (nginx's map $http_upgrade
// $connection_upgrade). Host and the framing fields (Content-Length,
// Transfer-Encoding) are kept even if Connection names them: dropping them
// would change where the body ends.
func (r *Request) DropOnForward(i int) bool {
	switch r.kinds[i] {
	case kConnection, kUpgrade, kHopByHop, kXRealIP, kXForwardedFor, kXForwardedProto:
		return true
	case kHost, kContentLength, kTransferEncoding:
		return false
	}
	return namedByConnection(r.Headers, r.kinds[:len(r.Headers)], r.Headers[i].Name)
}

// AppendForwardedFor appends the X-Forwarded-For value sent upstream: the
// client's own list (every X-Forwarded-For line, in order, as one list),
// unless its Connection header names X-Forwarded-For, then addr, the
// address the proxy saw ("unknown" if addr is not an address). It is the
// same value the upgrade path writes (AppendUpstreamRequest).
func AppendForwardedFor(dst []byte, req *Request, addr []byte) []byte {
	hdrs, kinds := req.Headers, req.kinds[:len(req.Headers)]
	drop := false
	for i := range hdrs {
		if kinds[i] == kXForwardedFor {
			drop = namedByConnection(hdrs, kinds, hdrs[i].Name)
			break
		}
	}
	if !drop {
		for i := range hdrs {
			if kinds[i] == kXForwardedFor {
				if v := trimList(hdrs[i].Value); len(v) > 0 {
					dst = append(dst, v...)
					dst = append(dst, ", "...)
				}
			}
		}
	}
	if !validAddr(addr) {
		return append(dst, unknownAddr...)
	}
	return append(dst, addr...)
}
