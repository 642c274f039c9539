package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fuzzKey is the Sec-WebSocket-Key FuzzReadUpgrade checks answers against
// (RFC 6455 §1.3's example key).
const fuzzKey = "dGhlIHNhbXBsZSBub25jZQ=="

// FuzzReadUpgrade: readUpgrade never panics on any answer; its error is a
// handshake failure or a *StatusError with a 3-digit code other than 101;
// it succeeds only on a 101 carrying the right Sec-WebSocket-Accept.
// parseStatusLine only accepts "HTTP/1.x NNN" with 100 <= NNN <= 999.
// Seeds: testdata/fuzz/FuzzReadUpgrade.
func FuzzReadUpgrade(f *testing.F) {
	f.Add([]byte(valid101(fuzzKey)))
	accept := acceptKey([]byte(fuzzKey))
	f.Fuzz(func(t *testing.T, data []byte) {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		if code, ok := parseStatusLine(line); ok {
			if code < 100 || code > 999 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
				t.Fatalf("parseStatusLine(%q) = %d", line, code)
			}
		}
		// 16 is bufio's smallest buffer: long lines then fail as
		// bufio.ErrBufferFull, which must still be a handshake error.
		for _, size := range []int{16, 4096} {
			err := readUpgrade(bufio.NewReaderSize(bytes.NewReader(data), size), accept)
			if err == nil {
				code, ok := parseStatusLine(line)
				if !ok || code != 101 || !bytes.Contains(data, accept) {
					t.Fatalf("accepted %q", data)
				}
				continue
			}
			var se *StatusError
			switch k := kindOf(err); {
			case errors.As(err, &se):
				if se.Code == 101 || se.Code < 100 || se.Code > 999 || k != KindStatusPrefix+strconv.Itoa(se.Code) {
					t.Fatalf("status error %d, kind %q", se.Code, k)
				}
			case k != KindHandshake || !errors.Is(err, ErrHandshake):
				t.Fatalf("error %v of kind %q, want %q", err, k, KindHandshake)
			}
		}
	})
}

// readOnlyConn is the net.Conn of a conn under test: deadlines are
// accepted and ignored; the frames come from conn.br, never from here.
type readOnlyConn struct{ net.Conn }

func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzConn is a conn for messages of n bytes (id 7, as dialScript makes
// them) reading data.
func fuzzConn(n int, data []byte) *conn {
	c := newConn(newTemplate(n), 4096)
	c.id = 7
	c.nc = readOnlyConn{}
	c.br.Reset(bytes.NewReader(data))
	return c
}

// FuzzRecv feeds arbitrary server bytes to the client's frame reading.
// readHeader never panics and never passes a frame RFC 6455 forbids a
// server to send, nor a length over MaxPayload; recv's error is a message
// kind (read, closed or mismatch), never an untyped one; recv allocates
// nothing from a declared length; and a nil error means the echo of
// message 42 was read exactly. size is the message length (mod 4096).
// Seeds: testdata/fuzz/FuzzRecv.
func FuzzRecv(f *testing.F) {
	echo := newTemplate(128)
	stamp(echo, 7, 42)
	f.Add(uint16(128), serverFrame(fBinary, echo))
	f.Add(uint16(128), []byte{fBinary, 127, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, size uint16, data []byte) {
		n := int(size & 0x0fff)
		// Every frame readHeader lets through.
		c := fuzzConn(n, data)
		for {
			h, err := c.readHeader()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && err != io.EOF {
					t.Fatalf("readHeader: untyped error %v", err)
				}
				break
			}
			if h.length < 0 || h.length > MaxPayload || h.op.IsReserved() ||
				h.op.IsControl() && (!h.fin || h.length > 125) {
				t.Fatalf("readHeader passed %+v", h)
			}
			if _, err := c.br.Discard(int(h.length)); err != nil {
				break
			}
		}

		c = fuzzConn(n, data)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := c.recv(42, time.Time{})
		runtime.ReadMemStats(&after)
		// Errors allocate a little; a buffer sized by a frame would not.
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Fatalf("recv allocated %d bytes", d)
		}
		if err == nil {
			want := newTemplate(n)
			if n >= stampLen {
				stamp(want, 7, 42)
			}
			if !bytes.Equal(c.rbuf, want) {
				t.Fatalf("recv accepted % x", c.rbuf)
			}
			return
		}
		switch {
		case errors.Is(err, ErrProtocol), errors.Is(err, ErrClosed), errors.Is(err, ErrMismatch),
			err == io.EOF, err == io.ErrUnexpectedEOF:
		default:
			t.Fatalf("recv: untyped error %v", err)
		}
		if k := kindOf(err); !IsMessageKind(k) || k == KindWrite || k == KindTimeout {
			t.Fatalf("recv error %v counted as %q", err, k)
		}
	})
}

// FuzzEcho feeds arbitrary client bytes to the echo backend's frame state
// machine through feedEcho, all at once, a byte at a time and in 7-byte
// pieces (as TestEchoFrames does). It never panics; the three feeds give
// the same echo and verdict; the echo is no longer than the input and is a
// run of well-formed server frames (unmasked, known opcodes, control
// frames final, whole and at most 125 bytes; every frame but a data frame
// cut short by the end of the input is whole); and what echo leaves
// unconsumed is less than a whole control frame (14-byte head at most).
// Seeds: testdata/fuzz/FuzzEcho.
func FuzzEcho(f *testing.F) {
	f.Add(masked(ws.OpText, true, "hello"))
	f.Add(cat(masked(ws.OpText, false, "hel"), masked(ws.OpPing, true, "p"), masked(ws.OpContinuation, true, "lo")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1024 {
			// Frames longer than this add no state, and the byte-at-a-time
			// feed makes minimizing long inputs take the whole fuzz time.
			t.Skip("input over 1 KiB")
		}
		out, v := feedEcho(data, 0)
		for _, chunk := range []int{1, 7} {
			o, cv := feedEcho(data, chunk)
			if !bytes.Equal(o, out) || cv != v {
				t.Fatalf("chunk %d: echo % x verdict %d; whole: % x verdict %d", chunk, o, cv, out, v)
			}
		}
		if len(out) > len(data) {
			t.Fatalf("echo of %d bytes is %d bytes", len(data), len(out))
		}
		checkServerFrames(t, out, v)

		// What the echo leaves unconsumed is always less than one unit it
		// waits to have whole (a control frame may spell its length in 16
		// or 64 bits; maxEchoUnit allows for it).
		var st echoConn
		buf := bytes.Clone(data)
		if _, r, v := st.echo(buf); v == echoGoOn && len(buf)-r >= maxEchoUnit {
			t.Fatalf("%d bytes left unconsumed", len(buf)-r)
		}
	})
}

// checkServerFrames checks that out is a run of frames a server may send.
// Only the last may be incomplete, and only a data frame's payload, while
// the verdict is echoGoOn (the rest of it has not arrived yet).
func checkServerFrames(t *testing.T, out []byte, v echoVerdict) {
	t.Helper()
	for len(out) > 0 {
		if len(out) < 2 {
			t.Fatalf("half a frame head: % x", out)
		}
		if out[1]&0x80 != 0 {
			t.Fatalf("masked echo: % x", out)
		}
		op := ws.OpCode(out[0] & 0x0f)
		size, length := 2, uint64(out[1]&0x7f)
		switch length {
		case 126:
			size = 4
		case 127:
			size = 10
		}
		if len(out) < size {
			t.Fatalf("incomplete frame head: % x", out)
		}
		switch length {
		case 126:
			length = uint64(binary.BigEndian.Uint16(out[2:]))
		case 127:
			length = binary.BigEndian.Uint64(out[2:])
		}
		switch {
		case op.IsReserved():
			t.Fatalf("reserved opcode %d echoed", op)
		case op.IsControl() && (out[0]&0x80 == 0 || length > 125):
			t.Fatalf("bad control frame echoed: % x", out)
		case length > maxEchoPayload:
			t.Fatalf("frame of %d bytes echoed", length)
		}
		if rest := uint64(len(out) - size); length > rest {
			if op.IsControl() || v != echoGoOn {
				t.Fatalf("incomplete frame echoed (verdict %d): % x", v, out)
			}
			return
		}
		out = out[size+int(length):]
	}
}
