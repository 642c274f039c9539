package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/handshake"
	"github.com/sluice-proxy/sluice/splice"
	"github.com/sluice-proxy/sluice/upstream"
)

// Plain HTTP: every connection whose first request is not a WebSocket
// upgrade leaves its front (gnet, or the TLS goroutine path) for fasthttp,
// on the goroutine path: plain requests are short and bodies must stream,
// which fasthttp does well and gnet (unbounded inbound buffers) does not.
// The hand-off carries the bytes the front already read, so fasthttp
// parses the first request again from the start.
//
// Every request fasthttp parses is judged again by package handshake,
// with the same parser and limits as the first head on the upgrade path:
// fasthttp by itself accepts obs-fold and Content-Length beside
// Transfer-Encoding, which is how requests get smuggled past a proxy.
// Then it is routed (server by Host, location by normalised path),
// admitted (allow/deny, limit_req; not limit_conn or Origin, which are
// about tunnels) and served from files (static.go) or proxied through a
// keep-alive pool per backend. An upgrade that arrives later on a
// keep-alive connection is hijacked from fasthttp and becomes a verified
// tunnel like any other: spliced for a plaintext client, relayed by
// goroutines for a TLS one.

// Timeouts of the client side of plain HTTP, nginx's defaults. A request
// head must arrive within the server's client_header_timeout; these apply
// around it.
const (
	bodyReadTimeout  = 60 * time.Second // between two reads of a request body (nginx client_body_timeout)
	plainSendTimeout = 60 * time.Second // between two writes to the client (nginx send_timeout)
)

// keepaliveTimeout is the idle wait for the next request (nginx
// keepalive_timeout). A variable only for TestParkedConnExpires.
var keepaliveTimeout = 75 * time.Second

// parkAfter is how long a plaintext kept-alive connection waits for its
// next request on its goroutine before it goes back to the event loops
// (goFront.park), where it holds no goroutine and no fasthttp buffer
// (BenchmarkIdlePlainConnMemory). A variable only for that benchmark,
// which compares with connections that never park.
var parkAfter = time.Second

// plainServer serves the plain HTTP connections of one listener.
type plainServer struct {
	e     *Engine
	ln    *listener
	srv   *fasthttp.Server
	tls   bool
	heads sync.Pool // *plainScratch

	// clients is read on every proxied request and written once per
	// backend address: an immutable map, replaced whole (under mu) when
	// one is added, so a request takes no lock.
	mu      sync.Mutex
	clients atomic.Pointer[map[clientKey]*fasthttp.HostClient]
}

// plainScratch is one request's rebuilt head and its parse.
type plainScratch struct {
	head []byte
	req  handshake.Request
	path [256]byte
	xff  []byte
	sel  upstream.Selection
	body [smallBody + 1]byte // a small answer body (readSmallBody)
}

type clientKey struct {
	loc  *location
	addr netip.AddrPort
}

func newPlainServer(e *Engine, ln *listener, tls bool) *plainServer {
	p := &plainServer{e: e, ln: ln, tls: tls}
	p.clients.Store(&map[clientKey]*fasthttp.HostClient{})
	p.srv = &fasthttp.Server{
		Handler:      p.handle,
		ErrorHandler: p.parseError,
		Name:         "sluice",
		// A head that fits max_header_bytes must fit fasthttp's buffer;
		// a larger one fails there with ErrSmallBuffer (431), as it would
		// in handshake.ParseRequest.
		ReadBufferSize:  max(ln.maxHead, 4096),
		WriteBufferSize: 16 << 10,
		// No ReadTimeout or IdleTimeout: fasthttp would re-arm the read
		// deadline twice per request (the idle wait, then the head), which
		// cost more than the rest of a small request's bookkeeping.
		// httpConn keeps both, told by ConnState which one applies.
		ConnState: plainConnState,
		// ctx.Time() reads the clock when asked, not on every request.
		LazyRequestTime: true,
		// Bodies stream: a 1 GiB upload passes through a bounded buffer.
		StreamRequestBody: true,
		// Names and paths exactly as sent: handshake judges them, and the
		// upstream gets them byte for byte.
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		NoDefaultContentType:          true,
		// The connection of an upgrade is ours after Hijack (tunnelFrom).
		KeepHijackedConns: true,
		ReduceMemoryUsage: true,
		Logger:            fasthttpLogger{e.log},
	}
	return p
}

// fasthttpLogger sends fasthttp's own messages (a client that went away
// mid-request) to the debug log: they are the client's business.
type fasthttpLogger struct{ l *zap.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if ce := f.l.Check(zap.DebugLevel, "http"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}

// httpConn is a client connection handed to fasthttp. It serves the bytes
// the front already read first, and keeps the read deadline itself:
// client_header_timeout from the first read of a head that did not arrive
// whole, keepalive_timeout for the wait between requests, and nginx's
// per-operation timeouts while a request body streams and on each write
// (fasthttp's own would bound a whole body, cutting off a long upload or
// download).
type httpConn struct {
	net.Conn
	raw         *rawIO // nil: Conn's own Read and Write (TLS)
	rd, wd      idleDeadline
	rdKind      readKind       // what the armed read deadline bounds
	idle        bool           // between requests (fasthttp's StateIdle)
	headTimeout time.Duration  // client_header_timeout
	rest        []byte         // read by the front and not yet passed on
	remote      netip.AddrPort // the client (after a trusted PROXY header)
	inBody      bool           // a handler is streaming the request body
	hijacked    bool           // a tunnel took the connection over
	fin         func()         // releases the connection (goFront accounting)
	back        *gnetListener  // the plaintext socket it came from: it may park
	parking     bool           // quiet for parkAfter: going back to the loops

	head headScan // where the head being read stands (Read)

	// Bytes read from and written to the client, and their values when
	// the last exchange ended: an access-log line gives the difference.
	in, out         int64
	markIn, markOut int64
	line            plainLine // the exchange's line, written once it ends
}

// plainLine is a plain request's access-log line, held until fasthttp
// has written the whole answer (a streamed body goes out after the
// handler returns), so that it tells the bytes that went and the time
// they took, as nginx's $bytes_sent and $request_time do.
type plainLine struct {
	log          accessLog // nil logger: no line pending
	srv          *server
	remote       netip.AddrPort
	method, path string // copies: the head they came from is reused
	upstream     string
	status       int
	start        time.Time
}

// followHeads starts following heads (headScan) at the connection's first
// request, which the front has read and judged; whatever else came with
// it follows in rest.
func (c *httpConn) followHeads() {
	c.head = headScan{on: true}
	c.head.feed(c.rest)
}

// endExchange writes the pending access-log line, if any, with what was
// read and written since the previous exchange ended, and starts the
// count for the next. fasthttp calls it through ConnState when it waits
// for the next request (the answer flushed: ReduceMemoryUsage flushes
// every answer), servePlain when the connection ends.
func (c *httpConn) endExchange() {
	if l := &c.line; l.log.l != nil {
		l.log.request(l.remote, l.srv, l.method, l.path, l.upstream, l.status, time.Since(l.start), c.in-c.markIn, c.out-c.markOut)
		l.log.l = nil
	}
	c.markIn, c.markOut = c.in, c.out
}

// readKind is which timeout an httpConn's read deadline was armed for.
type readKind uint8

const (
	readNone readKind = iota
	readIdle          // keepaliveTimeout after the last read, pushed on each
	readHead          // headTimeout from the head's first read, never pushed
	readBody          // bodyReadTimeout after the last read, pushed on each
	readPark          // parkAfter after the last read, pushed on each
)

func (c *httpConn) Read(b []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		if len(c.rest) == 0 {
			c.rest = nil
		}
		c.in += int64(n)
		return n, nil
	}
	scan := false
	switch {
	case c.hijacked: // the tunnel's deadlines (drainBuffered's included)
	case c.inBody:
		c.armRead(readBody, bodyReadTimeout)
	case c.idle:
		if c.back != nil {
			c.armRead(readPark, parkAfter)
		} else {
			c.armRead(readIdle, keepaliveTimeout)
		}
		c.head = headScan{on: true} // a new head starts with these bytes
		scan = true
	case c.head.bad:
		// fasthttp wants more of a head that has ended, in bare LFs: it
		// waits for CRLF CRLF, which is not coming. Its ErrorHandler
		// answers 400 (parseError).
		return 0, handshake.ErrBareLF
	case c.rdKind != readHead:
		// A head (or what a handler left of a body) that needs another
		// read: it has client_header_timeout from here, as fasthttp's
		// ReadTimeout had from the first byte, a read earlier.
		c.rdKind = readHead
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.headTimeout))
		scan = true
	default:
		scan = true // more of a head
	}
	var n int
	var err error
	if c.raw != nil {
		n, err = c.raw.Read(b)
	} else {
		n, err = c.Conn.Read(b)
	}
	c.in += int64(n)
	if scan && c.head.on {
		c.head.feed(b[:n])
	}
	if n == 0 && c.rdKind == readPark && isTimeout(err) {
		// Nothing is buffered (fasthttp reads when idle only with an empty
		// buffer, rest is empty): the socket can change hands. fasthttp
		// ends a kept-alive connection that timed out waiting without an
		// answer, and calls Close, which leaves it open for servePlain.
		c.parking = true
	}
	return n, err
}

// Close closes the connection unless it is parking (servePlain hands it
// to the event loops).
func (c *httpConn) Close() error {
	if c.parking {
		return nil
	}
	return c.Conn.Close()
}

// headScan follows the request heads that arrive on a connection handed
// to fasthttp, each to its empty line, and notes one whose empty line is
// not CRLF CRLF: fasthttp waits for CRLF CRLF only, so such a head would
// wait out client_header_timeout for its 408 where it deserves a 400.
// Bare LFs inside a head that does end in CRLF CRLF are handshake's to
// refuse once fasthttp has it whole. After a head without a body the next
// one starts (pipelining); after one with a body (a Content-Length other
// than 0, or a Transfer-Encoding) following stops until fasthttp waits
// for a new request with nothing buffered (Read, when idle): body bytes
// are never taken for a head.
type headScan struct {
	on     bool // following a head
	bad    bool // a head ended in an empty line that is not CRLF CRLF
	cr     bool // the last byte was CR
	ends   int  // line ends in a row, each CRLF or LF
	bareLF bool // one of them was a bare LF
	body   bool // the head followed announces a body (or may)
	line   [32]byte
	n      int // bytes of the current line, the first len(line) of them kept
}

func (h *headScan) feed(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			h.content(b)
			return
		}
		h.content(b[:i])
		b = b[i+1:]
		if !h.cr {
			h.bareLF = true
		}
		h.cr = false
		h.endLine()
		if h.ends++; h.ends < 2 {
			continue
		}
		if h.bareLF {
			h.on, h.bad = false, true
			return
		}
		if h.body {
			h.on = false
			return
		}
		*h = headScan{on: true} // the next head, pipelined
	}
}

// content takes bytes of a line, up to its LF.
func (h *headScan) content(seg []byte) {
	if len(seg) == 0 {
		return
	}
	for _, x := range seg {
		if x != '\r' {
			// A line with something in it: the run of line ends is over.
			h.ends, h.bareLF = 0, false
			break
		}
	}
	h.cr = seg[len(seg)-1] == '\r'
	if h.n < len(h.line) {
		copy(h.line[h.n:], seg)
	}
	h.n += len(seg)
}

// endLine notes whether the line just ended announces a body.
func (h *headScan) endLine() {
	line, whole := h.line[:min(h.n, len(h.line))], h.n <= len(h.line)
	h.n = 0
	if whole && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	switch {
	case hasPrefixFold(line, "transfer-encoding:"):
		h.body = true
	case hasPrefixFold(line, "content-length:"):
		v := bytes.TrimLeft(line[len("content-length:"):], " \t")
		v = bytes.TrimRight(v, " \t")
		if !whole || len(v) == 0 || len(bytes.Trim(v, "0")) > 0 {
			h.body = true
		}
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && asciiEqualFold(b[:len(prefix)], prefix)
}

// armRead pushes the read deadline of a pushed kind, at once when the
// armed deadline was of another kind.
func (c *httpConn) armRead(k readKind, timeout time.Duration) {
	if c.rdKind != k {
		c.rdKind = k
		c.rd.reset()
	}
	c.rd.push(c.Conn.SetReadDeadline, timeout)
}

func (c *httpConn) Write(b []byte) (int, error) {
	c.wd.push(c.Conn.SetWriteDeadline, plainSendTimeout)
	var n int
	var err error
	if c.raw != nil {
		n, err = c.raw.Write(b)
	} else {
		n, err = c.Conn.Write(b)
	}
	c.out += int64(n)
	return n, err
}

// plainConnState tells an httpConn when fasthttp waits for the next
// request (StateIdle) and when its first byte came (StateActive).
func plainConnState(nc net.Conn, st fasthttp.ConnState) {
	c, ok := nc.(*httpConn)
	if !ok {
		return
	}
	switch st {
	case fasthttp.StateIdle:
		c.idle = true
		c.endExchange()
	case fasthttp.StateActive:
		c.idle = false
	}
}

// idleDeadline keeps a connection's deadline at "timeout after the last
// operation" without re-arming the runtime's timer on every read or write,
// which cost more than the rest of a small request's bookkeeping: the
// deadline is pushed only once the previous push is slack old, so it
// fires between timeout-slack and timeout after the last operation.
type idleDeadline struct{ next int64 } // monoNow after which to push again

func (d *idleDeadline) push(set func(time.Time) error, timeout time.Duration) {
	mono := monoNow()
	if mono < d.next {
		return
	}
	_ = set(time.Now().Add(timeout))
	d.next = mono + int64(min(timeout/8, time.Second))
}

// reset forgets the last push: the next operation arms the deadline.
func (d *idleDeadline) reset() { d.next = 0 }

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is nanoseconds on the monotonic clock since monoBase (always
// positive): one clock read, where time.Now takes two (wall and
// monotonic).
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

// servePlain serves conn with fasthttp on the calling goroutine until the
// client leaves, then calls fin; unless an upgrade hijacked the
// connection, whose tunnel then calls fin when it ends.
func (g *goFront) servePlain(ln *listener, hc *httpConn) {
	_ = ln.http.srv.ServeConn(hc)
	if hc.hijacked {
		return
	}
	hc.endExchange()
	if hc.parking {
		g.park(hc)
		return
	}
	hc.fin()
}

// parkedConn is the gnet context of a connection goFront.park hands back:
// the front takes it as an accepted connection whose first request has
// not come yet, and whose client is known.
type parkedConn struct {
	gl     *gnetListener
	remote netip.AddrPort // after a trusted PROXY header
	until  int64          // unix ns: when keepalive_timeout closes it
}

// park gives a plaintext kept-alive connection that has been quiet for
// parkAfter back to the event loops, where it waits for its next request
// as a new connection does (OnOpen, then OnTraffic, which hands a plain
// request over again), and is closed without an answer at the end of
// keepalive_timeout. A busy connection never parks; an idle one holds no
// goroutine and no buffer. gnet duplicates the socket; a failure leaves
// the connection closed, as keepalive_timeout would have.
func (g *goFront) park(hc *httpConn) {
	defer hc.fin() // closes this side's copy (gnet has its own by then)
	gs := &g.e.gnets
	if g.e.draining.Load() {
		return
	}
	p := &parkedConn{gl: hc.back, remote: hc.remote, until: time.Now().Add(keepaliveTimeout - parkAfter).UnixNano()}
	gs.enrolling.Add(1) // counted throughout: max_connections holds
	defer gs.enrolling.Add(-1)
	res, err := gs.eng.Register(gnet.NewNetConnContext(gnet.NewContext(context.Background(), p), hc.Conn))
	if err == nil {
		// Waited for here, not by the reaper: its channel closes when the
		// loops stop, and this goroutine has nothing else left to do.
		<-res
	}
}

// handOffPlain moves a connection whose first request is not a WebSocket
// upgrade from gnet to fasthttp. As in handOff, the duplicate is taken and
// gnet's copy closed in this same OnTraffic, so gnet reads nothing more;
// everything it already read travels along.
func (f *front) handOffPlain(c gnet.Conn, cc *clientConn, buf []byte) gnet.Action {
	g := f.e.goFront
	conn, err := dupConn(c)
	if err != nil {
		return f.refuse(c, cc, nil, nil, 503, err)
	}
	if !g.track(conn) {
		_ = conn.Close()
		return f.refuse(c, cc, nil, nil, 503, errStopping)
	}
	hc := &httpConn{Conn: conn, raw: newRawIO(conn), rest: append([]byte(nil), buf...), remote: cc.remote, headTimeout: cc.ln.headerTimeout}
	if hc.raw != nil {
		hc.back = cc.gl
	}
	hc.followHeads()
	hc.fin = func() {
		g.untrack(conn)
		g.live.Add(-1)
		g.wg.Done()
	}
	cc.handedOff = true
	_, _ = c.Discard(-1)
	g.wg.Add(1)
	g.live.Add(1)
	go g.servePlain(cc.ln, hc)
	return gnet.Close
}

// handle is fasthttp's handler for every request of a plain connection.
func (p *plainServer) handle(ctx *fasthttp.RequestCtx) {
	hc, _ := ctx.Conn().(*httpConn)
	if hc == nil { // cannot happen: every conn served is one
		httpError(ctx, 500, errors.New("connection of unknown origin"))
		ctx.SetConnectionClose()
		return
	}
	sc := p.scratch()
	defer p.heads.Put(sc)
	cc := &clientConn{ln: p.ln, remote: hc.remote}
	// The clock is read only for the access log (a refusal's line and a
	// request's duration) and for a tunnel's start.
	logged := p.e.access.on()
	var start time.Time
	if logged {
		start = time.Now()
		cc.opened = start.UnixNano()
	}

	// The head as sent: fasthttp keeps the raw header block (names not
	// normalised, final CRLF included) but not the request line.
	h := &ctx.Request.Header
	sc.head = append(sc.head[:0], h.Method()...)
	sc.head = append(sc.head, ' ')
	sc.head = append(sc.head, h.RequestURI()...)
	sc.head = append(sc.head, ' ')
	sc.head = append(sc.head, h.Protocol()...)
	sc.head = append(sc.head, "\r\n"...)
	sc.head = append(sc.head, h.RawHeaders()...)
	req := &sc.req
	if err := handshake.ParseRequest(sc.head, len(sc.head)+1, req); err != nil {
		p.reject(ctx, cc, nil, nil, handshake.StatusOf(err), err)
		return
	}
	if err := handshake.CheckPlain(req); err != nil {
		p.reject(ctx, cc, nil, req, handshake.StatusOf(err), err)
		return
	}
	srv := p.ln.serverFor(req.Host)
	if req.HeadLen > srv.maxHead {
		p.reject(ctx, cc, srv, req, handshake.StatusOf(handshake.ErrHeadTooLarge), handshake.ErrHeadTooLarge)
		return
	}
	uerr := handshake.CheckUpgrade(req)
	if uerr != nil && !errors.Is(uerr, handshake.ErrNotUpgrade) && !errors.Is(uerr, handshake.ErrUpgradeNotWebSocket) {
		p.reject(ctx, cc, srv, req, handshake.StatusOf(uerr), uerr)
		return
	}
	path, loc, status, err := srv.locate(sc.path[:0], req.Path)
	if err != nil {
		p.refuse(ctx, cc, srv, req, refusal{status: status, err: err})
		return
	}
	if uerr == nil && !loc.isStatic() {
		if !logged {
			cc.opened = time.Now().UnixNano()
		}
		p.upgrade(ctx, hc, cc, srv, loc, req)
		return
	}
	if r, ok := p.e.admit(cc, srv, loc, req, true); !ok {
		p.refuse(ctx, cc, srv, req, r)
		return
	}
	upstreamName := "-"
	if loc.isStatic() {
		if loc.files == nil {
			httpError(ctx, 404, errNoRoot)
		} else {
			loc.files.serve(ctx, path)
		}
	} else {
		upstreamName = p.proxy(ctx, hc, cc, loc, req, sc)
	}
	loc.m.requests[statusIndex(ctx.Response.StatusCode())].Add(1)
	if logged {
		// Written when the answer has gone out (endExchange).
		l := &hc.line
		*l = plainLine{log: p.e.access, srv: srv, remote: cc.remote,
			method: string(req.Method), path: string(req.Path),
			upstream: upstreamName, status: ctx.Response.StatusCode(), start: start}
	}
}

var errNoRoot = errors.New("the location's root directory is missing")

func (p *plainServer) scratch() *plainScratch {
	if sc, ok := p.heads.Get().(*plainScratch); ok {
		return sc
	}
	return &plainScratch{head: make([]byte, 0, 1024)}
}

// reject answers a request whose head is broken: the connection closes,
// since where its body ends is not known.
func (p *plainServer) reject(ctx *fasthttp.RequestCtx, cc *clientConn, srv *server, req *handshake.Request, status int, err error) {
	ctx.SetConnectionClose()
	p.refuse(ctx, cc, srv, req, refusal{status: status, err: err})
}

// refuse answers a refusal (an admission rule's, or a routing error's) as
// the upgrade path does: the status, the rule's sentinel as the body,
// Retry-After for limit_req, the access-log line and the counters.
func (p *plainServer) refuse(ctx *fasthttp.RequestCtx, cc *clientConn, srv *server, req *handshake.Request, r refusal) {
	if r.status == 0 {
		r.status = handshake.StatusOf(r.err)
	}
	httpError(ctx, r.status, r.err)
	if r.retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(r.retryAfter))
	}
	p.e.countRefused(r.status)
	if r.rule != "" {
		p.e.guards.count(r.rule)
	}
	p.e.access.refusedBy(cc, srv, req, r.status, r.err, r.rule)
}

// parseError answers what fasthttp could not parse at all.
func (p *plainServer) parseError(ctx *fasthttp.RequestCtx, err error) {
	var ne net.Error
	var small *fasthttp.ErrSmallBuffer
	status, cause := 400, handshake.ErrMalformed
	switch {
	case errors.Is(err, handshake.ErrBareLF):
		cause = handshake.ErrBareLF
	case errors.As(err, &small):
		status, cause = 431, handshake.ErrHeadTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		status, cause = 408, errHeaderTimeout
	}
	httpError(ctx, status, cause)
	ctx.SetConnectionClose()
	p.e.countRefused(status)
}

// upgrade turns a WebSocket upgrade that arrived on a keep-alive plain
// connection into a tunnel: admitted like a first request, then hijacked
// from fasthttp without a response; tunnelFrom does the rest.
func (p *plainServer) upgrade(ctx *fasthttp.RequestCtx, hc *httpConn, cc *clientConn, srv *server, loc *location, req *handshake.Request) {
	if r, ok := p.e.admit(cc, srv, loc, req, false); !ok {
		ctx.SetConnectionClose()
		cc.slot.release()
		p.refuse(ctx, cc, srv, req, r)
		return
	}
	t := p.e.newTunnel(cc, srv, loc, req)
	proto := "http"
	if p.tls {
		proto = "https"
	}
	upReq := handshake.AppendUpstreamRequest(make([]byte, 0, req.HeadLen+192), req, &handshake.Forward{
		ClientAddr: t.clientIP(),
		Proto:      proto,
		Host:       loc.host,
	})
	hc.hijacked = true
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) { p.e.goFront.tunnelFrom(c, hc, t, loc, upReq, p.tls) })
}

// tunnelFrom runs on fasthttp's hijack goroutine, after the server loop
// has let go of the connection. Bytes fasthttp read past the upgrade head
// (a client should send none before the 101) are drained from its buffer
// and travel as held bytes; what is still in the kernel stays there for
// the relay. A plaintext client's socket is then duplicated for splice,
// exactly like a first-request upgrade; a TLS one (or a TLS upstream)
// stays on the goroutine path.
func (g *goFront) tunnelFrom(c net.Conn, hc *httpConn, t *tunnel, loc *location, upReq []byte, tlsClient bool) {
	held := drainBuffered(c, hc)
	if tlsClient || g.tlsUpstream(loc) != nil {
		// The relay sets its own deadlines (send_timeout, read_timeout):
		// it gets the connection under httpConn's plain-HTTP timeouts.
		g.proxy(hc.Conn, t, loc, upReq, held, hc.fin)
		return
	}
	fd, err := dupFD(hc.Conn)
	hc.fin() // closes the Go side; the duplicate keeps the socket
	if err == nil {
		job := spliceJob(fd, held, upReq, loc, t)
		if err = g.e.pool.Submit(job); err != nil {
			_ = unix.Close(fd)
		}
	}
	if err != nil {
		g.e.log.Warn("keep-alive upgrade not tunnelled", zapErr(err))
		t.Done(&splice.Report{Start: time.Now(), End: time.Now(), Reason: splice.Shutdown, Err: err})
	}
}

// drainBuffered reads what c (fasthttp's hijacked conn, a buffered reader
// over hc) holds without blocking: a read deadline in the past makes the
// first read that would reach the socket fail at once.
func drainBuffered(c net.Conn, hc *httpConn) []byte {
	var held []byte
	_ = hc.Conn.SetReadDeadline(time.Unix(1, 0))
	var b [4096]byte
	for range 64 { // fasthttp's buffer is at most max_header_bytes
		n, err := c.Read(b[:])
		held = append(held, b[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	_ = hc.Conn.SetReadDeadline(time.Time{})
	return held
}

// dupFD duplicates the socket under a Go net.Conn (close-on-exec): the
// duplicate outlives the conn's Close, which deletes Go's own epoll
// registration before closing its fd.
func dupFD(c net.Conn) (int, error) {
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return -1, errors.New("client connection has no socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, fmt.Errorf("dup client socket: %w", err)
	}
	return fd, nil
}

// spliceJob is the splice job of a verified-upgrade candidate: the
// client's fd, what it sent past its head, and the rewritten request.
func spliceJob(fd int, held, upReq []byte, loc *location, t *tunnel) *splice.Job {
	return &splice.Job{
		ClientFD:         fd,
		Held:             held,
		Request:          upReq,
		ConnectTimeout:   time.Duration(loc.cfg.ConnectTimeout),
		HandshakeTimeout: time.Duration(loc.cfg.HandshakeTimeout),
		ReadTimeout:      time.Duration(loc.cfg.ReadTimeout),
		SendTimeout:      time.Duration(loc.cfg.SendTimeout),
		BufferSize:       int(loc.cfg.BufferSize),
		MaxReplyHead:     maxReplyHead,
		Handler:          t,
		Live:             &t.live,
	}
}

// staticLocation builds a root location. A root that cannot be opened is
// logged and answered 404 (nginx starts too, and logs each miss), so that
// the embedded default runs anywhere.
func staticLocation(cfg *configs.Config, lc *configs.Location, log *zap.Logger) *location {
	loc := &location{cfg: lc, path: []byte(lc.Path), m: new(locMetrics)}
	root := cfg.ResolvePath(lc.Root)
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	files, err := newStatic(staticConfig{Root: root, Index: lc.Index, TryFiles: lc.TryFiles, Compress: lc.CompressOn()})
	if err != nil {
		log.Warn("static root unavailable: its location answers 404", zap.String("location", lc.Path), zap.String("root", root), zapErr(err))
		return loc
	}
	loc.files = files
	return loc
}
