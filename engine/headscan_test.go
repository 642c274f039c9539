package engine

import (
	"testing"
)

func TestHeadScan(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		bad, on  bool
	}{
		{"CRLF head, nothing after", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, true},
		{"LF LF", "GET / HTTP/1.1\nHost: x\n\n", true, false},
		{"CRLF LF", "GET / HTTP/1.1\r\nHost: x\r\n\n", true, false},
		{"LF CRLF", "GET / HTTP/1.1\r\nHost: x\n\r\n", true, false},
		{"bare LF inside, CRLF CRLF end: handshake's to refuse", "GET / HTTP/1.1\nHost: x\r\n\r\n", false, true},
		{"unfinished", "GET / HTTP/1.1\nHost: x\n", false, true},
		{"second head bad", "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\n\n", true, false},
		{"body: not followed", "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\n\n\n\n", false, false},
		{"chunked: not followed", "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\n\n\n", false, false},
		{"Content-Length 0 is no body", "POST / HTTP/1.1\r\nCONTENT-LENGTH:  00 \r\n\r\nGET / HTTP/1.1\n\n", true, false},
		{"a length too long to read is a body", "POST / HTTP/1.1\r\nContent-Length: 00000000000000000000\r\n\r\n\n\n", false, false},
		{"empty length is a body", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n\n\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := headScan{on: true}
			h.feed([]byte(tc.in))
			if h.bad != tc.bad || h.on != tc.on {
				t.Errorf("bad %v on %v, want %v %v", h.bad, h.on, tc.bad, tc.on)
			}
			// Byte by byte, as a client dribbling its head sends it.
			b := headScan{on: true}
			for i := range len(tc.in) {
				if !b.on {
					break
				}
				b.feed([]byte(tc.in[i : i+1]))
			}
			if b != h {
				t.Errorf("byte by byte: %+v, at once: %+v", b, h)
			}
		})
	}
}

// FuzzHeadScan: where the reads split the bytes never changes what is
// found, and nothing panics.
func FuzzHeadScan(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\nHost: x\n\n"), uint16(20))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /\n\n"), uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole := headScan{on: true}
		whole.feed(data)
		at := int(split) % (len(data) + 1)
		parts := headScan{on: true}
		parts.feed(data[:at])
		if parts.on {
			parts.feed(data[at:])
		}
		if parts != whole {
			t.Fatalf("split at %d: %+v, whole: %+v", at, parts, whole)
		}
		if whole.bad && whole.on {
			t.Fatal("a bad head is still followed")
		}
	})
}

// BenchmarkHeadScan: what following a head costs per request, for a
// load generator's head and for a browser's.
func BenchmarkHeadScan(b *testing.B) {
	for _, tc := range []struct{ name, head string }{
		{"wrk", "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1:23002\r\n\r\n"},
		{"browser", "GET /app/main.js HTTP/1.1\r\nHost: chat.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
			"Accept: */*\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://chat.example.com/\r\n" +
			"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\nSec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			head := []byte(tc.head)
			b.SetBytes(int64(len(head)))
			b.ReportAllocs()
			for b.Loop() {
				h := headScan{on: true}
				h.feed(head)
				if !h.on || h.bad {
					b.Fatal("head not followed through")
				}
			}
		})
	}
}
