package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/handshake"
)

// clientConn is gnet's per-connection context while a client is still
// sending its request head. It is dropped when the head is judged: a
// tunnel keeps nothing of it.
type clientConn struct {
	conn     gnet.Conn
	ln       *listener
	gl       *gnetListener // the socket that accepted it (listeners.go)
	fd       int
	opened   int64 // unix nanoseconds, for the access log
	deadline int64 // unix nanoseconds; the header timeout
	scanned  int   // bytes already searched for the end of the head
	remote   netip.AddrPort

	handedOff bool     // the fd left gnet for splice; OnClose is not a disconnect
	parked    bool     // in ln.parked, not ln.pending: waiting for a next request
	proxied   bool     // the PROXY header, if the listener wants one, is consumed (guard.go)
	slot      connSlot // a limit_conn slot, until the tunnel takes it (guard.go)
	listed    bool     // in ln.pending or ln.parked; guarded by the shard's mutex
	prev      *clientConn
	next      *clientConn
}

// front is the gnet event handler: it owns a connection from accept until
// its upgrade request is judged. Everything it does per connection is
// bounded by max_header_bytes and client_header_timeout.
type front struct {
	gnet.BuiltinEventEngine
	e      *Engine
	booted chan gnet.Engine
	// ready closes at the first OnTick: gnet calls OnBoot before its loops
	// exist, and the ticker starts after them, so from ready on the engine
	// may take Register calls.
	ready     chan struct{}
	readyOnce sync.Once
	reqPool   sync.Pool // *handshake.Request: one per loop in practice, reused
}

func (f *front) OnBoot(eng gnet.Engine) gnet.Action {
	f.booted <- eng
	return gnet.None
}

// OnOpen takes a connection an accept loop registered (listeners.go); the
// loop has already checked max_connections.
func (f *front) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	var gl *gnetListener
	var parked *parkedConn
	switch x := c.Context().(type) {
	case *gnetListener:
		gl = x
	case *parkedConn:
		gl, parked = x.gl, x
	}
	if gl == nil || f.e.draining.Load() {
		return nil, gnet.Close // accepted as the shutdown began
	}
	ln := f.e.rt().listenerAt(gl.addr)
	if ln == nil || ln.certs != nil {
		// A reload removed the address (or made it TLS) a moment ago.
		return nil, gnet.Close
	}
	now := time.Now().UnixNano()
	cc := &clientConn{
		conn:     c,
		ln:       ln,
		gl:       gl,
		fd:       c.Fd(),
		opened:   now,
		deadline: now + int64(ln.headerTimeout),
		remote:   addrPort(c.RemoteAddr()),
	}
	c.SetContext(cc)
	if parked != nil {
		cc.remote, cc.proxied, cc.parked, cc.deadline = parked.remote, true, true, parked.until
		ln.parked.add(cc)
	} else {
		ln.pending.add(cc)
	}
	f.e.stats.conns.Add(1)
	gl.conns.Add(1)
	return nil, gnet.None
}

func (f *front) OnClose(c gnet.Conn, err error) gnet.Action {
	cc, _ := c.Context().(*clientConn)
	if cc == nil {
		return gnet.None
	}
	cc.unlist()
	cc.slot.release()
	f.e.stats.conns.Add(-1)
	cc.gl.conns.Add(-1)
	if !cc.handedOff && err != nil {
		f.e.log.Debug("client closed before finishing its head",
			zap.Stringer("client", cc.remote), zap.Error(err))
	}
	return gnet.None
}

// OnTraffic parses the head in place. gnet's buffer is only peeked at, so
// an incomplete head costs no copy until it spans two reads.
func (f *front) OnTraffic(c gnet.Conn) gnet.Action {
	cc, _ := c.Context().(*clientConn)
	if cc == nil || cc.handedOff {
		return gnet.Close
	}
	if cc.parked {
		// A parked connection's next request has begun: from here its head
		// has client_header_timeout, as a new connection's has, under the
		// routing in force now (a reload may have come since it parked).
		// All of pending's deadlines are at most now plus that, so it
		// stays sorted.
		cc.ln.parked.remove(cc)
		cc.parked = false
		if ln := f.e.rt().listenerAt(cc.gl.addr); ln != nil && ln.certs == nil {
			cc.ln = ln
		}
		now := time.Now().UnixNano()
		cc.opened, cc.deadline = now, now+int64(cc.ln.headerTimeout)
		cc.ln.pending.add(cc)
	}
	buf, _ := c.Peek(-1)
	if !cc.proxied {
		var act gnet.Action
		if buf, act = f.proxyHeader(c, cc, buf); buf == nil {
			return act
		}
	}
	// Parse only once the blank line that ends the head has arrived: a
	// client dribbling its head byte by byte must not make us re-parse it
	// for every byte.
	if !headComplete(buf, &cc.scanned) && len(buf) < cc.ln.maxHead {
		return gnet.None
	}

	req := f.getRequest()
	defer f.reqPool.Put(req)
	err := handshake.ParseRequest(buf, cc.ln.maxHead, req)
	if errors.Is(err, handshake.ErrIncomplete) {
		return gnet.None
	}
	cc.unlist()
	if err != nil {
		return f.refuse(c, cc, nil, req, handshake.StatusOf(err), err)
	}
	srv, loc, plain, status, err := cc.ln.route(req)
	if err != nil {
		return f.refuse(c, cc, srv, req, status, err)
	}
	if plain {
		return f.handOffPlain(c, cc, buf)
	}
	if act, ok := f.admit(c, cc, srv, loc, req); !ok {
		return act
	}
	return f.handOff(c, cc, srv, loc, req, buf)
}

var (
	errNoLocation    = errors.New("no location matches the path")
	errHeaderTimeout = errors.New("client did not send its request head in time")
)

// handOff moves the client's fd from gnet to a splice loop, which dials the
// upstream and waits for its 101. The duplicate is taken and gnet's copy
// closed in this same OnTraffic, before anything is dialed, so gnet can
// never read bytes that belong to the tunnel (see ARCHITECTURE.md).
//
// Checked against gnet v2.10.0: returning gnet.Close from OnTraffic runs
// eventloop.close at once, which flushes the (empty) outbound buffer, calls
// EPOLL_CTL_DEL on gnet's fd and then close() on it; the socket lives on in
// the duplicate, whose own epoll registration in splice is untouched, and no
// FIN is sent while the duplicate is open. Peek(-1) covers both gnet's
// inbound buffer and the bytes of the current read, so nothing the client
// sent past its head is lost: it travels as Job.Held. gnet conns are not
// pooled, so a late AsyncWrite/Close from the header-timeout ticker on a
// conn that was handed off meets !opened and does nothing.
func (f *front) handOff(c gnet.Conn, cc *clientConn, srv *server, loc *location, req *handshake.Request, buf []byte) gnet.Action {
	if f.e.goFront.tlsUpstream(loc) != nil { // TLS backends: no splice (see tls.go)
		return f.handOffGo(c, cc, srv, loc, req, buf)
	}
	fd, err := c.Dup()
	if err != nil {
		return f.refuse(c, cc, srv, req, 503, fmt.Errorf("dup client socket: %w", err))
	}
	t := f.e.newTunnel(cc, srv, loc, req)
	upReq := make([]byte, 0, req.HeadLen+192)
	upReq = handshake.AppendUpstreamRequest(upReq, req, &handshake.Forward{
		ClientAddr: t.clientIP(),
		Proto:      "http",
		Host:       loc.host,
	})
	var held []byte
	if rest := buf[req.HeadLen:]; len(rest) > 0 {
		held = append([]byte(nil), rest...)
	}
	job := spliceJob(fd, held, upReq, loc, t)
	cc.handedOff = true
	_, _ = c.Discard(-1)
	if err := f.e.pool.Submit(job); err != nil {
		// The pool is closing: the fd is still ours.
		_ = unix.Close(fd)
		cc.handedOff = false
		t.slot.release()
		return f.refuse(c, cc, srv, req, 503, err)
	}
	return gnet.Close
}

// maxReplyHead bounds what an upstream may send before its answer is
// judged; a longer head is refused as invalid.
const maxReplyHead = 16 << 10

// refuse answers with an error status and closes. The answer is queued on
// gnet's outbound buffer, which gnet flushes before it closes the socket.
func (f *front) refuse(c gnet.Conn, cc *clientConn, srv *server, req *handshake.Request, status int, err error) gnet.Action {
	_, _ = c.Discard(-1)
	var b [512]byte
	out := handshake.AppendErrorResponse(b[:0], status, err)
	_, _ = c.Write(out)
	f.e.countRefused(status)
	f.e.access.refused(cc, srv, req, status, err)
	return gnet.Close
}

// OnTick closes connections that did not finish their head within the
// header timeout. It runs on gnet's ticker goroutine, so it only uses
// gnet's concurrency-safe calls.
func (f *front) OnTick() (time.Duration, gnet.Action) {
	f.readyOnce.Do(func() { close(f.ready) })
	now := time.Now().UnixNano()
	// The listeners in force and those of configs since replaced: heads
	// that began under an older config still get their timeout.
	for _, r := range append(f.e.retiredRouters(), f.e.rt()) {
		for _, ln := range r.listeners {
			if ln.certs == nil {
				ln.pending.expire(now, f.timeout)
				ln.parked.expire(now, closeParked)
			}
		}
	}
	return tickInterval, gnet.None
}

// tickInterval is the header timeout's granularity.
const tickInterval = 100 * time.Millisecond

var timeoutResponse = handshake.AppendErrorResponse(nil, 408, errHeaderTimeout)

// closeParked ends a parked connection at keepalive_timeout: no answer,
// as nginx closes an idle kept-alive connection.
func closeParked(c gnet.Conn) { _ = c.Close() }

func (f *front) timeout(c gnet.Conn) {
	_ = c.AsyncWrite(timeoutResponse, func(c gnet.Conn, err error) error {
		if cc, _ := c.Context().(*clientConn); cc != nil && err == nil {
			f.e.countRefused(408)
			f.e.access.refused(cc, nil, nil, 408, errHeaderTimeout)
		}
		return c.Close()
	})
}

func (f *front) getRequest() *handshake.Request {
	if r, ok := f.reqPool.Get().(*handshake.Request); ok {
		return r
	}
	return new(handshake.Request)
}

// headComplete reports whether buf holds the blank line that ends a head
// (CRLF CRLF; a bare LF form too, so that the parser gets to refuse it).
// *scanned remembers how far earlier calls looked, so a head that arrives in
// many pieces is searched once overall.
func headComplete(buf []byte, scanned *int) bool {
	start := *scanned - 2
	if start < 0 {
		start = 0
	}
	for i := start; i+1 < len(buf); i++ {
		if buf[i] != '\n' {
			continue
		}
		if buf[i+1] == '\n' || (i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n') {
			return true
		}
	}
	*scanned = len(buf)
	return false
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// unlist takes cc off its listener's pending or parked list.
func (cc *clientConn) unlist() {
	if cc.parked {
		cc.ln.parked.remove(cc)
	} else {
		cc.ln.pending.remove(cc)
	}
}
