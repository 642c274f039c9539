package handshake

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendUpstreamRequest(t *testing.T) {
	fwd := &Forward{ClientAddr: []byte("10.0.0.1"), Proto: "http"}
	tests := []struct {
		name string
		in   string
		fwd  *Forward
		want string
	}{
		{
			name: "browser request: end-to-end kept in order, hop-by-hop replaced",
			in: head("GET /chat?room=1&t=a%20b HTTP/1.1",
				"Host: example.com",
				"User-Agent: test",
				"Upgrade: websocket",
				"Connection: keep-alive, Upgrade",
				"Sec-WebSocket-Key: "+rfcKey,
				"Sec-WebSocket-Version: 13",
				"Origin: https://example.com",
				"Cookie: a=b; c=d",
				"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
				"Sec-WebSocket-Protocol: chat, superchat"),
			fwd: fwd,
			want: head("GET /chat?room=1&t=a%20b HTTP/1.1",
				"Host: example.com",
				"User-Agent: test",
				"Sec-WebSocket-Key: "+rfcKey,
				"Sec-WebSocket-Version: 13",
				"Origin: https://example.com",
				"Cookie: a=b; c=d",
				"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
				"Sec-WebSocket-Protocol: chat, superchat",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: 10.0.0.1",
				"X-Forwarded-For: 10.0.0.1",
				"X-Forwarded-Proto: http"),
		},
		{
			name: "all hop-by-hop dropped; Connection-named dropped except Host and Sec-WebSocket-*",
			in: head("GET / HTTP/1.1",
				"Host: a.example",
				"Connection: Upgrade, X-Secret, host, Sec-WebSocket-Protocol",
				"Connection: X-Other",
				"Upgrade: websocket, h2c",
				"Keep-Alive: timeout=5",
				"Proxy-Connection: keep-alive",
				"TE: trailers",
				"Trailer: X-T",
				"Proxy-Authorization: Basic Zm9vOmJhcg==",
				"Proxy-Authenticate: Basic",
				"X-Secret: s",
				"x-other: o",
				"X-Kept: k",
				"Sec-WebSocket-Key: "+rfcKey,
				"Sec-WebSocket-Version: 13",
				"Sec-WebSocket-Protocol: chat"),
			fwd: fwd,
			want: head("GET / HTTP/1.1",
				"Host: a.example",
				"X-Kept: k",
				"Sec-WebSocket-Key: "+rfcKey,
				"Sec-WebSocket-Version: 13",
				"Sec-WebSocket-Protocol: chat",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: 10.0.0.1",
				"X-Forwarded-For: 10.0.0.1",
				"X-Forwarded-Proto: http"),
		},
		{
			name: "X-Forwarded-For lines merged and appended; client's X-Real-IP and X-Forwarded-Proto dropped",
			in: head("GET / HTTP/1.1",
				"X-Forwarded-For: 1.1.1.1",
				"Host: a",
				"X-Real-IP: 6.6.6.6",
				"X-Forwarded-Proto: https",
				"x-forwarded-for: 2.2.2.2, 3.3.3.3,",
				"X-Forwarded-For:",
				"Upgrade: websocket",
				"Connection: Upgrade"),
			fwd: &Forward{ClientAddr: []byte("::1"), Proto: "https"},
			want: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: ::1",
				"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, ::1",
				"X-Forwarded-Proto: https"),
		},
		{
			name: "client naming X-Forwarded-For/X-Real-IP/X-Forwarded-Proto in Connection cannot remove the proxy's",
			in: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto",
				"Upgrade: websocket",
				"X-Forwarded-For: 9.9.9.9"),
			fwd: fwd,
			want: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: 10.0.0.1",
				"X-Forwarded-For: 10.0.0.1",
				"X-Forwarded-Proto: http"),
		},
		{
			name: "fwd.Host replaces Host in place, name case kept; separator normalised",
			in: head("GET /p HTTP/1.1",
				"X-A:   spaced value  ",
				"host: public.example",
				"Upgrade: websocket",
				"Connection: Upgrade"),
			fwd: &Forward{ClientAddr: []byte("192.0.2.1"), Proto: "http", Host: []byte("backend:8080")},
			want: head("GET /p HTTP/1.1",
				"X-A: spaced value",
				"host: backend:8080",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: 192.0.2.1",
				"X-Forwarded-For: 192.0.2.1",
				"X-Forwarded-Proto: http"),
		},
		{
			name: "hostile Forward: CR/LF in every field is never written",
			in:   head("GET / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade"),
			fwd: &Forward{
				ClientAddr: []byte("1.2.3.4\r\nX-Evil: 1"),
				Proto:      "https\r\nX-Evil: 2",
				Host:       []byte("b\r\nX-Evil: 3"),
			},
			want: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: unknown",
				"X-Forwarded-For: unknown"),
		},
		{
			name: "nil Forward",
			in:   head("GET / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade", "X-Forwarded-For: 5.5.5.5"),
			fwd:  nil,
			want: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: unknown",
				"X-Forwarded-For: 5.5.5.5, unknown"),
		},
		{
			name: "HTTP/1.2 request goes out as HTTP/1.1",
			in:   head("GET / HTTP/1.2", "Host: a"),
			fwd:  fwd,
			want: head("GET / HTTP/1.1",
				"Host: a",
				"Connection: Upgrade",
				"Upgrade: websocket",
				"X-Real-IP: 10.0.0.1",
				"X-Forwarded-For: 10.0.0.1",
				"X-Forwarded-Proto: http"),
		},
	}
	var req Request
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ParseRequest([]byte(tc.in), 8192, &req); err != nil {
				t.Fatal(err)
			}
			got := string(AppendUpstreamRequest([]byte("prefix|"), &req, tc.fwd))
			if got != "prefix|"+tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", strings.ReplaceAll(got, "\r\n", "⏎\n"), strings.ReplaceAll(tc.want, "\r\n", "⏎\n"))
			}
			checkUpstreamRequest(t, []byte(got[len("prefix|"):]))
		})
	}
}

// checkUpstreamRequest asserts the rewrite is one valid head: every line ends
// in CRLF, no CR or LF inside a line, and ParseRequest reads it back whole.
func checkUpstreamRequest(t testing.TB, out []byte) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\r\n\r\n")) {
		t.Fatalf("upstream request does not end in CRLFCRLF: %q", out)
	}
	lines := bytes.Split(out[:len(out)-4], []byte("\r\n"))
	for _, l := range lines {
		if bytes.IndexByte(l, '\r') >= 0 || bytes.IndexByte(l, '\n') >= 0 {
			t.Fatalf("bare CR/LF in upstream line %q", l)
		}
	}
	var again Request
	err := ParseRequest(out, len(out)+1, &again)
	if err == ErrTooManyHeaders && len(lines)-1 > MaxHeaders {
		// The rewrite adds up to 5 fields of its own, so a client at the
		// MaxHeaders cap yields a head over it (see TestRewriteAtHeaderCap).
		return
	}
	if err != nil {
		t.Fatalf("upstream request does not re-parse: %v\n%q", err, out)
	}
	if again.HeadLen != len(out) {
		t.Fatalf("re-parse HeadLen %d, want %d", again.HeadLen, len(out))
	}
}

// TestForwardInjection tries every control byte in every Forward field.
func TestForwardInjection(t *testing.T) {
	var req Request
	if err := ParseRequest([]byte(ws()), 8192, &req); err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 256; c++ {
		b := string(rune(c))
		if c >= 0x80 {
			b = string([]byte{byte(c)})
		}
		fwd := &Forward{ClientAddr: []byte("1.2.3.4" + b + "x"), Proto: "http" + b + "x", Host: []byte("h" + b + "x")}
		out := AppendUpstreamRequest(nil, &req, fwd)
		checkUpstreamRequest(t, out)
		if c < 0x20 || c == 0x7f {
			if bytes.Contains(out, []byte(b+"x")) {
				t.Fatalf("byte %#x written from Forward: %q", c, out)
			}
		}
	}
}

// TestUpstreamRequestKeepsHandshakeValid: what sluice sends is itself a
// valid upgrade, and a second proxy hop would forward it the same way.
func TestUpstreamRequestKeepsHandshakeValid(t *testing.T) {
	var req, again Request
	if err := ParseRequest([]byte(browserHead), 8192, &req); err != nil {
		t.Fatal(err)
	}
	out := AppendUpstreamRequest(nil, &req, &benchForward)
	if err := ParseRequest(out, 8192, &again); err != nil {
		t.Fatal(err)
	}
	if err := CheckUpgrade(&again); err != nil {
		t.Fatalf("rewritten request fails CheckUpgrade: %v", err)
	}
	if string(again.Key) != rfcKey || string(again.Target) != string(req.Target) {
		t.Errorf("key or target changed: %q %q", again.Key, again.Target)
	}
}

// TestRewriteAtHeaderCap documents that the rewrite of a request at the
// MaxHeaders cap has more than MaxHeaders fields: sluice adds Connection,
// Upgrade, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto. An upstream
// with the same cap as sluice would refuse it; the cap is the operator's to
// size (it is 100 here, against ~15 fields from real browsers).
func TestRewriteAtHeaderCap(t *testing.T) {
	var req, again Request
	if err := ParseRequest([]byte(ws(manyHeaders(MaxHeaders-5)...)), 8192, &req); err != nil {
		t.Fatal(err)
	}
	out := AppendUpstreamRequest(nil, &req, &benchForward)
	if n := bytes.Count(out, []byte("\r\n")) - 2; n != MaxHeaders+3 {
		t.Errorf("rewrite has %d fields, want %d", n, MaxHeaders+3)
	}
	if err := ParseRequest(out, 0, &again); err != ErrTooManyHeaders {
		t.Errorf("re-parse: %v", err)
	}
	checkUpstreamRequest(t, out)
}
