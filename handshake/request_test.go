package handshake

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// rfcKey is the sample nonce of RFC 6455 §1.3.
const rfcKey = "dGhlIHNhbXBsZSBub25jZQ=="

// head joins lines with CRLF and ends the head with an empty line.
func head(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

// wsLines is a minimal valid upgrade request.
var wsLines = []string{
	"GET /chat HTTP/1.1",
	"Host: example.com",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: " + rfcKey,
	"Sec-WebSocket-Version: 13",
}

// ws is the valid request with extra header lines appended.
func ws(extra ...string) string { return head(append(append([]string(nil), wsLines...), extra...)...) }

// wsEdit is the valid request with every line starting with prefix replaced
// by with (or removed if with is empty), then extra lines appended.
func wsEdit(prefix, with string, extra ...string) string {
	var out []string
	for _, l := range wsLines {
		if strings.HasPrefix(l, prefix) {
			if with != "" {
				out = append(out, with)
			}
			continue
		}
		out = append(out, l)
	}
	return head(append(out, extra...)...)
}

func manyHeaders(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, "X-Filler: v")
	}
	return out
}

type requestCase struct {
	name     string
	raw      string
	limit    int   // 0: 8192
	parseErr error // from ParseRequest
	checkErr error // from CheckUpgrade, when parse succeeded
	status   int   // StatusOf(the error the client gets)
}

func requestCases() []requestCase {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	valid := ws()
	return []requestCase{
		// Accepted.
		{name: "minimal valid", raw: valid},
		{name: "browser head", raw: browserHead},
		{name: "lower-case names, WebSocket token", raw: head("GET / HTTP/1.1", "host: a", "upgrade: WebSocket", "connection: upgrade", "sec-websocket-key: "+rfcKey, "sec-websocket-version: 13")},
		{name: "Connection keep-alive, Upgrade", raw: wsEdit("Connection:", "Connection: keep-alive, Upgrade")},
		{name: "Connection over two headers", raw: wsEdit("Connection:", "Connection: keep-alive", "Connection: Upgrade")},
		{name: "Connection list with empty elements", raw: wsEdit("Connection:", "Connection: ,, upgrade ,")},
		{name: "Upgrade websocket/13 (version suffix ignored)", raw: wsEdit("Upgrade:", "Upgrade: websocket/13")},
		{name: "Upgrade websocket, h2c (only websocket goes upstream)", raw: wsEdit("Upgrade:", "Upgrade: websocket, h2c")},
		{name: "HTTP/1.2 is 1.x", raw: wsEdit("GET", "GET / HTTP/1.2")},
		{name: "Content-Length: 0", raw: ws("Content-Length: 0")},
		{name: "obs-text in value", raw: ws("User-Agent: caf\xc3\xa9")},
		{name: "tab in value", raw: ws("X-A: a\tb")},
		{name: "empty value", raw: ws("X-Empty:")},
		{name: "Host with port and IPv6", raw: wsEdit("Host:", "Host: [::1]:8080")},
		{name: "exactly MaxHeaders fields", raw: ws(manyHeaders(MaxHeaders - 5)...)},
		{name: "head exactly at limit", raw: valid, limit: len(valid)},

		// Waiting for more.
		{name: "empty buffer", raw: "", parseErr: ErrIncomplete},
		{name: "partial request line", raw: "GET / HT", parseErr: ErrIncomplete},
		{name: "no final empty line", raw: strings.TrimSuffix(valid, "\r\n"), parseErr: ErrIncomplete},
		{name: "CR of the final CRLF only", raw: strings.TrimSuffix(valid, "\n"), parseErr: ErrIncomplete},

		// Limits.
		{name: "head one byte over limit", raw: valid, limit: len(valid) - 1, parseErr: ErrHeadTooLarge, status: 431},
		{name: "head over small limit", raw: valid, limit: 64, parseErr: ErrHeadTooLarge, status: 431},
		{name: "endless header line", raw: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 9000), parseErr: ErrHeadTooLarge, status: 431},
		{name: "too many headers", raw: ws(manyHeaders(MaxHeaders - 4)...), parseErr: ErrTooManyHeaders, status: 431},

		// Request line.
		{name: "HTTP/2.0 in an HTTP/1 line", raw: wsEdit("GET", "GET / HTTP/2.0"), parseErr: ErrHTTPVersion, status: 505},
		{name: "HTTP/2 prior-knowledge preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", parseErr: ErrHTTPVersion, status: 505},
		{name: "HTTP/0.9 style line", raw: "GET /\r\n\r\n", parseErr: ErrBadRequestLine, status: 400},
		{name: "version HTTP/1.10", raw: wsEdit("GET", "GET / HTTP/1.10"), parseErr: ErrBadVersion, status: 400},
		{name: "version lower case", raw: wsEdit("GET", "GET / http/1.1"), parseErr: ErrBadVersion, status: 400},
		{name: "trailing space after version", raw: wsEdit("GET", "GET / HTTP/1.1 "), parseErr: ErrBadVersion, status: 400},
		{name: "double space before target", raw: wsEdit("GET", "GET  / HTTP/1.1"), parseErr: ErrBadTarget, status: 400},
		{name: "absolute-form target", raw: wsEdit("GET", "GET http://example.com/ HTTP/1.1"), parseErr: ErrBadTarget, status: 400},
		{name: "asterisk-form target", raw: wsEdit("GET", "GET * HTTP/1.1"), parseErr: ErrBadTarget, status: 400},
		{name: "NUL in target", raw: wsEdit("GET", "GET /a\x00b HTTP/1.1"), parseErr: ErrBadTarget, status: 400},
		{name: "fragment in target", raw: wsEdit("GET", "GET /a#b HTTP/1.1"), parseErr: ErrBadTarget, status: 400},
		{name: "bad method token", raw: wsEdit("GET", "G(T / HTTP/1.1"), parseErr: ErrBadMethod, status: 400},
		{name: "leading empty line", raw: "\r\n" + valid, parseErr: ErrBadRequestLine, status: 400},
		{name: "TLS ClientHello on plaintext port", raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", parseErr: ErrControlChar, status: 400},

		// Line endings and header syntax.
		{name: "bare LF line ending", raw: strings.Replace(valid, "Host: example.com\r\n", "Host: example.com\n", 1), parseErr: ErrBareLF, status: 400},
		{name: "bare LF terminator", raw: "GET / HTTP/1.1\nHost: a\n\n", parseErr: ErrBareLF, status: 400},
		{name: "bare CR in value", raw: ws("X-A: a\rb"), parseErr: ErrBadHeaderValue, status: 400},
		{name: "NUL in value", raw: ws("X-A: a\x00b"), parseErr: ErrBadHeaderValue, status: 400},
		{name: "DEL in value", raw: ws("X-A: a\x7fb"), parseErr: ErrBadHeaderValue, status: 400},
		{name: "obs-fold", raw: ws("X-A: a", " continued"), parseErr: ErrObsFold, status: 400},
		{name: "obs-fold with tab", raw: ws("X-A: a", "\tcontinued"), parseErr: ErrObsFold, status: 400},
		{name: "space before colon", raw: ws("Host : evil.com"), parseErr: ErrSpaceBeforeColon, status: 400},
		{name: "tab before colon", raw: ws("X-A\t: b"), parseErr: ErrSpaceBeforeColon, status: 400},
		{name: "header without colon", raw: ws("X-A b"), parseErr: ErrNoColon, status: 400},
		{name: "empty header name", raw: ws(": b"), parseErr: ErrBadHeaderName, status: 400},
		{name: "bad char in name", raw: ws("X(A): b"), parseErr: ErrBadHeaderName, status: 400},
		{name: "error found before head ends", raw: "GET / HTTP/1.1\r\nBad Header: x\r\n", parseErr: ErrSpaceBeforeColon, status: 400},
		{name: "NUL streamed before head ends", raw: "GET / HTTP/1.1\r\nX: a\x00", parseErr: ErrControlChar, status: 400},

		// Host.
		{name: "duplicated Host", raw: ws("Host: evil.com"), parseErr: ErrDuplicateHost, status: 400},
		{name: "missing Host", raw: wsEdit("Host:", ""), parseErr: ErrNoHost, status: 400},
		{name: "empty Host", raw: wsEdit("Host:", "Host:"), checkErr: ErrNoHost, status: 400},
		{name: "Host with space", raw: wsEdit("Host:", "Host: a b"), parseErr: ErrBadHost, status: 400},
		{name: "Host with slash", raw: wsEdit("Host:", "Host: a/b"), parseErr: ErrBadHost, status: 400},

		// Framing: smuggling shapes.
		{name: "Content-Length: 5", raw: ws("Content-Length: 5"), checkErr: ErrRequestBody, status: 400},
		{name: "Transfer-Encoding: chunked", raw: ws("Transfer-Encoding: chunked"), checkErr: ErrRequestBody, status: 400},
		{name: "TE and CL together", raw: ws("Transfer-Encoding: chunked", "Content-Length: 0"), parseErr: ErrBadFraming, status: 400},
		{name: "TE without final chunked", raw: ws("Transfer-Encoding: chunked, gzip"), parseErr: ErrBadFraming, status: 400},
		{name: "Content-Length not a number", raw: ws("Content-Length: abc"), parseErr: ErrBadContentLength, status: 400},
		{name: "Content-Length negative", raw: ws("Content-Length: -1"), parseErr: ErrBadContentLength, status: 400},
		{name: "Content-Length list", raw: ws("Content-Length: 0, 0"), parseErr: ErrBadContentLength, status: 400},
		{name: "two different Content-Lengths", raw: ws("Content-Length: 0", "Content-Length: 1"), parseErr: ErrBadContentLength, status: 400},
		{name: "Content-Length overflow", raw: ws("Content-Length: 99999999999999999999"), parseErr: ErrBadContentLength, status: 400},

		// Upgrade verdicts.
		{name: "h2c upgrade", raw: head("GET / HTTP/1.1", "Host: a", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"), checkErr: ErrUpgradeNotWebSocket, status: 400},
		{name: "Upgrade websockets", raw: wsEdit("Upgrade:", "Upgrade: websockets"), checkErr: ErrUpgradeNotWebSocket, status: 400},
		{name: "empty Upgrade", raw: wsEdit("Upgrade:", "Upgrade:"), checkErr: ErrUpgradeNotWebSocket, status: 400},
		{name: "no Upgrade: plain HTTP", raw: head("GET / HTTP/1.1", "Host: a"), checkErr: ErrNotUpgrade, status: 426},
		{name: "plain POST", raw: head("POST /form HTTP/1.1", "Host: a", "Content-Length: 0"), checkErr: ErrNotUpgrade, status: 426},
		{name: "HTTP/1.0 upgrade", raw: wsEdit("GET", "GET / HTTP/1.0"), checkErr: ErrUpgradeHTTP10, status: 400},
		{name: "HTTP/1.0 without Host", raw: head("GET / HTTP/1.0", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: "+rfcKey, "Sec-WebSocket-Version: 13"), checkErr: ErrUpgradeHTTP10, status: 400},
		{name: "POST upgrade", raw: wsEdit("GET", "POST / HTTP/1.1"), checkErr: ErrMethod, status: 400},
		{name: "lower-case get", raw: wsEdit("GET", "get / HTTP/1.1"), checkErr: ErrMethod, status: 400},
		{name: "no Connection", raw: wsEdit("Connection:", ""), checkErr: ErrConnectionNotUpgrade, status: 400},
		{name: "Connection keep-alive only", raw: wsEdit("Connection:", "Connection: keep-alive"), checkErr: ErrConnectionNotUpgrade, status: 400},
		{name: "Connection upgrades (not a token match)", raw: wsEdit("Connection:", "Connection: upgrades"), checkErr: ErrConnectionNotUpgrade, status: 400},

		// Key.
		{name: "missing key", raw: wsEdit("Sec-WebSocket-Key:", ""), checkErr: ErrBadKey, status: 400},
		{name: "duplicated key", raw: ws("Sec-WebSocket-Key: " + rfcKey), checkErr: ErrBadKey, status: 400},
		{name: "key of 15 bytes", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: "+b64(15)), checkErr: ErrBadKey, status: 400},
		{name: "key of 17 bytes", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: "+b64(17)), checkErr: ErrBadKey, status: 400},
		{name: "key not base64", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), checkErr: ErrBadKey, status: 400},
		{name: "key non-canonical base64", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="), checkErr: ErrBadKey, status: 400},
		{name: "key without padding", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), checkErr: ErrBadKey, status: 400},
		{name: "empty key", raw: wsEdit("Sec-WebSocket-Key:", "Sec-WebSocket-Key:"), checkErr: ErrBadKey, status: 400},

		// Version.
		{name: "missing version", raw: wsEdit("Sec-WebSocket-Version:", ""), checkErr: ErrVersion, status: 426},
		{name: "version 8", raw: wsEdit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"), checkErr: ErrVersion, status: 426},
		{name: "version list", raw: wsEdit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 13, 8"), checkErr: ErrVersion, status: 426},
		{name: "duplicated version", raw: ws("Sec-WebSocket-Version: 13"), checkErr: ErrVersion, status: 426},
	}
}

func TestRequestTable(t *testing.T) {
	var req Request
	for _, tc := range requestCases() {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = 8192
			}
			err := ParseRequest([]byte(tc.raw), limit, &req)
			if !errors.Is(err, tc.parseErr) || (tc.parseErr == nil && err != nil) {
				t.Fatalf("ParseRequest = %v, want %v", err, tc.parseErr)
			}
			if err == nil {
				if req.HeadLen != len(tc.raw) {
					t.Errorf("HeadLen = %d, want %d", req.HeadLen, len(tc.raw))
				}
				err = CheckUpgrade(&req)
				if err != tc.checkErr {
					t.Fatalf("CheckUpgrade = %v, want %v", err, tc.checkErr)
				}
			} else if tc.checkErr != nil {
				t.Fatalf("bad case: parse error and check error both set")
			}
			if got := StatusOf(err); got != tc.status {
				t.Errorf("StatusOf(%v) = %d, want %d", err, got, tc.status)
			}
		})
	}
}

// TestRequestSyntaxErrorsAreMalformed: every 400 from ParseRequest other
// than the Host rules matches ErrMalformed, so a caller needs one check.
func TestRequestSyntaxErrorsAreMalformed(t *testing.T) {
	var req Request
	for _, tc := range requestCases() {
		err := ParseRequest([]byte(tc.raw), 8192, &req)
		if StatusOf(err) != 400 || err == ErrNoHost || err == ErrDuplicateHost {
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v does not match ErrMalformed", tc.name, err)
		}
	}
}

func TestRequestFields(t *testing.T) {
	raw := "GET /chat/room?id=7&t=x HTTP/1.1\r\n" +
		"Host:   example.com:8080  \r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
	// Bytes after the head (an early frame) are not part of it.
	buf := []byte(raw + "\x81\x85frame")
	var req Request
	if err := ParseRequest(buf, 8192, &req); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Method", string(req.Method), "GET"},
		{"Target", string(req.Target), "/chat/room?id=7&t=x"},
		{"Path", string(req.Path), "/chat/room"},
		{"Query", string(req.Query), "id=7&t=x"},
		{"Host", string(req.Host), "example.com:8080"},
		{"Upgrade", string(req.Upgrade), "websocket"},
		{"Key", string(req.Key), rfcKey},
		{"Version", string(req.Version), "13"},
		{"Headers[0].Name", string(req.Headers[0].Name), "Host"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if req.HeadLen != len(raw) || len(req.Headers) != 5 || req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.ContentLength != -1 {
		t.Errorf("HeadLen=%d headers=%d proto=%d.%d cl=%d", req.HeadLen, len(req.Headers), req.ProtoMajor, req.ProtoMinor, req.ContentLength)
	}

	// Reuse: a second, smaller parse leaves nothing of the first behind.
	if err := ParseRequest([]byte(head("GET /x HTTP/1.1", "Host: b")), 8192, &req); err != nil {
		t.Fatal(err)
	}
	if req.Query != nil || req.Upgrade != nil || req.Key != nil || req.Version != nil || len(req.Headers) != 1 {
		t.Errorf("stale fields after reuse: %+v", req.Headers)
	}
	if err := CheckUpgrade(&req); err != ErrNotUpgrade {
		t.Errorf("CheckUpgrade after reuse = %v", err)
	}
	// An empty query is present but empty; no '?' means nil.
	if err := ParseRequest([]byte(head("GET /x? HTTP/1.1", "Host: b")), 8192, &req); err != nil || req.Query == nil || len(req.Query) != 0 {
		t.Errorf("empty query: err=%v query=%q", err, req.Query)
	}
}

// TestRequestIncrementally feeds a valid head one byte at a time: every
// prefix is ErrIncomplete, never a false syntax error.
func TestRequestIncrementally(t *testing.T) {
	var req Request
	raw := []byte(browserHead)
	for i := 0; i < len(raw); i++ {
		if err := ParseRequest(raw[:i], 8192, &req); err != ErrIncomplete {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	if err := ParseRequest(raw, 8192, &req); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultLimit(t *testing.T) {
	var req Request
	big := ws("X-Big: " + strings.Repeat("a", DefaultRequestLimit))
	if err := ParseRequest([]byte(big), 0, &req); err != ErrHeadTooLarge {
		t.Errorf("limit 0: %v, want ErrHeadTooLarge", err)
	}
	if err := ParseRequest([]byte(ws()), -1, &req); err != nil {
		t.Errorf("limit -1: %v", err)
	}
}
