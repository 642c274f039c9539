package engine

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/valyala/fasthttp"

	"github.com/sluice-proxy/sluice/handshake"
	"github.com/sluice-proxy/sluice/upstream"
)

// Plain HTTP proxying: one fasthttp.HostClient per (location, backend
// address), each a keep-alive pool, so a backend's connections are reused
// across clients. Request and response bodies stream through fasthttp's
// buffers; neither ever sits whole in memory.

// dialError marks a failure to connect: nothing of the request was sent,
// so the next backend may be tried (nginx's proxy_next_upstream error
// timeout, for any method: the body has not been read yet).
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

var (
	errPlainTimeout  = errors.New("upstream did not answer in time")
	errPlainFailed   = errors.New("upstream connection failed")
	errPlainSwitched = errors.New("upstream switched protocols on a request that asked for none")
)

// hostClient returns the keep-alive pool of loc's backend at addr.
func (p *plainServer) hostClient(loc *location, addr netip.AddrPort) *fasthttp.HostClient {
	k := clientKey{loc, addr}
	if c := (*p.clients.Load())[k]; c != nil {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.clients.Load()
	if c := old[k]; c != nil {
		return c // made while this request waited for mu
	}
	lc := loc.cfg
	connectTimeout, readTimeout, sendTimeout := lc.ConnectTimeout.D(), lc.ReadTimeout.D(), lc.SendTimeout.D()
	c := &fasthttp.HostClient{
		Addr: addr.String(),
		Dial: func(a string) (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", a, connectTimeout)
			if err != nil {
				return nil, &dialError{err}
			}
			return &idleConn{Conn: conn, raw: newRawIO(conn), read: readTimeout, send: sendTimeout}, nil
		},
		// Enough that a busy backend never meets fasthttp's own
		// ErrNoFreeConns; max_conns is the operator's cap, applied by the
		// group before a request gets here.
		MaxConns:            1 << 16,
		MaxIdleConnDuration: 60 * time.Second,
		// read_timeout and send_timeout are nginx's: between two reads,
		// between two writes (idleConn). fasthttp's own would bound the
		// whole answer, cutting off a long download.
		ReadBufferSize:     int(lc.BufferSize),
		WriteBufferSize:    int(lc.BufferSize),
		StreamResponseBody: true,
		// Retries are decided here, by the group, not inside fasthttp.
		MaxIdemponentCallAttempts:     1,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
	}
	if tc := p.e.goFront.tlsUpstream(loc); tc != nil {
		c.IsTLS = true
		c.TLSConfig = tlsFor(tc, addr)
	}
	m := maps.Clone(old)
	m[k] = c
	p.clients.Store(&m)
	return c
}

// idleConn bounds each read and each write to a backend: nginx's
// proxy_read_timeout and proxy_send_timeout.
type idleConn struct {
	net.Conn
	raw        *rawIO // nil: conn's own Read and Write
	read, send time.Duration
	rd, wd     idleDeadline
}

func (c *idleConn) Read(b []byte) (int, error) {
	// No runtime.Gosched() before the first read of an answer (nor before
	// a client's next request), though it saved a failed read (EAGAIN) and
	// a park most of the time, and 15% of the CPU per proxied GET: with
	// it, bench-http's p99 rose from 3.2 to 8.5 ms (static files, 1.7 to
	// 9.9 ms). Likely cause: yielding goroutines keep the run queue from
	// emptying, and the scheduler polls the network when it empties or,
	// failing that, from sysmon every 10 ms.
	c.rd.push(c.Conn.SetReadDeadline, c.read)
	if c.raw != nil {
		return c.raw.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	c.wd.push(c.Conn.SetWriteDeadline, c.send)
	if c.raw != nil {
		return c.raw.Write(b)
	}
	return c.Conn.Write(b)
}

// closeIdle closes every backend connection waiting in a pool (Stop, and
// tests that count fds).
func (p *plainServer) closeIdle() {
	for _, c := range *p.clients.Load() {
		c.CloseIdleConnections()
	}
}

// tlsFor fills in SNI (the backend's host, as on the tunnel path) when
// the config does not set server_name.
func tlsFor(tc *tls.Config, addr netip.AddrPort) *tls.Config {
	if tc.ServerName != "" {
		return tc
	}
	c := tc.Clone()
	c.ServerName = addr.Addr().String()
	return c
}

// proxy forwards one plain request to loc's group and leaves the answer in
// ctx.Response for fasthttp to write (its body streaming from the backend).
// It returns the backend's name for the access log.
func (p *plainServer) proxy(ctx *fasthttp.RequestCtx, hc *httpConn, cc *clientConn, loc *location, req *handshake.Request, sc *plainScratch) string {
	h := &ctx.Request.Header
	clientClose := h.ConnectionClose()
	for i := range req.Headers {
		if req.DropOnForward(i) {
			delRequestHeader(h, req.Headers[i].Name)
		}
	}
	h.ResetConnectionClose() // the backend connection stays in the pool
	var ipb [48]byte
	ip := cc.remote.Addr().Unmap().AppendTo(ipb[:0])
	if !cc.remote.IsValid() {
		ip = nil
	}
	h.SetBytesV("X-Real-IP", orUnknown(ip))
	sc.xff = handshake.AppendForwardedFor(sc.xff[:0], req, ip)
	h.SetBytesV("X-Forwarded-For", sc.xff)
	if p.tls {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if loc.host != nil {
		h.SetHostBytes(loc.host)
	}
	if req.ContentLength > 0 || req.Chunked {
		hc.inBody = true
		defer func() { hc.inBody = false }()
	}

	var (
		sel  = &sc.sel
		last error
		name = "-"
	)
	sel.Reset(balanceKey(loc.group.KeySource(), cc.remote.Addr(), req))
	for {
		s, err := loc.group.Next(sel)
		if err != nil {
			p.noServer(ctx, loc, sel, err, last)
			break
		}
		name = s.Name
		err = p.hostClient(loc, s.Addr).Do(&ctx.Request, &ctx.Response)
		if err == nil && ctx.Response.StatusCode() == fasthttp.StatusSwitchingProtocols {
			ctx.Response.Reset()
			err = errPlainSwitched
		}
		if err == nil {
			s.Answered()
			stripResponseHopByHop(&ctx.Response.Header)
			readSmallBody(&ctx.Response, sc)
			break
		}
		s.Failed()
		last = err
		p.e.log.Warn("upstream request failed", zapServer(s), zapErr(err))
		var de *dialError
		if errors.As(err, &de) {
			continue // nothing was sent: the next server may take it
		}
		ctx.Response.Reset()
		status, cause := 502, errPlainFailed
		if isPlainTimeout(err) {
			status, cause = 504, errPlainTimeout
		}
		if errors.Is(err, errPlainSwitched) {
			cause = errPlainSwitched
		}
		httpError(ctx, status, cause)
		break
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
	return name
}

// noServer answers when the group has no (further) server to offer, with
// the statuses of the tunnel path (pickAnswers, then the last failure).
func (p *plainServer) noServer(ctx *fasthttp.RequestCtx, loc *location, sel *upstream.Selection, err, last error) {
	ctx.Response.Reset()
	switch {
	case errors.Is(err, upstream.ErrAllFull):
		httpError(ctx, 503, upstream.ErrAllFull)
		ctx.Response.Header.Set("Retry-After", "1")
	case last == nil || sel.Attempts() == 0:
		p.e.log.Warn("no upstream server available", zap.String("group", loc.group.Name), zapErr(err))
		httpError(ctx, 502, upstream.ErrNoLiveUpstreams)
	case isPlainTimeout(last):
		httpError(ctx, 504, errPlainTimeout)
	default:
		httpError(ctx, 502, errPlainFailed)
	}
}

// smallBody is the largest answer body that is read whole before the
// answer goes out: it has nearly always arrived with the head, and
// fasthttp's streaming of a body (the backend connection held by the
// stream, copied through, released when the stream closes) costs a small
// request more than all the rest of its answer. Larger bodies, and bodies
// of unknown length, stream.
const smallBody = 8 << 10

// readSmallBody reads a streamed answer body of at most smallBody bytes
// into the answer itself, which gives the backend connection back to its
// pool at once. A body the backend breaks off goes out as it would have
// streamed: the head, what came of the body, then the connection closes.
func readSmallBody(resp *fasthttp.Response, sc *plainScratch) {
	bs := resp.BodyStream()
	cl := resp.Header.ContentLength()
	if bs == nil || cl < 0 || cl > smallBody {
		return
	}
	b := sc.body[:cl+1]
	n := 0
	for {
		// Reading to io.EOF (one read past the body, answered without
		// touching the connection) lets the stream's close keep the
		// connection for the next request.
		m, err := bs.Read(b[n:])
		n += m
		if err == io.EOF && n == cl {
			resp.SetBody(b[:n]) // closes the stream: the connection goes back
			return
		}
		if err == nil && n <= cl {
			continue
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		resp.SetBodyStream(&brokenBody{b: append([]byte(nil), b[:n]...), err: err}, cl)
		return
	}
}

// brokenBody is what arrived of a small body before its backend failed,
// then the failure.
type brokenBody struct {
	b   []byte
	err error
}

func (r *brokenBody) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func isPlainTimeout(err error) bool {
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || isTimeout(err)
}

func orUnknown(ip []byte) []byte {
	if len(ip) == 0 {
		return []byte("unknown")
	}
	return ip
}

// delRequestHeader deletes every header of this name from h. With name
// normalising off fasthttp compares names byte for byte, except for the
// headers it keeps in dedicated fields, which it knows only by their
// canonical names; a name such as "connection" can be in both places
// (the field holds "close", the list any other value), so both go.
func delRequestHeader(h *fasthttp.RequestHeader, name []byte) {
	for _, c := range canonicalNames {
		if asciiEqualFold(name, c) {
			h.Del(c)
			break
		}
	}
	h.DelBytes(name)
}

var canonicalNames = [...]string{"Host", "Content-Type", "User-Agent", "Cookie", "Content-Length", "Connection", "Trailer", "Transfer-Encoding"}

// stripResponseHopByHop removes what describes the backend's connection
// to sluice from its answer (RFC 9110 §7.6.1): the standard hop-by-hop
// headers, every Connection header, and every header one of them names,
// however the backend spells them (the client keeps names as they came).
// fasthttp writes its own Connection and framing for the client's
// connection. The common answer costs no allocation.
func stripResponseHopByHop(h *fasthttp.ResponseHeader) {
	h.ResetConnectionClose()
	// The names listed, copied: deleting headers moves the bytes they
	// point into.
	var buf [128]byte
	named := buf[:0]
	for k, v := range h.All() {
		if asciiEqualFold(k, fasthttp.HeaderConnection) {
			named = append(append(named, v...), ',')
		}
	}
	// One deletion per walk, as deleting moves the headers All walks. Each
	// deletion removes a header for good, so the walks end; the bound is
	// for safety only.
	for range 256 {
		var drop []byte
		for k := range h.All() {
			if isHopByHop(k) || listsName(named, k) {
				drop = k
				break
			}
		}
		if drop == nil {
			return
		}
		// DelBytes copies the name before it deletes; as spelled here it
		// finds the header stored under that spelling, and the headers
		// fasthttp keeps in fields are walked under their canonical names.
		h.DelBytes(drop)
	}
}

// isHopByHop reports whether a header of this name is hop-by-hop by
// definition (RFC 9110 §7.6.1 and the legacy ones RFC 9112 lists).
func isHopByHop(k []byte) bool {
	switch len(k) {
	case 2:
		return asciiEqualFold(k, "TE")
	case 7:
		return asciiEqualFold(k, "Upgrade") || asciiEqualFold(k, "Trailer")
	case 10:
		return asciiEqualFold(k, "Connection") || asciiEqualFold(k, "Keep-Alive")
	case 16:
		return asciiEqualFold(k, "Proxy-Connection")
	}
	return false
}

// listsName reports whether the comma-separated list (Connection header
// values) has name among its items, in any case.
func listsName(list, name []byte) bool {
	for len(list) > 0 {
		item := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		for len(item) > 0 && (item[0] == ' ' || item[0] == '\t') {
			item = item[1:]
		}
		for len(item) > 0 && (item[len(item)-1] == ' ' || item[len(item)-1] == '\t') {
			item = item[:len(item)-1]
		}
		if len(item) == len(name) && asciiEqualFold(item, string(name)) {
			return true
		}
	}
	return false
}
