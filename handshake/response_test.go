package handshake

import (
	"errors"
	"strings"
	"testing"
)

const rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

func resp101(extra ...string) string {
	return head(append([]string{
		"HTTP/1.1 101 Switching Protocols",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Accept: " + rfcAccept,
	}, extra...)...)
}

func TestResponseTable(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		limit     int
		parseErr  error
		verifyErr error
		bodyLen   int64 // checked when parse succeeds
		status    int
	}{
		{name: "valid 101", raw: resp101()},
		{name: "valid 101, typical upstream", raw: upstream101},
		{name: "101 with mixed case tokens", raw: head("HTTP/1.1 101 Switching Protocols", "upgrade: WebSocket", "connection: keep-alive, UPGRADE", "sec-websocket-accept: "+rfcAccept)},
		{name: "101 without reason", raw: head("HTTP/1.1 101", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept)},
		{name: "101 with empty reason", raw: head("HTTP/1.1 101 ", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept)},
		{name: "wrong accept", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="), verifyErr: ErrUpstreamAccept, status: 502},
		{name: "accept in other case", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+strings.ToLower(rfcAccept)), verifyErr: ErrUpstreamAccept, status: 502},
		{name: "missing accept", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"), verifyErr: ErrUpstreamAccept, status: 502},
		{name: "duplicated accept", raw: resp101("Sec-WebSocket-Accept: " + rfcAccept), verifyErr: ErrUpstreamAccept, status: 502},
		{name: "missing upgrade", raw: head("HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept), verifyErr: ErrUpstreamUpgrade, status: 502},
		{name: "upgrade to h2c", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: h2c", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept), verifyErr: ErrUpstreamUpgrade, status: 502},
		{name: "upgrade to websocket and h2c", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket, h2c", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept), verifyErr: ErrUpstreamUpgrade, status: 502},
		{name: "missing connection", raw: head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Sec-WebSocket-Accept: "+rfcAccept), verifyErr: ErrUpstreamConnection, status: 502},
		{name: "101 in HTTP/1.0", raw: head("HTTP/1.0 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: "+rfcAccept), verifyErr: ErrUpstreamStatus, status: 502},
		{name: "200 with Content-Length", raw: head("HTTP/1.1 200 OK", "Content-Length: 12"), verifyErr: ErrUpstreamStatus, bodyLen: 12, status: 502},
		{name: "426 from upstream", raw: head("HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13", "Content-Length: 0"), verifyErr: ErrUpstreamStatus, bodyLen: 0, status: 502},
		{name: "chunked 403", raw: head("HTTP/1.1 403 Forbidden", "Transfer-Encoding: chunked"), verifyErr: ErrUpstreamStatus, bodyLen: -1, status: 502},
		{name: "gzip-only transfer coding", raw: head("HTTP/1.1 500 Internal Server Error", "Transfer-Encoding: gzip"), verifyErr: ErrUpstreamStatus, bodyLen: -1, status: 502},
		{name: "no length: until close", raw: head("HTTP/1.1 404 Not Found", "Content-Type: text/html"), verifyErr: ErrUpstreamStatus, bodyLen: -1, status: 502},
		{name: "204 has no body", raw: head("HTTP/1.1 204 No Content"), verifyErr: ErrUpstreamStatus, bodyLen: 0, status: 502},
		{name: "304 has no body even with length", raw: head("HTTP/1.1 304 Not Modified", "Content-Length: 50"), verifyErr: ErrUpstreamStatus, bodyLen: 0, status: 502},

		{name: "incomplete", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", parseErr: ErrIncomplete},
		{name: "too large", raw: resp101("X-Big: " + strings.Repeat("a", 200)), limit: 100, parseErr: ErrUpstreamTooLarge, status: 502},
		{name: "too many headers", raw: resp101(manyHeaders(MaxHeaders)...), parseErr: ErrUpstreamTooLarge, status: 502},
		{name: "not HTTP", raw: "SSH-2.0-OpenSSH_9.6\r\n\r\n", parseErr: ErrUpstreamMalformed, status: 502},
		{name: "HTTP/2.0 status line", raw: head("HTTP/2.0 101 Switching Protocols"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "status 99", raw: head("HTTP/1.1 099 Odd"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "status 600", raw: head("HTTP/1.1 600 Odd"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "status not digits", raw: head("HTTP/1.1 1O1 Switching"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "control char in reason", raw: head("HTTP/1.1 200 O\x00K"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "bare LF", raw: "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n", parseErr: ErrUpstreamMalformed, status: 502},
		{name: "obs-fold", raw: resp101("X-A: a", " b"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "CR in value", raw: resp101("X-A: a\rb"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "TE and CL", raw: head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Length: 3"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "TE in HTTP/1.0", raw: head("HTTP/1.0 200 OK", "Transfer-Encoding: chunked"), parseErr: ErrUpstreamMalformed, status: 502},
		{name: "two Content-Lengths", raw: head("HTTP/1.1 200 OK", "Content-Length: 3", "Content-Length: 4"), parseErr: ErrUpstreamMalformed, status: 502},
	}
	var resp Response
	key := []byte(rfcKey)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = 16384
			}
			err := ParseResponse([]byte(tc.raw), limit, &resp)
			if tc.parseErr == nil && err != nil || !errors.Is(err, tc.parseErr) {
				t.Fatalf("ParseResponse = %v, want %v", err, tc.parseErr)
			}
			if err == nil {
				if resp.HeadLen != len(tc.raw) {
					t.Errorf("HeadLen = %d, want %d", resp.HeadLen, len(tc.raw))
				}
				if got := BodyLength(&resp); got != tc.bodyLen {
					t.Errorf("BodyLength = %d, want %d", got, tc.bodyLen)
				}
				err = VerifyUpgrade(&resp, key)
				if err != tc.verifyErr {
					t.Fatalf("VerifyUpgrade = %v, want %v", err, tc.verifyErr)
				}
			}
			if errors.Is(err, ErrMalformed) {
				t.Errorf("upstream error %v matches the client-side ErrMalformed", err)
			}
			if got := StatusOf(err); got != tc.status {
				t.Errorf("StatusOf(%v) = %d, want %d", err, got, tc.status)
			}
		})
	}
}

func TestResponseFields(t *testing.T) {
	var resp Response
	raw := upstream101 + "\x81\x05hello" // a frame right behind the head
	if err := ParseResponse([]byte(raw), 0, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 || string(resp.Reason) != "Switching Protocols" || string(resp.Upgrade) != "websocket" ||
		string(resp.Connection) != "Upgrade" || string(resp.Accept) != rfcAccept || resp.ContentLength != -1 ||
		resp.HeadLen != len(upstream101) || len(resp.Headers) != 5 || resp.ProtoMinor != 1 {
		t.Errorf("fields: %+v", resp)
	}
	// Upstream syntax errors carry the rule they broke, for logs.
	err := ParseResponse([]byte("HTTP/1.1 200 OK\nX: y\n\n"), 0, &resp)
	if u, ok := err.(*upstreamError); !ok || u.cause != ErrBareLF {
		t.Errorf("bare LF: %#v", err)
	}
}

func TestAppendRelayedResponse(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{
			name: "403 with length: hop-by-hop and Connection-named dropped",
			in: head("HTTP/1.0 403 Forbidden",
				"Content-Type: text/plain",
				"Connection: keep-alive, X-Internal",
				"Keep-Alive: timeout=5",
				"X-Internal: secret",
				"Upgrade: websocket",
				"Proxy-Authenticate: Basic",
				"Set-Cookie: a=b",
				"Content-Length: 9"),
			want: head("HTTP/1.1 403 Forbidden",
				"Content-Type: text/plain",
				"Set-Cookie: a=b",
				"Content-Length: 9",
				"Connection: close"),
		},
		{
			name: "chunked: Transfer-Encoding kept even when Connection names it",
			in: head("HTTP/1.1 500 Internal Server Error",
				"Transfer-Encoding: chunked",
				"Connection: Transfer-Encoding",
				"Trailer: X-Checksum",
				"TE: trailers"),
			want: head("HTTP/1.1 500 Internal Server Error",
				"Transfer-Encoding: chunked",
				"Connection: close"),
		},
		{
			name: "empty reason, name case kept, separator normalised",
			in:   head("HTTP/1.1 404", "x-request-id:abc  ", "Sec-WebSocket-Version: 13"),
			want: head("HTTP/1.1 404 ", "x-request-id: abc", "Sec-WebSocket-Version: 13", "Connection: close"),
		},
	}
	var resp, again Response
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ParseResponse([]byte(tc.in), 0, &resp); err != nil {
				t.Fatal(err)
			}
			got := string(AppendRelayedResponse(nil, &resp))
			if got != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tc.want)
			}
			if err := ParseResponse([]byte(got), 0, &again); err != nil || again.HeadLen != len(got) {
				t.Errorf("relayed head does not re-parse: %v", err)
			}
		})
	}
}

func TestComputeAccept(t *testing.T) {
	// RFC 6455 §1.3.
	if got := string(ComputeAccept(nil, []byte(rfcKey))); got != rfcAccept {
		t.Errorf("ComputeAccept = %q, want %q", got, rfcAccept)
	}
	// Appends; long keys take the heap path and still agree with the formula.
	if got := string(ComputeAccept([]byte("x"), []byte(rfcKey))); got != "x"+rfcAccept {
		t.Errorf("append: %q", got)
	}
	long := []byte(strings.Repeat("k", 200))
	if a := ComputeAccept(nil, long); string(a) != string(computeAcceptSlow(long)) {
		t.Errorf("long key: %q", a)
	}
	// Boundary between the two paths: same answer from both for a 92-byte key.
	k92 := []byte(strings.Repeat("z", 92))
	if string(ComputeAccept(nil, k92)) != string(computeAcceptSlow(k92)) {
		t.Errorf("fixed-array path disagrees at its boundary")
	}
}
