package handshake

import "errors"

// syntaxError is a request-head syntax error. Each one has its own sentinel
// so tests and logs can name the exact rule broken, and each one matches
// ErrMalformed so callers that only care about "400, bad syntax" need one check.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// Is makes every syntax error match ErrMalformed.
func (e *syntaxError) Is(target error) bool { return target == ErrMalformed }

// upstreamError is a syntax error found in an upstream's response head. It
// matches ErrUpstreamMalformed and deliberately does NOT unwrap to the
// request-side sentinel: an engine that asks errors.Is(err, ErrMalformed)
// must never answer a client 400 for something its upstream did.
type upstreamError struct {
	msg   string
	cause error // the request-side sentinel for the same rule, for tests
}

func (e *upstreamError) Error() string { return e.msg }

// Is makes every upstream syntax error match ErrUpstreamMalformed.
func (e *upstreamError) Is(target error) bool { return target == ErrUpstreamMalformed }

// ErrIncomplete means the buffer does not hold a complete head yet and is
// still under the limit: the caller should wait for more bytes. It is not a
// verdict and StatusOf maps it to 0.
var ErrIncomplete = errors.New("incomplete head")

// Limits. A head that does not end within the configured limit costs the
// sender a 431 (RFC 6585 §5) instead of costing the proxy memory.
var (
	// ErrHeadTooLarge: no complete head within limit bytes. → 431
	ErrHeadTooLarge = errors.New("request head too large")
	// ErrTooManyHeaders: more than MaxHeaders header fields. → 431
	ErrTooManyHeaders = errors.New("too many header fields")
)

// ErrMalformed is the generic 400 for a head that is not valid HTTP/1.1
// syntax (RFC 9112). Every more specific syntax error below matches it
// through errors.Is.
var ErrMalformed = errors.New("malformed request head")

// Specific syntax errors; all match ErrMalformed and map to 400.
var (
	// ErrBadRequestLine: the request line is not "method SP target SP version" (RFC 9112 §3).
	ErrBadRequestLine error = &syntaxError{"malformed request line"}
	// ErrBadMethod: the method is not a token (RFC 9110 §9.1).
	ErrBadMethod error = &syntaxError{"malformed method"}
	// ErrBadTarget: the target is not origin-form (RFC 9112 §3.2.1) or holds bytes outside visible ASCII.
	ErrBadTarget error = &syntaxError{"malformed request target"}
	// ErrBadVersion: the version is not "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3).
	ErrBadVersion error = &syntaxError{"malformed HTTP version"}
	// ErrBareLF: a line ended in LF without CR. RFC 9112 §2.2 lets a recipient
	// accept bare LF, but another hop that does not is the classic way to
	// smuggle a header past one parser and into the next; sluice refuses.
	ErrBareLF error = &syntaxError{"line not terminated by CRLF"}
	// ErrObsFold: a header line began with SP or HTAB (obsolete line folding,
	// RFC 9112 §5.2: a server MUST reject it or unfold it; sluice rejects).
	ErrObsFold error = &syntaxError{"obsolete line folding"}
	// ErrSpaceBeforeColon: whitespace between a field name and the colon.
	// RFC 9112 §5.1: a server MUST reject it with 400, because proxies that
	// strip it and proxies that don't disagree on the header's name.
	ErrSpaceBeforeColon error = &syntaxError{"whitespace before colon in header field"}
	// ErrNoColon: a header line without a colon.
	ErrNoColon error = &syntaxError{"header line without colon"}
	// ErrBadHeaderName: an empty field name or one with a non-token byte (RFC 9110 §5.1).
	ErrBadHeaderName error = &syntaxError{"malformed header field name"}
	// ErrBadHeaderValue: a field value holding CR, LF, NUL or another control
	// byte other than HTAB (RFC 9110 §5.5: a recipient MUST reject or replace
	// them; rejecting means nothing downstream ever sees them).
	ErrBadHeaderValue error = &syntaxError{"control character in header field value"}
	// ErrControlChar: a control byte in a line that has not ended yet. Found
	// early so that, say, a TLS ClientHello sent to a plaintext port is
	// refused at once instead of after a timeout.
	ErrControlChar error = &syntaxError{"control character in head"}
	// ErrBadHost: a Host value with bytes not allowed in uri-host [":" port] (RFC 3986 §3.2.2).
	ErrBadHost error = &syntaxError{"malformed Host header"}
	// ErrBadContentLength: Content-Length not a plain decimal, or two different ones (RFC 9112 §6.3 item 5).
	ErrBadContentLength error = &syntaxError{"malformed Content-Length"}
	// ErrBadFraming: Transfer-Encoding together with Content-Length, in
	// HTTP/1.0, or without chunked as the final coding. RFC 9112 §6.1 and §6.3:
	// each is a request-smuggling shape and the server MUST (or MAY) reject.
	ErrBadFraming error = &syntaxError{"ambiguous message framing"}
)

// ErrHTTPVersion: a major version other than 1 in an HTTP/1 request line. → 505
var ErrHTTPVersion = errors.New("HTTP version not supported")

// Host, RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request with
// no Host and to any request with more than one.
var (
	// ErrNoHost: no Host header (or an empty one, which gives nothing to route on). → 400
	ErrNoHost = errors.New("missing Host header")
	// ErrDuplicateHost: more than one Host header. Two hops that pick different
	// ones route the same request to different places. → 400
	ErrDuplicateHost = errors.New("duplicate Host header")
)

// Verdicts of CheckUpgrade, RFC 6455 §4.2.1.
var (
	// ErrNotUpgrade: no Upgrade header at all, a plain HTTP request. The
	// engine does not serve plain HTTP; 426 tells the client what would work. → 426
	ErrNotUpgrade = errors.New("this endpoint only accepts WebSocket upgrades")
	// ErrUpgradeHTTP10: the handshake is HTTP/1.0; RFC 6455 §4.1 needs 1.1 or later. → 400
	ErrUpgradeHTTP10 = errors.New("websocket handshake needs HTTP/1.1")
	// ErrMethod: the handshake is not a GET (RFC 6455 §4.1 item 2). → 400
	ErrMethod = errors.New("websocket handshake must use GET")
	// ErrUpgradeNotWebSocket: an Upgrade header without the websocket token,
	// e.g. h2c. Only websocket is ever tunnelled. → 400
	ErrUpgradeNotWebSocket = errors.New("upgrade to a protocol other than websocket")
	// ErrConnectionNotUpgrade: no "upgrade" token in any Connection header. → 400
	ErrConnectionNotUpgrade = errors.New("no upgrade token in the Connection header")
	// ErrBadKey: Sec-WebSocket-Key missing, repeated, or not the base64 of 16 bytes. → 400
	ErrBadKey = errors.New("invalid Sec-WebSocket-Key")
	// ErrVersion: Sec-WebSocket-Version missing, repeated, or not 13. → 426
	// with "Sec-WebSocket-Version: 13" (RFC 6455 §4.2.2), so a client that
	// speaks an old draft learns the version to retry with.
	ErrVersion = errors.New("unsupported Sec-WebSocket-Version")
	// ErrRequestBody: the handshake declares a body (Content-Length other than 0,
	// or any Transfer-Encoding). Once the tunnel opens, bytes after the head
	// are frames; a body would be read as frames by one side and as HTTP by
	// the other: request smuggling. → 400
	ErrRequestBody = errors.New("websocket handshake must not carry a body")
)

// Admission verdicts: the engine's guard rules (package guard) refused the
// client before any upstream was dialed. Each message names the rule, so
// the client, the access log and the refusal counters agree on why.
var (
	// ErrAccessDenied: the client address is denied by an allow/deny list
	// (nginx: access forbidden by rule). → 403
	ErrAccessDenied = errors.New("access denied by allow/deny rule")
	// ErrOriginDenied: the Origin header is not allowed for this location,
	// the defence against cross-site WebSocket hijacking (RFC 6455 §10.2). → 403
	ErrOriginDenied = errors.New("origin not allowed")
	// ErrOriginMissing: no Origin header where the location requires one. → 403
	ErrOriginMissing = errors.New("origin header required")
	// ErrRateLimited: the client is over limit_req. → 429 (RFC 6585 §4),
	// sent with Retry-After; limit_req_status may make it 503.
	ErrRateLimited = errors.New("too many handshakes: limit_req")
	// ErrConnLimited: the client holds limit_conn connections already. → 503
	// as nginx's default; limit_conn_status may make it 429.
	ErrConnLimited = errors.New("too many connections from this address: limit_conn")
	// ErrOverCapacity: the process is at max_connections. → 503
	ErrOverCapacity = errors.New("server at max_connections")
)

// Upstream-side verdicts; each maps to 502. Never a tunnel without a
// verified 101.
var (
	// ErrUpstreamMalformed: the upstream's response head is not valid HTTP/1.1.
	// The specific syntax errors ParseResponse returns all match it.
	ErrUpstreamMalformed = errors.New("malformed upstream response")
	// ErrUpstreamTooLarge: no complete response head within the limit, or too many fields.
	ErrUpstreamTooLarge = errors.New("upstream response head too large")
	// ErrUpstreamStatus: the upstream did not answer 101.
	ErrUpstreamStatus = errors.New("upstream did not switch protocols")
	// ErrUpstreamUpgrade: the 101 does not upgrade to websocket, and only websocket.
	ErrUpstreamUpgrade = errors.New("upstream upgraded to a protocol other than websocket")
	// ErrUpstreamConnection: the 101 lacks "Connection: upgrade".
	ErrUpstreamConnection = errors.New("upstream response lacks Connection: upgrade")
	// ErrUpstreamAccept: Sec-WebSocket-Accept missing, repeated or wrong for the key.
	ErrUpstreamAccept = errors.New("upstream sent a wrong Sec-WebSocket-Accept")
)

// upstreamSyntax holds, for each request-side syntax sentinel, the prebuilt
// upstream twin that ParseResponse returns, so translating costs no allocation.
var upstreamSyntax = func() []*upstreamError {
	var out []*upstreamError
	for _, e := range []error{
		ErrBadRequestLine, ErrBadMethod, ErrBadTarget, ErrBadVersion, ErrBareLF,
		ErrObsFold, ErrSpaceBeforeColon, ErrNoColon, ErrBadHeaderName,
		ErrBadHeaderValue, ErrControlChar, ErrBadHost, ErrBadContentLength, ErrBadFraming,
	} {
		out = append(out, &upstreamError{"malformed upstream response: " + e.Error(), e})
	}
	return out
}()

// errBadStatusLine is ParseResponse's error for a status line it cannot read.
var errBadStatusLine = &upstreamError{"malformed upstream response: bad status line", ErrBadRequestLine}

// upstreamErr translates an error from the shared head scanner into what
// ParseResponse reports.
func upstreamErr(err error) error {
	switch err {
	case nil, ErrIncomplete:
		return err
	case ErrHeadTooLarge, ErrTooManyHeaders:
		return ErrUpstreamTooLarge
	}
	for _, u := range upstreamSyntax {
		if u.cause == err {
			return u
		}
	}
	return ErrUpstreamMalformed
}

// statusTable is the one place a verdict becomes a status code. Order
// matters: errors.Is walks it top to bottom and the specific entries sit
// before ErrMalformed, which matches every syntax error.
var statusTable = [...]struct {
	err    error
	status int
}{
	{ErrIncomplete, 0},
	{ErrUpstreamMalformed, 502},
	{ErrUpstreamTooLarge, 502},
	{ErrUpstreamStatus, 502},
	{ErrUpstreamUpgrade, 502},
	{ErrUpstreamConnection, 502},
	{ErrUpstreamAccept, 502},
	{ErrHeadTooLarge, 431},
	{ErrTooManyHeaders, 431},
	{ErrHTTPVersion, 505},
	{ErrNotUpgrade, 426},
	{ErrVersion, 426},
	{ErrNoHost, 400},
	{ErrDuplicateHost, 400},
	{ErrUpgradeHTTP10, 400},
	{ErrMethod, 400},
	{ErrUpgradeNotWebSocket, 400},
	{ErrConnectionNotUpgrade, 400},
	{ErrBadKey, 400},
	{ErrRequestBody, 400},
	{ErrProxyHeader, 400},
	{ErrAccessDenied, 403},
	{ErrOriginDenied, 403},
	{ErrOriginMissing, 403},
	{ErrBadPath, 403},
	{ErrRateLimited, 429},
	{ErrConnLimited, 503},
	{ErrOverCapacity, 503},
	{ErrMalformed, 400},
}

// StatusOf maps an error from this package to the HTTP status the client
// gets: 0 for nil and ErrIncomplete (nothing to send), 500 for an error this
// package does not know (a bug, not the peer's fault). Wrapped errors are
// recognised through errors.Is.
func StatusOf(err error) int {
	if err == nil {
		return 0
	}
	for _, row := range statusTable {
		if err == row.err {
			return row.status
		}
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			return row.status
		}
	}
	return 500
}
