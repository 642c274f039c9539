package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// echoTestTimeout bounds every wait on a socket in these tests.
const echoTestTimeout = 10 * time.Second

// echoTestMask is the masking key of every frame the raw client sends:
// fixed, so expected bytes can be written down.
var echoTestMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// masked is a client frame as sent on the wire.
func masked(op ws.OpCode, fin bool, p string) []byte {
	return ws.MustCompileFrame(ws.MaskFrameWith(ws.NewFrame(op, fin, []byte(p)), echoTestMask))
}

// plain is a server frame as sent on the wire (no mask).
func plain(op ws.OpCode, fin bool, p string) []byte {
	return ws.MustCompileFrame(ws.NewFrame(op, fin, []byte(p)))
}

func closeBody(code ws.StatusCode, reason string) string {
	return string(ws.NewCloseFrameBody(code, reason))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// feedEcho runs echoConn.echo the way frames does, over input arriving in
// chunks of the given size (0: all at once): unconsumed bytes are kept and
// the next chunk appended to them. It returns the echo and the verdict.
func feedEcho(in []byte, chunk int) ([]byte, echoVerdict) {
	if chunk <= 0 {
		chunk = len(in) + 1
	}
	var st echoConn
	var out, pending []byte
	for len(in) > 0 {
		n := min(chunk, len(in))
		buf := append(append([]byte(nil), pending...), in[:n]...)
		in = in[n:]
		w, r, v := st.echo(buf)
		if w > r {
			panic("echo wrote past what it read")
		}
		out = append(out, buf[:w]...)
		if v != echoGoOn {
			return out, v
		}
		pending = buf[r:]
	}
	return out, echoGoOn
}

// TestEchoFrames is the frame state machine as bytes in, bytes out: each
// input is also fed one byte at a time and in 7-byte pieces, which must
// not change the echo.
func TestEchoFrames(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20) // 320 bytes: 16-bit length
	compressed := ws.Frame{Header: ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpText, Length: 3}, Payload: []byte{1, 2, 3}}
	// A 64-bit length field for a 5-byte payload: legal to parse, and the
	// echo keeps the client's encoding.
	longForm := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5}
	longForm = append(longForm, echoTestMask[:]...)
	longForm = append(longForm, "hello"...)
	ws.Cipher(longForm[14:], echoTestMask, 0)
	overLimit := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0x04, 0, 0, 1}
	overLimit = append(overLimit, echoTestMask[:]...)

	tests := []struct {
		name string
		in   []byte
		want []byte
		v    echoVerdict
	}{
		{"text", masked(ws.OpText, true, "hello"), plain(ws.OpText, true, "hello"), echoGoOn},
		{"empty binary", masked(ws.OpBinary, true, ""), plain(ws.OpBinary, true, ""), echoGoOn},
		{"16-bit length", masked(ws.OpBinary, true, big), plain(ws.OpBinary, true, big), echoGoOn},
		{"64-bit length kept as sent", longForm, []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, echoGoOn},
		{"RSV1 (compressed) kept", ws.MustCompileFrame(ws.MaskFrameWith(compressed, echoTestMask)), ws.MustCompileFrame(compressed), echoGoOn},
		{"two frames", cat(masked(ws.OpText, true, "a"), masked(ws.OpBinary, true, big)),
			cat(plain(ws.OpText, true, "a"), plain(ws.OpBinary, true, big)), echoGoOn},
		{"ping becomes pong", masked(ws.OpPing, true, "hi"), plain(ws.OpPong, true, "hi"), echoGoOn},
		{"pong dropped", cat(masked(ws.OpPong, true, "x"), masked(ws.OpText, true, "y")), plain(ws.OpText, true, "y"), echoGoOn},
		{"fragments with a ping between",
			cat(masked(ws.OpText, false, "hel"), masked(ws.OpPing, true, "p"), masked(ws.OpContinuation, false, "lo "), masked(ws.OpContinuation, true, "world")),
			cat(plain(ws.OpText, false, "hel"), plain(ws.OpPong, true, "p"), plain(ws.OpContinuation, false, "lo "), plain(ws.OpContinuation, true, "world")),
			echoGoOn},
		{"close echoed with its code", masked(ws.OpClose, true, closeBody(4001, "bye")), plain(ws.OpClose, true, closeBody(4001, "bye")), echoPeerClosed},
		{"nothing after a close", cat(masked(ws.OpClose, true, ""), masked(ws.OpText, true, "late")), plain(ws.OpClose, true, ""), echoPeerClosed},
		{"unmasked", plain(ws.OpText, true, "x"), nil, echoFail1002},
		{"frames before an unmasked one still echo", cat(masked(ws.OpText, true, "ok"), plain(ws.OpText, true, "x")), plain(ws.OpText, true, "ok"), echoFail1002},
		{"reserved data opcode", masked(3, true, "x"), nil, echoFail1002},
		{"reserved control opcode", masked(0xb, true, "x"), nil, echoFail1002},
		{"fragmented ping", masked(ws.OpPing, false, "x"), nil, echoFail1002},
		{"ping over 125 bytes", masked(ws.OpPing, true, strings.Repeat("x", 126)), nil, echoFail1002},
		{"length over 64 MiB", overLimit, nil, echoFail1009},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 7} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				got, v := feedEcho(tt.in, chunk)
				if !bytes.Equal(got, tt.want) || v != tt.v {
					t.Errorf("echo = % x, verdict %d\nwant   % x, verdict %d", got, v, tt.want, tt.v)
				}
			})
		}
	}
}

// TestEchoIncomplete: a frame start that has not fully arrived is left
// unconsumed, and so is a control frame until it is whole; a data payload
// is echoed as far as it goes.
func TestEchoIncomplete(t *testing.T) {
	text := masked(ws.OpText, true, "hello")
	ping := masked(ws.OpPing, true, "hi")
	tests := []struct {
		name  string
		in    []byte
		wantW int
		wantR int
	}{
		{"one byte", text[:1], 0, 0},
		{"head without mask", text[:4], 0, 0},
		{"head and part of the payload", text[:8], 2 + 2, 8},
		{"ping without its last byte", ping[:len(ping)-1], 0, 0},
		{"text then half a head", cat(text, ping[:3]), len(text) - 4, len(text)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st echoConn
			buf := append([]byte(nil), tt.in...)
			w, r, v := st.echo(buf)
			if w != tt.wantW || r != tt.wantR || v != echoGoOn {
				t.Errorf("echo = w %d r %d verdict %d, want w %d r %d", w, r, v, tt.wantW, tt.wantR)
			}
		})
	}
}

// startEcho starts a backend on a free loopback port for one test.
func startEcho(t testing.TB, loops int) *EchoServer {
	t.Helper()
	s, err := ListenEcho("127.0.0.1:0", EchoOptions{Loops: loops, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func dialGorilla(t testing.TB, s *EchoServer, d *websocket.Dialer) (*websocket.Conn, *http.Response) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	c, resp, err := d.Dial("ws://"+s.Addr()+"/", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(echoTestTimeout))
	_ = c.SetWriteDeadline(time.Now().Add(echoTestTimeout))
	return c, resp
}

// upgradeRequest is a valid handshake head with extra header lines
// ("Name: value\r\n" each) before the blank line.
func upgradeRequest(extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: echo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// dialRaw opens a TCP connection to s with deadlines set.
func dialRaw(t testing.TB, s *EchoServer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(echoTestTimeout))
	return c
}

// upgradeRaw completes a handshake by hand; the reader is left just after
// the 101's head.
func upgradeRaw(t testing.TB, s *EchoServer, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c := dialRaw(t, s)
	if _, err := io.WriteString(c, upgradeRequest(extra)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read 101: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	return c, br, resp
}

// waitConns waits until s counts n open connections.
func waitConns(t testing.TB, s *EchoServer, n int64) {
	t.Helper()
	deadline := time.Now().Add(echoTestTimeout)
	for s.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Conns() = %d, want %d", s.Conns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectEOF reads until the server's FIN; anything else is an error.
func expectEOF(t testing.TB, r io.Reader) {
	t.Helper()
	if n, err := io.Copy(io.Discard, r); err != nil || n != 0 {
		t.Fatalf("after the answer: %d more bytes, %v; want a clean EOF", n, err)
	}
}

// readFrame reads one server frame of at most 64 KiB.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 64<<10 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

func TestEchoMessages(t *testing.T) {
	s := startEcho(t, 0)
	random := make([]byte, 16<<20)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	tests := []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, echo")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 0xfe, 0xff}},
		{"empty text", websocket.TextMessage, nil},
		{"empty binary", websocket.BinaryMessage, nil},
		{"64 KiB", websocket.BinaryMessage, random[:64<<10]},
		{"16 MiB", websocket.BinaryMessage, random},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := dialGorilla(t, s, nil)
			if err := c.WriteMessage(tt.typ, tt.msg); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ != tt.typ || !bytes.Equal(got, tt.msg) {
				t.Fatalf("echo: type %d len %d, want type %d len %d", typ, len(got), tt.typ, len(tt.msg))
			}
		})
	}
}

// TestEchoFragmented sends a message in fragments, a ping between two of
// them, each in its own write, and expects every frame back as sent.
func TestEchoFragmented(t *testing.T) {
	s := startEcho(t, 0)
	c, br, _ := upgradeRaw(t, s, "")
	frames := []struct {
		op  ws.OpCode
		fin bool
		p   string
	}{
		{ws.OpText, false, "frag"},
		{ws.OpContinuation, false, "men"},
		{ws.OpPing, true, "between"},
		{ws.OpContinuation, true, strings.Repeat("ted", 1000)},
	}
	for _, f := range frames {
		if _, err := c.Write(masked(f.op, f.fin, f.p)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, f := range frames {
		got, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		want := f.op
		if want == ws.OpPing {
			want = ws.OpPong
		}
		if got.Header.OpCode != want || got.Header.Fin != f.fin || got.Header.Masked || string(got.Payload) != f.p {
			t.Fatalf("frame %+v %q, want op %d fin %v %q", got.Header, got.Payload, want, f.fin, f.p)
		}
	}
}

func TestEchoPingPong(t *testing.T) {
	s := startEcho(t, 0)
	c, _ := dialGorilla(t, s, nil)
	pongs := make(chan string, 1)
	c.SetPongHandler(func(p string) error {
		pongs <- p
		return nil
	})
	go func() { // gorilla runs the pong handler from its reader
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(echoTestTimeout)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p != "are you there" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(echoTestTimeout):
		t.Fatal("no pong")
	}
}

func TestEchoCloseHandshake(t *testing.T) {
	s := startEcho(t, 0)
	c, _ := dialGorilla(t, s, nil)
	msg := websocket.FormatCloseMessage(4001, "done")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(echoTestTimeout)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "done" {
		t.Fatalf("read after close: %v, want close 4001 \"done\"", err)
	}
	// The server closes the TCP connection first (RFC 6455 §7.1.1).
	expectEOF(t, c.UnderlyingConn())
	waitConns(t, s, 0)
}

// TestEchoCloseAfterFlush: a client that sends a large message and its
// close without reading gets the whole echo, then the close, then the FIN:
// the server holds the close until gnet has sent everything queued before it.
func TestEchoCloseAfterFlush(t *testing.T) {
	s := startEcho(t, 0)
	c, br, _ := upgradeRaw(t, s, "")
	payload := strings.Repeat("unread ", 1<<20) // 7 MiB: more than the socket buffers hold
	go func() {
		_, _ = c.Write(cat(masked(ws.OpBinary, true, payload), masked(ws.OpClose, true, closeBody(1000, "bye"))))
	}()
	time.Sleep(300 * time.Millisecond) // let the echo pile up behind the unread socket
	h, err := ws.ReadHeader(br)
	if err != nil || h.OpCode != ws.OpBinary || h.Length != int64(len(payload)) {
		t.Fatalf("echo head %+v, %v", h, err)
	}
	if _, err := io.CopyN(io.Discard, br, h.Length); err != nil {
		t.Fatal(err)
	}
	f, err := readFrame(br)
	if err != nil || f.Header.OpCode != ws.OpClose || string(f.Payload) != closeBody(1000, "bye") {
		t.Fatalf("after the echo: %+v %q, %v", f.Header, f.Payload, err)
	}
	expectEOF(t, br)
	waitConns(t, s, 0)
}

// TestEchoLingerTimeout: after refusing a handshake the server waits for the
// client to close, but not for ever.
func TestEchoLingerTimeout(t *testing.T) {
	defer func(d time.Duration) { echoLinger = d }(echoLinger)
	echoLinger = 300 * time.Millisecond
	s := startEcho(t, 0)
	c := dialRaw(t, s)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitConns(t, s, 1)
	// The client neither reads nor closes.
	waitConns(t, s, 0)
}

// TestEchoNegotiation: the first subprotocol offered is accepted, and
// permessage-deflate, with whatever parameters, is answered without
// context takeover in either direction.
func TestEchoNegotiation(t *testing.T) {
	const deflate = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	s := startEcho(t, 0)
	tests := []struct {
		name      string
		extra     string
		wantProto string
		wantExt   string
	}{
		{"nothing offered", "", "", ""},
		{"subprotocols", "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n", "chat.v2", ""},
		{"subprotocols over two lines", "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Protocol: chat\r\n", "mqtt", ""},
		{"deflate with parameters", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-webkit-deflate-frame\r\n", "", deflate},
		{"deflate second", "Sec-WebSocket-Extensions: x-foo\r\nsec-websocket-extensions: permessage-deflate\r\n", "", deflate},
		{"other extensions only", "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, resp := upgradeRaw(t, s, tt.extra)
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.wantProto {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tt.wantProto)
			}
			if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != tt.wantExt {
				t.Errorf("Sec-WebSocket-Extensions %q, want %q", got, tt.wantExt)
			}
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Errorf("Sec-WebSocket-Accept %q", got) // RFC 6455 §1.3's example
			}
		})
	}

	t.Run("gorilla subprotocol", func(t *testing.T) {
		c, _ := dialGorilla(t, s, &websocket.Dialer{Subprotocols: []string{"chat.v2", "chat.v1"}})
		if c.Subprotocol() != "chat.v2" {
			t.Fatalf("subprotocol %q", c.Subprotocol())
		}
	})
	t.Run("gorilla compression", func(t *testing.T) {
		c, resp := dialGorilla(t, s, &websocket.Dialer{EnableCompression: true})
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != deflate {
			t.Fatalf("Sec-WebSocket-Extensions %q", got)
		}
		// Several messages: without context takeover each one must
		// inflate on its own after the echo.
		for i, msg := range []string{strings.Repeat("compress me ", 500), "short", strings.Repeat("compress me ", 500)} {
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.ReadMessage()
			if err != nil || string(got) != msg {
				t.Fatalf("message %d: %v, len %d want %d", i, err, len(got), len(msg))
			}
		}
	})
}

// TestEchoRefusesRequests: a request that is not a valid upgrade gets the
// handshake package's status, then the server's FIN.
func TestEchoRefusesRequests(t *testing.T) {
	s := startEcho(t, 0)
	valid := upgradeRequest("")
	tests := []struct {
		name   string
		req    string
		status int
	}{
		{"no Sec-WebSocket-Key", strings.Replace(valid, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), 400},
		{"version 8", strings.Replace(valid, "Version: 13", "Version: 8", 1), 426},
		{"POST", strings.Replace(valid, "GET", "POST", 1), 400},
		{"plain GET", "GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n", 426},
		{"head over 8 KiB", upgradeRequest("X-Pad: " + strings.Repeat("p", 9000) + "\r\n"), 431},
		{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			expectEOF(t, br)
			_ = c.Close()
			waitConns(t, s, 0)
		})
	}
}

// TestEchoFailsConnection: frames a server must refuse get a close frame
// with the status of RFC 6455 §7.4.1, then the server's FIN.
func TestEchoFailsConnection(t *testing.T) {
	s := startEcho(t, 0)
	overLimit := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0x04, 0, 0, 1}
	overLimit = append(overLimit, echoTestMask[:]...)
	tests := []struct {
		name string
		in   []byte
		code ws.StatusCode
	}{
		{"unmasked frame", plain(ws.OpText, true, "not masked"), ws.StatusProtocolError},
		{"reserved opcode", masked(0x3, true, "?"), ws.StatusProtocolError},
		{"ping over 125 bytes", masked(ws.OpPing, true, strings.Repeat("p", 200)), ws.StatusProtocolError},
		{"frame over 64 MiB", overLimit, ws.StatusMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br, _ := upgradeRaw(t, s, "")
			if _, err := c.Write(tt.in); err != nil {
				t.Fatal(err)
			}
			f, err := readFrame(br)
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != tt.code {
				t.Fatalf("got op %d code %d, want close %d", f.Header.OpCode, code, tt.code)
			}
			expectEOF(t, br)
			_ = c.Close()
			waitConns(t, s, 0)
		})
	}
}

// TestEchoArrival: how the bytes are cut into writes must not matter.
func TestEchoArrival(t *testing.T) {
	s := startEcho(t, 0)
	req := []byte(upgradeRequest(""))
	frames := cat(masked(ws.OpText, true, "first"), masked(ws.OpPing, true, "p"), masked(ws.OpBinary, true, strings.Repeat("b", 300)))
	want := cat(plain(ws.OpText, true, "first"), plain(ws.OpPong, true, "p"), plain(ws.OpBinary, true, strings.Repeat("b", 300)))
	split := func(b []byte, at ...int) [][]byte {
		var out [][]byte
		prev := 0
		for _, i := range at {
			out = append(out, b[prev:i])
			prev = i
		}
		return append(out, b[prev:])
	}
	bytewise := func(b []byte) [][]byte {
		out := make([][]byte, len(b))
		for i := range b {
			out[i] = b[i : i+1]
		}
		return out
	}
	n := len(req)
	tests := []struct {
		name   string
		writes [][]byte
	}{
		{"head in pieces with pauses", append(split(req, 3, 20, n-3, n-1), frames)},
		{"head and frames in one write", [][]byte{cat(req, frames)}},
		{"frames start in the head's last write", [][]byte{req[:30], cat(req[30:], frames[:5]), frames[5:]}},
		{"frames byte by byte", append([][]byte{req}, bytewise(frames)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			for _, w := range tt.writes {
				if _, err := c.Write(w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			got := make([]byte, len(want))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo % x\nwant % x", got, want)
			}
		})
	}
}

func TestEchoManyConns(t *testing.T) {
	const conns, rounds = 200, 10
	for _, loops := range []int{1, 4} {
		t.Run(fmt.Sprintf("loops=%d", loops), func(t *testing.T) {
			s := startEcho(t, loops)
			var opened, done sync.WaitGroup
			opened.Add(conns)
			release := make(chan struct{})
			errs := make(chan error, conns)
			for i := range conns {
				done.Add(1)
				go func() {
					defer done.Done()
					err := func() error {
						c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/", nil)
						opened.Done()
						if err != nil {
							return err
						}
						defer c.Close()
						_ = c.SetReadDeadline(time.Now().Add(echoTestTimeout))
						for j := range rounds {
							msg := fmt.Sprintf("conn %d message %d", i, j)
							if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
								return err
							}
							if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
								return fmt.Errorf("echo of %q: %q %v", msg, got, err)
							}
						}
						<-release
						return nil
					}()
					if err != nil {
						errs <- err
					}
				}()
			}
			opened.Wait()
			waitConns(t, s, conns)
			close(release)
			done.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			waitConns(t, s, 0)
		})
	}
}

// TestEchoClose: Close ends open connections, returns, and releases the port.
func TestEchoClose(t *testing.T) {
	s, err := ListenEcho("127.0.0.1:0", EchoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := dialGorilla(t, s, nil)
	waitConns(t, s, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(echoTestTimeout):
		t.Fatal("Close did not return")
	}
	if n := s.Conns(); n != 0 {
		t.Errorf("Conns() = %d after Close", n)
	}
	if _, _, err := c.ReadMessage(); err == nil {
		t.Error("connection still open after Close")
	}
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	_ = ln.Close()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestEchoListenError(t *testing.T) {
	s := startEcho(t, 0)
	if _, err := ListenEcho(s.Addr(), EchoOptions{}); err == nil {
		t.Fatalf("second ListenEcho on %s succeeded", s.Addr())
	}
}

// echoRoundTrip sends one prebuilt masked frame and reads its echo (of
// known length) into buf. It does not allocate.
func echoRoundTrip(c net.Conn, frame, buf []byte) error {
	if _, err := c.Write(frame); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

// echoFrameFor is a masked binary frame of n bytes and the length of its echo.
func echoFrameFor(n int) ([]byte, int) {
	f := masked(ws.OpBinary, true, strings.Repeat("x", n))
	return f, len(f) - 4
}

// TestEchoSteadyStateAllocs: once a connection is open, echoing a frame
// allocates nothing, on either side of the socket (the raw client does not
// allocate either). MemStats counts the whole process, so a small constant
// is tolerated for the runtime's own work.
func TestEchoSteadyStateAllocs(t *testing.T) {
	s := startEcho(t, 0)
	c, _, _ := upgradeRaw(t, s, "")
	for _, size := range []int{128, 16 << 10} {
		frame, n := echoFrameFor(size)
		buf := make([]byte, n)
		for range 1000 {
			if err := echoRoundTrip(c, frame, buf); err != nil {
				t.Fatal(err)
			}
		}
		const rounds = 20000
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			if err := echoRoundTrip(c, frame, buf); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		if d := after.Mallocs - before.Mallocs; d > 100 {
			t.Errorf("%d-byte frames: %d allocations for %d round trips", size, d, rounds)
		} else {
			t.Logf("%d-byte frames: %d allocations for %d round trips", size, d, rounds)
		}
	}
}

// BenchmarkEchoRoundTrip is one client frame out and its echo back over one
// connection. allocs/op counts the whole process, so it is the server's
// (the raw client allocates nothing).
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, size := range []int{128, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			s := startEcho(b, 0)
			c, _, _ := upgradeRaw(b, s, "")
			_ = c.SetDeadline(time.Time{})
			frame, n := echoFrameFor(size)
			buf := make([]byte, n)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := echoRoundTrip(c, frame, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
