package handshake

import "bytes"

// Response is a parsed response head (same aliasing rules as Request:
// every []byte points into the parsed buffer; reuse one per loop).
type Response struct {
	ProtoMajor, ProtoMinor      int
	Status                      int
	Reason                      []byte
	Upgrade, Connection, Accept []byte // first value of each (nil if absent)
	ContentLength               int64  // -1 when absent
	Chunked                     bool   // Transfer-Encoding with chunked as its final coding
	Headers                     []Header
	HeadLen                     int

	hdrs    [MaxHeaders]Header
	kinds   [MaxHeaders]uint8
	te      bool // any Transfer-Encoding, chunked or not
	nAccept int
}

func (r *Response) reset() {
	r.ProtoMajor, r.ProtoMinor, r.Status = 0, 0, 0
	r.Reason, r.Upgrade, r.Connection, r.Accept = nil, nil, nil, nil
	r.ContentLength, r.Chunked = -1, false
	r.Headers = r.hdrs[:0]
	r.HeadLen = 0
	r.te, r.nAccept = false, 0
}

// ParseResponse parses an upstream's response head at the start of buf,
// with the same contract as ParseRequest (limit <= 0 means
// DefaultResponseLimit). Its errors are ErrIncomplete, ErrUpstreamTooLarge,
// or one matching ErrUpstreamMalformed (syntax, a version other than 1.x,
// contradictory framing): never a request-side sentinel, so a broken
// upstream can never be answered to the client as the client's fault.
// 0 allocations.
func ParseResponse(buf []byte, limit int, resp *Response) error {
	resp.reset()
	if limit <= 0 {
		limit = DefaultResponseLimit
	}
	line, pos, err := nextLine(buf, 0, limit)
	if err != nil {
		return upstreamErr(err)
	}
	if err := resp.parseStatusLine(line); err != nil {
		return err
	}
	n, headLen, err := scanFields(buf, pos, limit, &resp.hdrs, &resp.kinds)
	if err != nil {
		return upstreamErr(err)
	}
	resp.Headers = resp.hdrs[:n]
	for i := range resp.Headers {
		v := resp.hdrs[i].Value
		switch resp.kinds[i] {
		case kUpgrade:
			if resp.Upgrade == nil {
				resp.Upgrade = v
			}
		case kConnection:
			if resp.Connection == nil {
				resp.Connection = v
			}
		case kAccept:
			if resp.nAccept == 0 {
				resp.Accept = v
			}
			resp.nAccept++
		}
	}
	f, err := readFraming(resp.Headers, resp.kinds[:n])
	if err != nil {
		return upstreamErr(err)
	}
	if f.te && resp.ProtoMinor == 0 {
		// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty.
		return upstreamErr(ErrBadFraming)
	}
	resp.ContentLength, resp.Chunked, resp.te = f.contentLength, f.chunked, f.te
	resp.HeadLen = headLen
	return nil
}

// parseStatusLine reads HTTP-version SP 3DIGIT SP [reason-phrase]
// (RFC 9112 §4). A missing SP after the code is tolerated: some servers
// omit it with an empty reason, and it changes nothing about the framing.
func (r *Response) parseStatusLine(line []byte) error {
	if len(line) < 12 || line[8] != ' ' {
		return errBadStatusLine
	}
	major, minor, ok := parseVersion(line[:8])
	if !ok || major != 1 {
		return errBadStatusLine
	}
	c := line[9:12]
	if !isDigit(c[0]) || !isDigit(c[1]) || !isDigit(c[2]) {
		return errBadStatusLine
	}
	status := int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
	// RFC 9110 §15: codes outside 100..599 are invalid.
	if status < 100 || status > 599 {
		return errBadStatusLine
	}
	var reason []byte
	if len(line) > 12 {
		if line[12] != ' ' {
			return errBadStatusLine
		}
		reason = line[13:]
		for _, ch := range reason {
			// HTAB / SP / VCHAR / obs-text: the reason is relayed to the client.
			if (ch < 0x20 && ch != '\t') || ch == 0x7f {
				return errBadStatusLine
			}
		}
	}
	r.ProtoMajor, r.ProtoMinor, r.Status, r.Reason = major, minor, status, reason
	return nil
}

// VerifyUpgrade checks that a parsed response is a valid switch for the
// client's key (RFC 6455 §4.1, the client's checks, done by the proxy
// before it opens a tunnel): status 101 (ErrUpstreamStatus), Upgrade names
// websocket and nothing else (ErrUpstreamUpgrade), Connection holds the
// upgrade token (ErrUpstreamConnection), exactly one Sec-WebSocket-Accept
// and it equals ComputeAccept(key) (ErrUpstreamAccept). 0 allocations.
//
// "Nothing else" is stricter than a browser needs to be: an upstream that
// answers "Upgrade: websocket, h2c" has switched to something, and sluice
// tunnels only websocket. A "/version" suffix is ignored, as in CheckUpgrade.
func VerifyUpgrade(resp *Response, key []byte) error {
	// A 101 in HTTP/1.0 is meaningless: 1.0 has no Upgrade (RFC 9110 §7.8).
	if resp.Status != 101 || resp.ProtoMinor < 1 {
		return ErrUpstreamStatus
	}
	hdrs, kinds := resp.Headers, resp.kinds[:len(resp.Headers)]
	protocols, websocket, connection := 0, false, false
	for i := range hdrs {
		switch kinds[i] {
		case kUpgrade:
			list := hdrs[i].Value
			for len(list) > 0 {
				var elem []byte
				elem, list = nextElement(list)
				if len(elem) == 0 {
					continue
				}
				protocols++
				websocket = websocket || equalFold(protocolName(elem), "websocket")
			}
		case kConnection:
			connection = connection || hasToken(hdrs[i].Value, "upgrade")
		}
	}
	if protocols != 1 || !websocket {
		return ErrUpstreamUpgrade
	}
	if !connection {
		return ErrUpstreamConnection
	}
	if resp.nAccept != 1 {
		return ErrUpstreamAccept
	}
	var want [acceptLen]byte
	// The accept value is base64, which is case-sensitive: exact compare.
	if !bytes.Equal(ComputeAccept(want[:0], key), resp.Accept) {
		return ErrUpstreamAccept
	}
	return nil
}

// BodyLength tells how many body bytes follow a response head (RFC 9112
// §6.3): 0 for 1xx, 204 and 304 (they never have one); -1 for "until the
// upstream closes" (any Transfer-Encoding — the caller relays the encoded
// bytes unchanged — or no Content-Length); else the Content-Length. The
// answer to a HEAD request is not a case here: handshakes are GETs.
func BodyLength(resp *Response) int64 {
	switch {
	case resp.Status < 200, resp.Status == 204, resp.Status == 304:
		return 0
	case resp.te:
		return -1
	default:
		return resp.ContentLength // -1 when absent
	}
}

// AppendRelayedResponse appends a non-101 upstream response head as it goes
// to the client, ready for the body that BodyLength describes. 0 allocations
// when dst has room.
//
//   - Status line: "HTTP/1.1", the upstream's code and reason. The version is
//     the proxy's own (RFC 9110 §6.2); the reason was checked for controls.
//   - Hop-by-hop fields (RFC 9110 §7.6.1) and every field the upstream's
//     Connection names are dropped: they described the upstream's connection
//     to sluice.
//   - Upgrade is dropped: nothing is switched on a non-101, and an Upgrade
//     header reaching the client could invite a second upgrade attempt on a
//     connection sluice is about to close.
//   - Transfer-Encoding and Content-Length are KEPT, even if Connection names
//     them, though Transfer-Encoding is hop-by-hop in the RFC's list: the
//     caller relays the body bytes unchanged, so the framing header must still
//     describe them. Dropping "chunked" would hand the client chunk-size
//     lines as content. (net/http/httputil drops it because net/http
//     re-encodes the body; sluice does not.)
//   - "Connection: close" is added: after a refused upgrade the connection
//     carries no further requests, and the client must not wait for one.
func AppendRelayedResponse(dst []byte, resp *Response) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, byte('0'+resp.Status/100), byte('0'+resp.Status/10%10), byte('0'+resp.Status%10), ' ')
	dst = append(dst, resp.Reason...)
	dst = append(dst, "\r\n"...)
	hdrs, kinds := resp.Headers, resp.kinds[:len(resp.Headers)]
	for i, h := range hdrs {
		switch kinds[i] {
		case kConnection, kUpgrade, kHopByHop:
			continue
		case kContentLength, kTransferEncoding:
			dst = appendField(dst, h)
			continue
		}
		if namedByConnection(hdrs, kinds, h.Name) {
			continue
		}
		dst = appendField(dst, h)
	}
	return append(dst, "Connection: close\r\n\r\n"...)
}
