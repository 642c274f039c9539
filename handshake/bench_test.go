package handshake

import "testing"

// browserHead is what Chrome sends for new WebSocket("wss://…"): ~500 bytes,
// 12 header fields.
const browserHead = "GET /socket/v2?token=abc123&room=lobby HTTP/1.1\r\n" +
	"Host: chat.example.com\r\n" +
	"Connection: Upgrade\r\n" +
	"Pragma: no-cache\r\n" +
	"Cache-Control: no-cache\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
	"Upgrade: websocket\r\n" +
	"Origin: https://chat.example.com\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n" +
	"Sec-WebSocket-Key: " + rfcKey + "\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"\r\n"

// upstream101 is a typical upstream answer to browserHead.
const upstream101 = "HTTP/1.1 101 Switching Protocols\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate\r\n" +
	"Date: Sat, 21 Nov 2026 06:46:00 GMT\r\n" +
	"\r\n"

var benchForward = Forward{ClientAddr: []byte("203.0.113.7"), Proto: "https"}

// TestZeroAllocs asserts the whole handshake path allocates nothing per
// connection once the per-loop Request, Response and buffer exist.
func TestZeroAllocs(t *testing.T) {
	var req Request
	var resp Response
	in, up := []byte(browserHead), []byte(upstream101)
	dst := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(200, func() {
		if err := ParseRequest(in, 8192, &req); err != nil {
			t.Fatal(err)
		}
		if err := CheckUpgrade(&req); err != nil {
			t.Fatal(err)
		}
		dst = AppendUpstreamRequest(dst[:0], &req, &benchForward)
	}); a != 0 {
		t.Errorf("request path: %v allocs/run, want 0", a)
	}
	if a := testing.AllocsPerRun(200, func() {
		if err := ParseResponse(up, 16384, &resp); err != nil {
			t.Fatal(err)
		}
		if err := VerifyUpgrade(&resp, req.Key); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("response path: %v allocs/run, want 0", a)
	}
	refused := []byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n")
	if a := testing.AllocsPerRun(200, func() {
		if err := ParseResponse(refused, 16384, &resp); err != nil {
			t.Fatal(err)
		}
		dst = AppendRelayedResponse(dst[:0], &resp)
		dst = AppendErrorResponse(dst[:0], StatusOf(ErrVersion), ErrVersion)
		dst = ComputeAccept(dst[:0], req.Key)
	}); a != 0 {
		t.Errorf("relay/error path: %v allocs/run, want 0", a)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	var req Request
	in := []byte(browserHead)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseRequest(in, 8192, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckUpgrade(b *testing.B) {
	var req Request
	if err := ParseRequest([]byte(browserHead), 8192, &req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckUpgrade(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendUpstreamRequest(b *testing.B) {
	var req Request
	if err := ParseRequest([]byte(browserHead), 8192, &req); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendUpstreamRequest(dst[:0], &req, &benchForward)
	}
}

func BenchmarkParseResponseVerifyUpgrade(b *testing.B) {
	var resp Response
	in := []byte(upstream101)
	key := []byte(rfcKey)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseResponse(in, 16384, &resp); err != nil {
			b.Fatal(err)
		}
		if err := VerifyUpgrade(&resp, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkComputeAccept(b *testing.B) {
	key := []byte(rfcKey)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = ComputeAccept(dst[:0], key)
	}
}
