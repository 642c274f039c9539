package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/gobwas/ws"
)

// The client side of RFC 6455 on a plain net.Conn: the upgrade written and
// checked by hand, frames built and parsed in place with gobwas/ws's
// constants and masking. Every buffer belongs to one conn and is allocated
// when the conn is made; sending and checking a message allocates nothing.

// MaxPayload bounds Options.Payload and any frame the client will read:
// nothing is allocated or skipped from a length the server declared
// beyond it.
const MaxPayload = 64 << 20

// stampLen is the part of a payload that carries (conn id, sequence
// number), both big endian, when the payload has room for it.
const stampLen = 16

// target is the parsed URL and the request head every upgrade sends, up to
// its Sec-WebSocket-Key value.
type target struct {
	addr     string // host:port to dial
	loopback bool   // addr is on 127.0.0.0/8 (or localhost): sources apply
	head     []byte
	tls      *tls.Config // wss://: the client side of the TLS handshake; nil for ws://
}

// parseTarget checks that raw is ws://HOST:PORT[/PATH] and builds the
// request head for it (RFC 6455 §4.1: GET, Host, Upgrade, Connection,
// Sec-WebSocket-Version 13; Origin when given).
func parseTarget(raw, host, origin string, tlsConf *tls.Config) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %v", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("URL %q: want ws://HOST:PORT/PATH or wss://HOST:PORT/PATH", raw)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q: want ws://HOST:PORT/PATH (host and port are required)", raw)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("URL %q: user info and #fragment have no meaning in a WebSocket URL (RFC 6455 §3)", raw)
	}
	t := &target{addr: u.Host}
	if u.Scheme == "wss" {
		// Every connection makes a full handshake (no session tickets):
		// handshake mode measures what a new client costs the proxy.
		t.tls = &tls.Config{}
		if tlsConf != nil {
			t.tls = tlsConf.Clone()
		}
		if t.tls.ServerName == "" {
			t.tls.ServerName = u.Hostname()
		}
		if len(t.tls.NextProtos) == 0 {
			t.tls.NextProtos = []string{"http/1.1"}
		}
		t.tls.SessionTicketsDisabled = true
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		t.loopback = ip.Is4() && ip.IsLoopback()
	} else {
		t.loopback = u.Hostname() == "localhost"
	}
	if host == "" {
		host = u.Host
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", u.RequestURI(), host)
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	b.WriteString("Sec-WebSocket-Key: ")
	t.head = b.Bytes()
	return t, nil
}

// conn is one client connection. A conn can be dialed again after close
// (handshake mode reuses one per worker); its buffers stay.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	id  uint64
	rng rand.PCG

	tmpl []byte // the payload before its stamp; shared, read only
	wbuf []byte // frame header + payload, written in one write
	hdr  int    // header length in wbuf; the mask is its last 4 bytes
	rbuf []byte // the echo, unmasked
	req  []byte // the upgrade request
}

// newConn allocates a conn's buffers for messages of len(tmpl) bytes and
// a read buffer of bufSize.
func newConn(tmpl []byte, bufSize int) *conn {
	n := len(tmpl)
	c := &conn{tmpl: tmpl, br: bufio.NewReaderSize(nil, bufSize), rbuf: make([]byte, n)}
	c.rng.Seed(rand.Uint64(), rand.Uint64())
	// Client frames: FIN + binary, MASK bit + length in 7, 7+16 or 7+64
	// bits, then the 4-byte masking key (RFC 6455 §5.2).
	switch {
	case n < 126:
		c.hdr = 2 + 4
		c.wbuf = make([]byte, c.hdr+n)
		c.wbuf[1] = 0x80 | byte(n)
	case n <= 0xffff:
		c.hdr = 4 + 4
		c.wbuf = make([]byte, c.hdr+n)
		c.wbuf[1] = 0x80 | 126
		binary.BigEndian.PutUint16(c.wbuf[2:], uint16(n))
	default:
		c.hdr = 10 + 4
		c.wbuf = make([]byte, c.hdr+n)
		c.wbuf[1] = 0x80 | 127
		binary.BigEndian.PutUint64(c.wbuf[2:], uint64(n))
	}
	c.wbuf[0] = 0x80 | byte(ws.OpBinary)
	return c
}

// newTemplate is the payload pattern every message starts from: a byte
// sequence with period 251, which no 4-byte mask aligns with.
func newTemplate(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i%251) + 1
	}
	return p
}

// dial connects from src (when valid) and upgrades, all within timeout.
// It returns ErrDial, ErrHandshake or a *StatusError, wrapped.
func (c *conn) dial(ctx context.Context, t *target, src netip.Addr, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDial, err)
	}
	if t.tls != nil {
		tc := tls.Client(nc, t.tls)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return fmt.Errorf("%w: TLS: %w", ErrHandshake, err)
		}
		nc = tc
	}
	c.nc = nc
	c.br.Reset(nc)
	// The context ends the upgrade too, not only the connect.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	err = c.upgrade(t, timeout)
	if !stop() && err == nil {
		err = fmt.Errorf("%w: %w", ErrHandshake, context.Cause(ctx))
	}
	if err != nil {
		nc.Close()
		return err
	}
	_ = nc.SetDeadline(time.Time{})
	return nil
}

// upgrade sends the request and checks the answer, within timeout.
func (c *conn) upgrade(t *target, timeout time.Duration) error {
	// RFC 6455 §4.1: the key is 16 random bytes, base64; the answer must
	// carry base64(SHA-1(key + GUID)).
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:], c.rng.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], c.rng.Uint64())
	var key [24]byte
	base64.StdEncoding.Encode(key[:], raw[:])
	c.req = append(append(append(c.req[:0], t.head...), key[:]...), "\r\n\r\n"...)
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write(c.req); err != nil {
		return fmt.Errorf("%w: sending the request: %w", ErrHandshake, err)
	}
	return readUpgrade(c.br, acceptKey(key[:]))
}

// acceptKey is the Sec-WebSocket-Accept a server must answer key with.
func acceptKey(key []byte) []byte {
	h := sha1.New()
	h.Write(key)
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	out := make([]byte, 28)
	base64.StdEncoding.Encode(out, h.Sum(nil))
	return out
}

// maxHeaderLines bounds the answer head, so a server cannot keep the
// client reading header lines until the timeout.
const maxHeaderLines = 100

// readUpgrade reads the answer head and checks it as RFC 6455 §4.1 tells a
// client to: status 101, Upgrade: websocket, Connection: Upgrade, the
// right Sec-WebSocket-Accept, and no extension or subprotocol, since none
// was offered.
func readUpgrade(br *bufio.Reader, accept []byte) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("%w: reading the status line: %w", ErrHandshake, err)
	}
	code, ok := parseStatusLine(line)
	if !ok {
		return fmt.Errorf("%w: status line %q", ErrHandshake, bytes.TrimSpace(line))
	}
	if code != 101 {
		return &StatusError{Code: code}
	}
	var upgrade, connection, accepted bool
	for i := 0; ; i++ {
		if i == maxHeaderLines {
			return fmt.Errorf("%w: more than %d header lines", ErrHandshake, maxHeaderLines)
		}
		line, err = br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("%w: reading the head: %w", ErrHandshake, err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Connection")):
			connection = hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			accepted = bytes.Equal(value, accept)
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")), bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			if len(value) > 0 {
				return fmt.Errorf("%w: %s %q was not offered", ErrHandshake, name, value)
			}
		}
	}
	switch {
	case !upgrade:
		return fmt.Errorf("%w: 101 without Upgrade: websocket", ErrHandshake)
	case !connection:
		return fmt.Errorf("%w: 101 without Connection: Upgrade", ErrHandshake)
	case !accepted:
		return fmt.Errorf("%w: 101 without the right Sec-WebSocket-Accept", ErrHandshake)
	}
	return nil
}

// parseStatusLine returns the code of "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false
	}
	code := 0
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0, false
		}
		code = code*10 + int(b-'0')
	}
	if code < 100 || (len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return 0, false
	}
	return code, true
}

// hasToken reports whether the comma-separated list v holds tok, ignoring
// case (RFC 9110 §7.6.1).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(item), []byte(tok)) {
			return true
		}
	}
	return false
}

// stamp writes the conn id and seq at the start of a payload.
func stamp(p []byte, id, seq uint64) {
	binary.BigEndian.PutUint64(p, id)
	binary.BigEndian.PutUint64(p[8:], seq)
}

// mask draws a fresh masking key (RFC 6455 §5.3: one per frame, not
// predictable by the server) and applies it to p.
func (c *conn) mask(key []byte, p []byte) {
	m := c.rng.Uint64()
	k := [4]byte{byte(m), byte(m >> 8), byte(m >> 16), byte(m >> 24)}
	copy(key, k[:])
	ws.Cipher(p, k, 0)
}

// send writes message seq as one masked binary frame in one write call.
// Hot path: no allocation, no lock (an error is wrapped, once).
func (c *conn) send(seq uint64, deadline time.Time) error {
	p := c.wbuf[c.hdr:]
	copy(p, c.tmpl)
	if len(p) >= stampLen {
		stamp(p, c.id, seq)
	}
	c.mask(c.wbuf[c.hdr-4:c.hdr], p)
	_ = c.nc.SetWriteDeadline(deadline)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// frameHeader is what readHeader parsed.
type frameHeader struct {
	fin    bool
	op     ws.OpCode
	length int64
}

// readHeader parses the next frame header in place in the reader's buffer
// and rejects what RFC 6455 forbids a server to send: a masked frame
// (§5.1), reserved bits without an extension (§5.2), a fragmented or long
// control frame (§5.5), a reserved opcode; and any length over MaxPayload.
func (c *conn) readHeader() (frameHeader, error) {
	var h frameHeader
	b, err := c.br.Peek(2)
	if err != nil {
		return h, err
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		return h, fmt.Errorf("%w: masked frame", ErrProtocol)
	}
	if n > 2 {
		if b, err = c.br.Peek(n); err != nil {
			return h, err
		}
	}
	h.fin = b[0]&0x80 != 0
	h.op = ws.OpCode(b[0] & 0x0f)
	switch l := b[1] & 0x7f; l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u > MaxPayload {
			return h, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, u)
		}
		h.length = int64(u)
	default:
		h.length = int64(l)
	}
	_, _ = c.br.Discard(n)
	switch {
	case b[0]&0x70 != 0:
		return h, fmt.Errorf("%w: reserved bits set", ErrProtocol)
	case h.length > MaxPayload:
		return h, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, h.length)
	case h.op.IsControl() && (!h.fin || h.length > 125):
		return h, fmt.Errorf("%w: fragmented or long control frame", ErrProtocol)
	case h.op.IsReserved():
		return h, fmt.Errorf("%w: reserved opcode %d", ErrProtocol, h.op)
	}
	return h, nil
}

// recv reads the next message, which must be the echo of seq: the same
// length and bytes, in one frame or several. Pings and pongs in between
// are skipped (pings go unanswered: this side's writes belong to the
// sender); a close frame ends it with ErrClosed.
// Hot path: no allocation, no lock.
func (c *conn) recv(seq uint64, deadline time.Time) error {
	_ = c.nc.SetReadDeadline(deadline)
	n, started, long := 0, false, false
	for {
		h, err := c.readHeader()
		if err != nil {
			return err
		}
		switch h.op {
		case ws.OpPing, ws.OpPong:
			if _, err := c.br.Discard(int(h.length)); err != nil {
				return err
			}
			continue
		case ws.OpClose:
			return ErrClosed
		case ws.OpText, ws.OpBinary:
			if started {
				return fmt.Errorf("%w: new message inside a fragmented one", ErrProtocol)
			}
		case ws.OpContinuation:
			if !started {
				return fmt.Errorf("%w: continuation without a message", ErrProtocol)
			}
		}
		started = true
		take := min(h.length, int64(len(c.rbuf)-n))
		if _, err := io.ReadFull(c.br, c.rbuf[n:n+int(take)]); err != nil {
			return err
		}
		n += int(take)
		if h.length > take {
			long = true
			if _, err := c.br.Discard(int(h.length - take)); err != nil {
				return err
			}
		}
		if h.fin {
			break
		}
	}
	if long || n != len(c.rbuf) || !c.echoOf(seq) {
		return ErrMismatch
	}
	return nil
}

// echoOf reports whether rbuf is exactly the payload of message seq.
func (c *conn) echoOf(seq uint64) bool {
	p := c.rbuf
	if len(p) < stampLen {
		return bytes.Equal(p, c.tmpl)
	}
	return binary.BigEndian.Uint64(p) == c.id && binary.BigEndian.Uint64(p[8:]) == seq &&
		bytes.Equal(p[stampLen:], c.tmpl[stampLen:])
}

// roundTrip sends message seq and waits for its echo, each step within
// timeout (and not past limit, when limit is not zero). It returns when
// the echo was complete.
func (c *conn) roundTrip(seq uint64, timeout time.Duration, limit time.Time) (time.Time, error) {
	if err := c.send(seq, deadline(timeout, limit)); err != nil {
		return time.Time{}, err
	}
	err := c.recv(seq, deadline(timeout, limit))
	return time.Now(), err
}

// deadline is now + timeout, or limit if that is earlier.
func deadline(timeout time.Duration, limit time.Time) time.Time {
	d := time.Now().Add(timeout)
	if !limit.IsZero() && limit.Before(d) {
		return limit
	}
	return d
}

// closeFrameLen is a masked close frame with status 1000 and no reason.
const closeFrameLen = 2 + 4 + 2

// shutdown runs the closing handshake (RFC 6455 §5.5.1: send a close
// frame, read frames until the peer's close frame) by the deadline, then
// closes the socket. Echoes still arriving are skipped. It returns
// ErrCloseHandshake, wrapped, when no close frame came back.
func (c *conn) shutdown(deadline time.Time) error {
	defer c.nc.Close()
	_ = c.nc.SetDeadline(deadline)
	var f [closeFrameLen]byte
	f[0] = 0x80 | byte(ws.OpClose)
	f[1] = 0x80 | 2
	binary.BigEndian.PutUint16(f[6:], uint16(ws.StatusNormalClosure))
	c.mask(f[2:6], f[6:])
	if _, err := c.nc.Write(f[:]); err != nil {
		return fmt.Errorf("%w: %w", ErrCloseHandshake, err)
	}
	for {
		h, err := c.readHeader()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCloseHandshake, err)
		}
		if _, err := c.br.Discard(int(h.length)); err != nil {
			return fmt.Errorf("%w: %w", ErrCloseHandshake, err)
		}
		if h.op == ws.OpClose {
			return nil
		}
	}
}
