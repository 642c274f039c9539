package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/handshake"
)

// The echo backend is what the load generator and the benchmark comparison
// measure sluice against, so it must never be the bottleneck: it runs on
// gnet event loops (no goroutine per connection), parses the handshake in
// place with the handshake package, and streams every data frame back as
// its bytes arrive instead of reading whole messages. Every data frame comes
// back as it was sent (text, binary, fragments, compressed frames alike),
// pings get pongs, and a close is answered with a close.

// maxEchoPayload is the largest frame length the echo accepts; a longer
// declared length gets close 1009 (RFC 6455 §7.4.1). Payloads are
// streamed, so the cap is not about memory: it is the limit the
// goroutine-per-connection backend this one replaced had.
const maxEchoPayload = 64 << 20

// maxEchoHead is the largest handshake request head; a longer one gets 431
// (RFC 6585 §5). The handshake package's default, nginx's 8k.
const maxEchoHead = handshake.DefaultRequestLimit

// maxEchoUnit is the longest thing echo ever waits to have whole: a control
// frame from a client (at most 125 bytes of payload, RFC 6455 §5.5, behind
// a head of up to 14 bytes: a peer may spell a short length in the 16- or
// 64-bit form) or a data frame head (at most 14 bytes).
const maxEchoUnit = 14 + 125

// echoLinger bounds how long a connection that is being closed may wait
// for its last bytes to be sent and for the client to close its side.
// A variable so that a test can wait less.
var echoLinger = 5 * time.Second

// echoTick is how often lingering connections are looked at: gnet
// sends queued bytes on its own and does not say when it is done.
const echoTick = 100 * time.Millisecond

// Close frames the echo sends when it fails a connection (RFC 6455 §7.1.7).
var (
	echoClose1002 = ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusProtocolError, "")))
	echoClose1009 = ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusMessageTooBig, "")))
)

// EchoOptions configure ListenEcho.
type EchoOptions struct {
	// Loops is the number of gnet event loops. 0 means one: the benchmark
	// pins the backend to one core so that what it measures is the proxy.
	Loops int
	// Logf, if set, is told about every handshake the backend refuses, one
	// line each. Nothing else is logged, and never anything per frame.
	Logf func(format string, args ...any)
}

// EchoServer is a running echo backend.
type EchoServer struct {
	h    *echoHandler
	eng  gnet.Engine
	addr string
	done chan struct{} // closed when gnet.Run has returned
	err  error         // gnet.Run's result; read only after done

	closeOnce sync.Once
}

// ListenEcho binds addr (host:port; port 0 picks a free one) and serves the
// echo on it in the background. Addr is valid when it returns.
func ListenEcho(addr string, o EchoOptions) (*EchoServer, error) {
	loops := max(o.Loops, 1)
	h := &echoHandler{logf: o.Logf, booted: make(chan gnet.Engine, 1)}
	s := &EchoServer{h: h, done: make(chan struct{})}
	go func() {
		s.err = gnet.Run(h, "tcp://"+addr,
			gnet.WithMulticore(loops > 1),
			gnet.WithNumEventLoop(loops),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(quietLogger{}),
		)
		close(s.done)
	}()
	select {
	case s.eng = <-h.booted:
	case <-s.done:
		err := s.err
		if err == nil {
			err = errors.New("event loops stopped at start")
		}
		return nil, fmt.Errorf("echo: listen %s: %w", addr, err)
	}
	a, err := boundAddr(s.eng)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("echo: listen %s: %w", addr, err)
	}
	s.addr = a
	return s, nil
}

// boundAddr is the address gnet's listener is bound to. gnet does not
// report it, and a port 0 is only resolved by the kernel, so it is read
// from a duplicate of the listening socket (gnet binds before OnBoot).
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", fmt.Errorf("dup listener: %w", err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String(), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String(), nil
	}
	return "", fmt.Errorf("listener address is %T, not TCP", sa)
}

// Addr is the address actually bound, e.g. "127.0.0.1:9000".
func (s *EchoServer) Addr() string { return s.addr }

// Conns is the number of connections currently open.
func (s *EchoServer) Conns() int64 { return s.h.conns.Load() }

// Close stops accepting, closes every connection and returns once the
// event loops have exited and the port is released. It returns the error
// that stopped gnet, if one did.
func (s *EchoServer) Close() error {
	s.closeOnce.Do(func() {
		// Engine.Stop notices the end of the shutdown by polling every
		// 500 ms. With a context already cancelled it only starts the
		// shutdown; waiting for gnet.Run to return is quicker and says
		// more: Run returns after every loop has closed its connections
		// (OnClose ran for each) and the listener has been closed.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.eng.Stop(ctx)
		<-s.done
	})
	return s.err
}

// quietLogger is gnet's logger: gnet would otherwise print to stdout at start.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}

// echoPhase is where a connection is in its life.
type echoPhase uint8

const (
	echoHandshaking echoPhase = iota // waiting for the request head
	echoOpen                         // echoing frames
	echoClosing                      // answer sent; waiting for it to leave, input discarded
)

// echoConn is gnet's per-connection context, allocated once at open: after
// the handshake nothing else is allocated for the connection.
type echoConn struct {
	phase echoPhase
	// partial: the last OnTraffic left the start of a frame unread, so it
	// sits in gnet's own buffer and a Peek over it and the new bytes would
	// copy them all. The next call peeks at most maxEchoUnit bytes first.
	partial bool
	// Closing: the client closed (no lingering: it will send nothing more),
	// the write side is shut, the connection is in echoHandler.lingering.
	peerClosed, shut, listed bool
	deadline                 time.Time // closing: give up waiting after this

	// The data frame being streamed: payload bytes still to come, its mask
	// and how many payload bytes were unmasked before (mod 4).
	payload int64
	mask    [4]byte
	maskPos int
}

// echoHandler is the gnet event handler.
type echoHandler struct {
	gnet.BuiltinEventEngine
	logf    func(format string, args ...any)
	conns   atomic.Int64
	booted  chan gnet.Engine
	scratch sync.Pool // *echoScratch: one per loop in practice, reused

	mu        sync.Mutex
	lingering map[gnet.Conn]struct{} // connections in echoClosing; woken by OnTick
}

// echoScratch is what answering a handshake needs besides the
// connection: a parsed Request is 5 KB, so it is pooled, not per connection.
type echoScratch struct {
	req handshake.Request
	out []byte
}

func (h *echoHandler) OnBoot(eng gnet.Engine) gnet.Action {
	h.booted <- eng
	return gnet.None
}

func (h *echoHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&echoConn{})
	h.conns.Add(1)
	return nil, gnet.None
}

func (h *echoHandler) OnClose(c gnet.Conn, _ error) gnet.Action {
	h.conns.Add(-1)
	if st, _ := c.Context().(*echoConn); st != nil && st.listed {
		h.mu.Lock()
		delete(h.lingering, c)
		h.mu.Unlock()
	}
	return gnet.None
}

func (h *echoHandler) OnTraffic(c gnet.Conn) gnet.Action {
	st, _ := c.Context().(*echoConn)
	if st == nil {
		return gnet.Close
	}
	switch st.phase {
	case echoHandshaking:
		return h.upgrade(c, st)
	case echoOpen:
		return h.frames(c, st)
	default:
		return h.linger(c, st)
	}
}

// OnTick wakes the lingering connections so that each one notices when its
// last bytes have left or its time is up. It runs on gnet's ticker
// goroutine, which gnet stops before it closes the pollers, so Wake (a
// concurrency-safe call) never reaches a closed loop.
func (h *echoHandler) OnTick() (time.Duration, gnet.Action) {
	h.mu.Lock()
	for c := range h.lingering {
		_ = c.Wake(nil)
	}
	h.mu.Unlock()
	return echoTick, gnet.None
}

// upgrade answers the opening handshake once its head is complete: 101 for
// a valid upgrade (RFC 6455 §4.2.2), the handshake package's status for
// anything else, then close.
func (h *echoHandler) upgrade(c gnet.Conn, st *echoConn) gnet.Action {
	buf, _ := c.Peek(-1)
	sc, _ := h.scratch.Get().(*echoScratch)
	if sc == nil {
		sc = &echoScratch{out: make([]byte, 0, 512)}
	}
	defer h.scratch.Put(sc)
	req := &sc.req
	err := handshake.ParseRequest(buf, maxEchoHead, req)
	if errors.Is(err, handshake.ErrIncomplete) {
		return gnet.None
	}
	if err == nil {
		err = handshake.CheckUpgrade(req)
	}
	if err != nil {
		if h.logf != nil {
			h.logf("echo: refused handshake from %s: %v", c.RemoteAddr(), err)
		}
		sc.out = handshake.AppendErrorResponse(sc.out[:0], handshake.StatusOf(err), err)
		if _, err := c.Write(sc.out); err != nil {
			return gnet.Close
		}
		return h.startClosing(c, st)
	}

	out := append(sc.out[:0], "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	out = handshake.ComputeAccept(out, req.Key)
	out = append(out, "\r\n"...)
	proto, deflate := clientOffers(req)
	if proto != nil {
		out = append(out, "Sec-WebSocket-Protocol: "...)
		out = append(out, proto...)
		out = append(out, "\r\n"...)
	}
	if deflate {
		// Frames are echoed untouched, compressed ones too, so neither side
		// may keep a compression context across messages (RFC 7692 §7.1.1):
		// the client inflates our echo with the context it deflated with.
		out = append(out, "Sec-WebSocket-Extensions: permessage-deflate; "+
			"server_no_context_takeover; client_no_context_takeover\r\n"...)
	}
	out = append(out, "\r\n"...)
	sc.out = out
	headLen := req.HeadLen
	if _, err := c.Write(out); err != nil {
		return gnet.Close
	}
	_, _ = c.Discard(headLen)
	st.phase = echoOpen
	// Whatever followed the head may sit in gnet's own buffer.
	st.partial = true
	return h.frames(c, st)
}

// clientOffers reads what the client offered: its first subprotocol (nil if
// none; the echo speaks them all) and whether permessage-deflate was among
// its extensions, with whatever parameters.
func clientOffers(req *handshake.Request) (proto []byte, deflate bool) {
	for _, f := range req.Headers {
		switch {
		case proto == nil && bytes.EqualFold(f.Name, []byte("Sec-WebSocket-Protocol")):
			httphead.ScanTokens(f.Value, func(t []byte) bool {
				proto = t
				return false
			})
		case !deflate && bytes.EqualFold(f.Name, []byte("Sec-WebSocket-Extensions")):
			httphead.ScanOptions(f.Value, func(_ int, name, _, _ []byte) httphead.Control {
				if bytes.EqualFold(name, []byte("permessage-deflate")) {
					deflate = true
					return httphead.ControlBreak
				}
				return httphead.ControlSkip
			})
		}
	}
	return proto, deflate
}

// frames echoes what gnet holds for an open connection.
//
// This is the hot path: it must not allocate, lock or log per frame
// (TestEchoSteadyStateAllocs, BenchmarkEchoRoundTrip). It peeks at gnet's
// buffer in place, builds the echo over the bytes it has read (see
// echoConn.echo), writes it with one Write and discards what it consumed.
func (h *echoHandler) frames(c gnet.Conn, st *echoConn) gnet.Action {
	for {
		avail := c.InboundBuffered()
		if avail == 0 {
			st.partial = false
			return gnet.None
		}
		n := avail
		if st.partial && n > maxEchoUnit {
			// Finish the frame start left over last time with a small
			// copy; once it is consumed gnet's buffer is empty and the
			// rest is peeked in place.
			n = maxEchoUnit
		}
		buf, err := c.Peek(n)
		if err != nil {
			return gnet.Close
		}
		w, r, v := st.echo(buf)
		if w > 0 {
			// On a failed Write gnet has already closed the connection.
			if _, err := c.Write(buf[:w]); err != nil {
				return gnet.Close
			}
		}
		switch v {
		case echoPeerClosed:
			st.peerClosed = true
			return h.startClosing(c, st)
		case echoFail1002, echoFail1009:
			frame := echoClose1002
			if v == echoFail1009 {
				frame = echoClose1009
			}
			if _, err := c.Write(frame); err != nil {
				return gnet.Close
			}
			return h.startClosing(c, st)
		}
		if r > 0 {
			// Never Discard(0): gnet reads n <= 0 as "everything".
			_, _ = c.Discard(r)
		}
		switch {
		case n < avail:
			st.partial = false // the leftover was consumed; peek the rest in place
		case r < n:
			st.partial = true // an incomplete frame start waits for more bytes
			return gnet.None
		default:
			st.partial = false
			return gnet.None
		}
	}
}

// echoVerdict is what echoConn.echo found at the end of its input.
type echoVerdict uint8

const (
	echoGoOn       echoVerdict = iota
	echoPeerClosed             // the client's close frame was echoed: close once it is sent
	echoFail1002               // fail with close 1002
	echoFail1009               // fail with close 1009
)

// echo turns the frames at the start of buf into their echo, in place, and
// returns the length w of the echo now in buf[:w], the number r of input
// bytes consumed, and what to do next.
//
// An echo is never longer than what it echoes (a client frame carries a
// 4-byte mask, its echo none; a pong from the client is dropped), so the
// output is built behind the read position and gnet's read buffer doubles
// as the write buffer: for one frame per read, the echo head is written
// just before the unmasked payload and nothing is copied at all.
//
// A data frame's head is echoed as soon as it is whole and its payload as
// far as it has arrived; the rest follows on later calls (echoConn keeps
// the count and the mask position). Control frames are at most 131 bytes and are
// handled whole; an incomplete one, or an incomplete data frame head, is
// left unconsumed at the end.
func (st *echoConn) echo(buf []byte) (w, r int, v echoVerdict) {
	for r < len(buf) {
		if st.payload > 0 {
			n := len(buf) - r
			if int64(n) > st.payload {
				n = int(st.payload)
			}
			p := buf[r : r+n]
			ws.Cipher(p, st.mask, st.maskPos)
			w += copy(buf[w:], p)
			r += n
			st.payload -= int64(n)
			st.maskPos = (st.maskPos + n) & 3
			continue
		}
		f, ok := parseEchoFrameHead(buf[r:])
		if !ok {
			break
		}
		if v := f.judge(); v != echoGoOn {
			return w, r, v
		}
		op := ws.OpCode(f.b0 & 0x0f)
		if !op.IsControl() {
			w += f.putEcho(buf[w:], buf[r:])
			r += f.size
			st.payload, st.mask, st.maskPos = int64(f.length), f.mask, 0
			continue
		}
		end := r + f.size + int(f.length)
		if end > len(buf) {
			break
		}
		p := buf[r+f.size : end]
		if op == ws.OpPong {
			r = end // unsolicited or not, a pong needs no answer (RFC 6455 §5.5.3)
			continue
		}
		ws.Cipher(p, f.mask, 0)
		if op == ws.OpPing {
			f.b0 = f.b0&0xf0 | byte(ws.OpPong) // §5.5.2: same payload
		}
		w += f.putEcho(buf[w:], buf[r:])
		w += copy(buf[w:], p)
		r = end
		if op == ws.OpClose {
			return w, r, echoPeerClosed // §5.5.1: answer with a close, echoing its code
		}
	}
	return w, r, echoGoOn
}

// echoFrameHead is a parsed frame head (RFC 6455 §5.2).
type echoFrameHead struct {
	b0     byte   // FIN, RSV1-3, opcode
	masked bool   // the MASK bit
	length uint64 // payload length
	mask   [4]byte
	size   int // bytes of head, mask included
}

// parseEchoFrameHead parses the frame head at the start of b; ok is false
// while b holds only part of it.
func parseEchoFrameHead(b []byte) (f echoFrameHead, ok bool) {
	if len(b) < 2 {
		return f, false
	}
	f.b0 = b[0]
	f.masked = b[1]&0x80 != 0
	f.length = uint64(b[1] & 0x7f)
	f.size = 2
	switch f.length {
	case 126:
		if len(b) < 4 {
			return f, false
		}
		f.length = uint64(binary.BigEndian.Uint16(b[2:]))
		f.size = 4
	case 127:
		if len(b) < 10 {
			return f, false
		}
		f.length = binary.BigEndian.Uint64(b[2:])
		f.size = 10
	}
	if f.masked {
		if len(b) < f.size+4 {
			return f, false
		}
		copy(f.mask[:], b[f.size:])
		f.size += 4
	}
	return f, true
}

// judge refuses the frames a server must not echo. RSV bits are not
// checked: they belong to extensions, and permessage-deflate's RSV1 must
// pass untouched since the echo never inflates.
func (f *echoFrameHead) judge() echoVerdict {
	op := ws.OpCode(f.b0 & 0x0f)
	switch {
	case !f.masked:
		// §5.1: a server MUST close on an unmasked client frame; the mask
		// keeps a hostile page from choosing the bytes an intermediary
		// sees (§10.3, cache poisoning).
		return echoFail1002
	case op.IsReserved():
		// §5.2: an unknown opcode MUST fail the connection; it is not even
		// known whether it is a control frame.
		return echoFail1002
	case op.IsControl() && (f.b0&0x80 == 0 || f.length > 125):
		// §5.5: control frames are never fragmented and carry at most 125
		// bytes, which is why echo may wait for one to be whole.
		return echoFail1002
	case f.length > maxEchoPayload:
		return echoFail1009
	}
	return echoGoOn
}

// putEcho writes the echo's head to dst: in's head (the original bytes,
// so the length keeps the client's encoding) with b0 as rewritten, the MASK
// bit cleared and no masking key. It returns its length, f.size-4.
// dst may overlap in as long as it starts no later.
func (f *echoFrameHead) putEcho(dst, in []byte) int {
	n := copy(dst, in[:f.size-4])
	dst[0] = f.b0
	dst[1] &^= 0x80
	return n
}

// startClosing stops reading frames: from now on input is discarded, and
// the connection is closed once its last bytes have been sent.
func (h *echoHandler) startClosing(c gnet.Conn, st *echoConn) gnet.Action {
	st.phase = echoClosing
	st.deadline = time.Now().Add(echoLinger)
	if a := h.linger(c, st); a != gnet.None {
		return a
	}
	h.mu.Lock()
	if h.lingering == nil {
		h.lingering = make(map[gnet.Conn]struct{})
	}
	h.lingering[c] = struct{}{}
	h.mu.Unlock()
	st.listed = true
	return gnet.None
}

// linger is OnTraffic for a closing connection. Returning gnet.Close with
// bytes still queued would lose them (gnet tries one write before it
// closes), so it waits until gnet has sent everything. Then, if the client
// closed the WebSocket, it closes at once: the client has nothing more to
// send. Otherwise (a refused handshake, a failed connection) the client may
// still be sending, and closing a socket with unread input makes the kernel
// send a reset that can destroy the answer before the client reads it; so
// it shuts the write side and drains the input until the client closes
// (nginx's lingering close). echoLinger bounds both waits.
func (h *echoHandler) linger(c gnet.Conn, st *echoConn) gnet.Action {
	_, _ = c.Discard(-1)
	expired := time.Now().After(st.deadline)
	if c.OutboundBuffered() > 0 && !expired {
		return gnet.None
	}
	if st.peerClosed || expired {
		return gnet.Close
	}
	if !st.shut {
		st.shut = true
		if err := unix.Shutdown(c.Fd(), unix.SHUT_WR); err != nil {
			return gnet.Close
		}
	}
	return gnet.None
}
