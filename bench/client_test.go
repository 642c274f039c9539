package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// scriptServer accepts one connection on loopback, reads the upgrade request
// head and hands the conversation to script with the request's
// Sec-WebSocket-Key. The socket is closed when script returns. It returns
// the URL to dial and a func that waits for the script to end.
func scriptServer(t *testing.T, script func(t *testing.T, nc net.Conn, br *bufio.Reader, key string)) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer ln.Close()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(nc)
		key := ""
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Errorf("server: reading the request: %v", err)
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
				key = strings.TrimSpace(v)
			}
		}
		script(t, nc, br, key)
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return "ws://" + ln.Addr().String() + "/x", wg.Wait
}

// valid101 is a valid 101 for key.
func valid101(key string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		string(acceptKey([]byte(key))) + "\r\n\r\n"
}

// dialScript opens a conn for payloads of n bytes to url.
func dialScript(t *testing.T, url string, n int, timeout time.Duration) (*conn, error) {
	t.Helper()
	tg, err := parseTarget(url, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(newTemplate(n), 4096)
	c.id = 7
	return c, c.dial(context.Background(), tg, netip.Addr{}, timeout)
}

func TestUpgradeAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(key string) string
		kind   string // "" = success
	}{
		{"valid 101", valid101, ""},
		{"header names in any case, token list", func(k string) string {
			return "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept: " + string(acceptKey([]byte(k))) + "\r\n\r\n"
		}, ""},
		{"404", func(string) string { return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" }, "status_404"},
		{"502", func(string) string { return "HTTP/1.1 502 Bad Gateway\r\n\r\n" }, "status_502"},
		{"wrong accept", func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
		}, KindHandshake},
		{"no Upgrade header", func(k string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + string(acceptKey([]byte(k))) + "\r\n\r\n"
		}, KindHandshake},
		{"Connection without upgrade", func(k string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: " + string(acceptKey([]byte(k))) + "\r\n\r\n"
		}, KindHandshake},
		{"extension not offered", func(k string) string {
			return strings.Replace(valid101(k), "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1)
		}, KindHandshake},
		{"subprotocol not offered", func(k string) string {
			return strings.Replace(valid101(k), "\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n", 1)
		}, KindHandshake},
		{"not HTTP", func(string) string { return "SSH-2.0-OpenSSH_9.6\r\n" }, KindHandshake},
		{"closed mid-head", func(string) string { return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" }, KindHandshake},
		{"closed before answering", func(string) string { return "" }, KindHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, wait := scriptServer(t, func(t *testing.T, nc net.Conn, _ *bufio.Reader, key string) {
				_, _ = io.WriteString(nc, tt.answer(key))
			})
			c, err := dialScript(t, url, 16, 2*time.Second)
			if err == nil {
				c.nc.Close()
			}
			wait()
			got := ""
			if err != nil {
				got = kindOf(err)
			}
			if got != tt.kind {
				t.Errorf("kind %q, want %q (err %v)", got, tt.kind, err)
			}
		})
	}
}

func TestUpgradeRequest(t *testing.T) {
	heads := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			heads <- ""
			return
		}
		defer nc.Close()
		b := make([]byte, 4096)
		n, _ := nc.Read(b)
		heads <- string(b[:n])
	}()
	tg, err := parseTarget("ws://"+ln.Addr().String()+"/chat/room?x=1", "example.com", "https://example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(newTemplate(16), 4096)
	_ = c.dial(context.Background(), tg, netip.Addr{}, time.Second)
	head := <-heads
	for _, want := range []string{
		"GET /chat/room?x=1 HTTP/1.1\r\n", "\r\nHost: example.com\r\n", "\r\nUpgrade: websocket\r\n",
		"\r\nConnection: Upgrade\r\n", "\r\nSec-WebSocket-Version: 13\r\n", "\r\nOrigin: https://example.com\r\n",
		"\r\nSec-WebSocket-Key: ", "\r\n\r\n",
	} {
		if !strings.Contains(head, want) {
			t.Errorf("request head %q lacks %q", head, want)
		}
	}
}

// readClientFrame reads one frame as a server does, checks that it is
// masked (RFC 6455 §5.1) and returns its header and unmasked payload.
func readClientFrame(t *testing.T, br *bufio.Reader) (ws.Header, []byte) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		t.Errorf("server: reading a frame: %v", err)
		return h, nil
	}
	if !h.Masked {
		t.Errorf("client frame not masked")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Errorf("server: reading a payload: %v", err)
	}
	ws.Cipher(p, h.Mask, 0)
	return h, p
}

// serverFrame is a server frame (unmasked) with the given first byte.
func serverFrame(b0 byte, p []byte) []byte {
	var buf bytes.Buffer
	h := ws.Header{Fin: b0&0x80 != 0, Rsv: (b0 >> 4) & 7, OpCode: ws.OpCode(b0 & 0x0f), Length: int64(len(p))}
	_ = ws.WriteHeader(&buf, h)
	buf.Write(p)
	return buf.Bytes()
}

const (
	fBinary = 0x80 | byte(ws.OpBinary)
	fText   = 0x80 | byte(ws.OpText)
	fCont   = 0x80 | byte(ws.OpContinuation)
	fPing   = 0x80 | byte(ws.OpPing)
	fPong   = 0x80 | byte(ws.OpPong)
	fClose  = 0x80 | byte(ws.OpClose)
)

// TestClientReadsEcho sends one message to a scripted server and checks what
// the client makes of each answer.
func TestClientReadsEcho(t *testing.T) {
	flip := func(p []byte, i int) []byte { q := bytes.Clone(p); q[i] ^= 1; return q }
	tests := []struct {
		name    string
		payload int
		answer  func(p []byte) []byte // p: the message the client sent, unmasked
		kind    string
	}{
		{"echo", 128, func(p []byte) []byte { return serverFrame(fBinary, p) }, ""},
		{"echo of a short payload", 5, func(p []byte) []byte { return serverFrame(fBinary, p) }, ""},
		{"echo of an empty payload", 0, func(p []byte) []byte { return serverFrame(fBinary, p) }, ""},
		{"echo over 64 KiB", 70000, func(p []byte) []byte { return serverFrame(fBinary, p) }, ""},
		{"text echo", 128, func(p []byte) []byte { return serverFrame(fText, p) }, ""},
		{"ping and pong first", 128, func(p []byte) []byte {
			return append(append(serverFrame(fPing, []byte("hi")), serverFrame(fPong, nil)...), serverFrame(fBinary, p)...)
		}, ""},
		{"fragmented, ping inside", 128, func(p []byte) []byte {
			b := serverFrame(byte(ws.OpBinary), p[:10])
			b = append(b, serverFrame(fPing, nil)...)
			b = append(b, serverFrame(byte(ws.OpContinuation), p[10:100])...)
			return append(b, serverFrame(fCont, p[100:])...)
		}, ""},
		{"one bit flipped", 128, func(p []byte) []byte { return serverFrame(fBinary, flip(p, 100)) }, KindMismatch},
		{"other sequence number", 128, func(p []byte) []byte { return serverFrame(fBinary, flip(p, 15)) }, KindMismatch},
		{"other conn id", 128, func(p []byte) []byte { return serverFrame(fBinary, flip(p, 7)) }, KindMismatch},
		{"short payload altered", 5, func(p []byte) []byte { return serverFrame(fBinary, flip(p, 4)) }, KindMismatch},
		{"shorter", 128, func(p []byte) []byte { return serverFrame(fBinary, p[:127]) }, KindMismatch},
		{"longer", 128, func(p []byte) []byte { return serverFrame(fBinary, append(bytes.Clone(p), 0)) }, KindMismatch},
		{"close frame", 128, func([]byte) []byte { return serverFrame(fClose, []byte{0x03, 0xe8}) }, KindClosed},
		{"connection closed", 128, func([]byte) []byte { return nil }, KindClosed},
		{"half a frame", 128, func(p []byte) []byte { return serverFrame(fBinary, p)[:50] }, KindClosed},
		{"masked frame", 128, func(p []byte) []byte {
			b := serverFrame(fBinary, p)
			b[1] |= 0x80
			return b
		}, KindRead},
		{"reserved bit", 128, func(p []byte) []byte { return serverFrame(fBinary|0x40, p) }, KindRead},
		{"reserved opcode", 128, func(p []byte) []byte { return serverFrame(0x80|0x3, p) }, KindRead},
		{"continuation first", 128, func(p []byte) []byte { return serverFrame(fCont, p) }, KindRead},
		{"fragmented ping", 128, func([]byte) []byte { return serverFrame(byte(ws.OpPing), nil) }, KindRead},
		{"absurd length", 128, func([]byte) []byte {
			return []byte{fBinary, 127, 0, 0, 1, 0, 0, 0, 0, 0}
		}, KindRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, wait := scriptServer(t, func(t *testing.T, nc net.Conn, br *bufio.Reader, key string) {
				_, _ = io.WriteString(nc, valid101(key))
				h, p := readClientFrame(t, br)
				if h.OpCode != ws.OpBinary || !h.Fin || len(p) != tt.payload {
					t.Errorf("client sent op %v fin %v len %d, want one binary frame of %d", h.OpCode, h.Fin, len(p), tt.payload)
				}
				_, _ = nc.Write(tt.answer(p))
				if tt.kind == KindClosed && tt.name != "close frame" {
					return // the answer ends with the connection
				}
				// Let the client read before the close that follows.
				_ = nc.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = br.ReadByte()
			})
			c, err := dialScript(t, url, tt.payload, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.roundTrip(42, 2*time.Second, time.Time{})
			c.nc.Close()
			wait()
			got := ""
			if err != nil {
				got = kindOf(err)
			}
			if got != tt.kind {
				t.Errorf("kind %q, want %q (err %v)", got, tt.kind, err)
			}
		})
	}
}

// TestClientEchoTimeout: no answer within the timeout is "timeout", and the
// wait ends at the deadline.
func TestClientEchoTimeout(t *testing.T) {
	url, wait := scriptServer(t, func(t *testing.T, nc net.Conn, br *bufio.Reader, key string) {
		_, _ = io.WriteString(nc, valid101(key))
		readClientFrame(t, br)
		_, _ = br.ReadByte() // until the client closes
	})
	c, err := dialScript(t, url, 16, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.roundTrip(1, 100*time.Millisecond, time.Time{})
	if kindOf(err) != KindTimeout || time.Since(start) > time.Second {
		t.Errorf("err %v (kind %s) after %v, want timeout after 100ms", err, kindOf(err), time.Since(start))
	}
	c.nc.Close()
	wait()
}

// TestFramesOnTheWire checks the client's frames byte for byte: masked
// with a fresh key each (RFC 6455 §5.3), stamped with conn id and
// sequence, one write each; and the closing handshake.
func TestFramesOnTheWire(t *testing.T) {
	var keys [][4]byte
	var payloads [][]byte
	var closeCode uint16
	url, wait := scriptServer(t, func(t *testing.T, nc net.Conn, br *bufio.Reader, key string) {
		_, _ = io.WriteString(nc, valid101(key))
		for range 3 {
			h, p := readClientFrame(t, br)
			keys = append(keys, h.Mask)
			payloads = append(payloads, p)
			_, _ = nc.Write(serverFrame(fBinary, p))
		}
		h, p := readClientFrame(t, br)
		if h.OpCode == ws.OpClose && len(p) == 2 {
			closeCode = binary.BigEndian.Uint16(p)
		}
		_, _ = nc.Write(serverFrame(fClose, p))
	})
	c, err := dialScript(t, url, 300, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := c.roundTrip(seq, time.Second, time.Time{}); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
	}
	if err := c.shutdown(time.Now().Add(time.Second)); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	wait()
	if len(keys) != 3 || keys[0] == keys[1] || keys[1] == keys[2] {
		t.Errorf("masking keys %v, want 3 different", keys)
	}
	for i, p := range payloads {
		want := newTemplate(300)
		stamp(want, 7, uint64(i+1))
		if !bytes.Equal(p, want) {
			t.Errorf("payload %d = %x..., want %x...", i, p[:20], want[:20])
		}
	}
	if closeCode != 1000 {
		t.Errorf("close code %d, want 1000", closeCode)
	}
}

// TestSendRecvAllocs guards the hot path: a message round trip allocates
// nothing once the connection is open. The echo here is written not to
// allocate either, since AllocsPerRun counts the whole process.
func TestSendRecvAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations of the whole process")
	}
	url, wait := scriptServer(t, func(t *testing.T, nc net.Conn, br *bufio.Reader, key string) {
		_, _ = io.WriteString(nc, valid101(key))
		_ = nc.SetDeadline(time.Time{})
		hb := make([]byte, 2, ws.MaxHeaderSize)
		out := make([]byte, 4+1024)
		for {
			h, err := ws.ReadHeaderBuffer(br, hb)
			if err != nil || h.OpCode == ws.OpClose {
				return
			}
			p := out[4 : 4+h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			// 1024 bytes: FIN + binary, 126, 16-bit length.
			out[0], out[1] = fBinary, 126
			binary.BigEndian.PutUint16(out[2:], uint16(h.Length))
			if _, err := nc.Write(out[:4+h.Length]); err != nil {
				return
			}
		}
	})
	c, err := dialScript(t, url, 1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	rt := func() {
		seq++
		if _, err := c.roundTrip(seq, time.Second, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	rt()
	if n := testing.AllocsPerRun(200, rt); n > 0 {
		t.Errorf("%.1f allocations per round trip, want 0", n)
	}
	_ = c.shutdown(time.Now().Add(time.Second))
	wait()
}

// BenchmarkRoundTrip is one 128-byte message and its echo over loopback
// against the bundled echo server.
func BenchmarkRoundTrip(b *testing.B) {
	srv, err := ListenEcho("127.0.0.1:0", EchoOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	tg, _ := parseTarget("ws://"+srv.Addr()+"/", "", "", nil)
	c := newConn(newTemplate(128), 4096)
	if err := c.dial(context.Background(), tg, netip.Addr{}, time.Second); err != nil {
		b.Fatal(err)
	}
	defer c.nc.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.roundTrip(uint64(i), time.Second, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}
