package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/guard"
	"github.com/sluice-proxy/sluice/handshake"
)

// goFront is the goroutine path: connections whose bytes must pass through
// user space (TLS listeners, and plaintext clients of a TLS upstream) cannot
// be spliced, so they get one goroutine while the head is read and the
// upstream answers, and two while the tunnel relays. They share the
// handshake, routing and upstream code with the gnet/splice path; only the
// byte moving differs.
//
// Why not kTLS: it is not available here, and without it every byte is
// decrypted by crypto/tls anyway.
type goFront struct {
	e *Engine

	bufMu sync.Mutex
	bufs  map[int]*sync.Pool // relay buffers by location buffer_size

	drainDeadline atomic.Int64 // a shutdown's drain deadline, unix ns (drain.go)
	drainForced   atomic.Int64 // goroutine-path tunnels drained without close frames

	lnMu sync.Mutex
	lns  map[string]*boundListener // TLS listening sockets by address
	wg   sync.WaitGroup
	live atomic.Int64 // connections on this path, head to close

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // every socket, so Stop can close them
	closing bool
}

func newGoFront(e *Engine) *goFront {
	return &goFront{e: e, bufs: map[int]*sync.Pool{}, conns: map[net.Conn]struct{}{}, lns: map[string]*boundListener{}}
}

// bufPool is the pool of relay buffers of one size (taken when a relay
// direction starts a burst, not per chunk).
func (g *goFront) bufPool(size int) *sync.Pool {
	g.bufMu.Lock()
	defer g.bufMu.Unlock()
	p := g.bufs[size]
	if p == nil {
		p = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
		g.bufs[size] = p
	}
	return p
}

// buildTLS loads every certificate and upstream CA bundle of cfg onto r's
// listeners (ln.certs) and locations (loc.upTLS).
func buildTLS(r *router, cfg *configs.Config) error {
	for _, ln := range r.listeners {
		var st *certStore
		for _, s := range ln.servers {
			if s.cfg.TLS == nil {
				continue
			}
			if st == nil {
				// The default server's min_version applies to the whole
				// address: the version is negotiated before the Host is known
				// (nginx's ssl_protocols behaves the same).
				minV, _ := configs.TLSVersion(s.cfg.TLS.MinVersion)
				st = &certStore{}
				st.config = &tls.Config{
					MinVersion:     minV,
					NextProtos:     []string{"http/1.1"},
					GetCertificate: st.get,
				}
			}
			for _, c := range s.cfg.TLS.Certificates {
				st.pairs = append(st.pairs, [2]string{cfg.ResolvePath(c.Cert), cfg.ResolvePath(c.Key)})
			}
		}
		if st == nil {
			continue
		}
		if err := st.load(); err != nil {
			return fmt.Errorf("listen %s: %w", ln.addr, err)
		}
		ln.certs = st
	}
	for _, ln := range r.listeners {
		for _, s := range ln.servers {
			for _, loc := range s.locations {
				if loc.upTLS != nil || !loc.cfg.TLSUpstream() {
					continue
				}
				c, err := upstreamTLSConfig(cfg, loc.cfg.UpstreamTLS)
				if err != nil {
					return fmt.Errorf("location %s: %w", loc.cfg.Path, err)
				}
				loc.upTLS = c
			}
		}
	}
	return nil
}

// upstreamTLSConfig is the client side of TLS to backends. ServerName is
// left empty when the config does not set it: each dial fills in the host
// of the backend it dials.
func upstreamTLSConfig(cfg *configs.Config, u *configs.UpstreamTLS) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if u == nil {
		return c, nil
	}
	c.ServerName = u.ServerName
	c.InsecureSkipVerify = !u.VerifyUpstream()
	if u.CAFile != "" {
		pool, err := configs.LoadCAFile(cfg.ResolvePath(u.CAFile))
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// serves reports whether ln is a TLS listener (served here, not by gnet).
func (g *goFront) serves(ln *listener) bool { return ln.certs != nil }

// tlsUpstream returns the client TLS config of loc's backends, or nil for
// plaintext backends (which splice relays).
func (g *goFront) tlsUpstream(loc *location) *tls.Config { return loc.upTLS }

// bind listens on every TLS address; serve starts accepting. They are
// separate so that Start can bind everything before anything is served.
func (g *goFront) bind() error {
	for _, ln := range g.e.rt().listeners {
		if ln.certs == nil {
			continue
		}
		if err := g.bindOne(ln.addr); err != nil {
			g.closeListeners()
			return err
		}
	}
	return nil
}

func (g *goFront) bindOne(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	g.lnMu.Lock()
	g.lns[addr] = &boundListener{Listener: l, addr: addr}
	g.lnMu.Unlock()
	return nil
}

// bindServe binds a TLS address a reload added and starts accepting.
func (g *goFront) bindServe(addr string) error {
	if err := g.bindOne(addr); err != nil {
		return err
	}
	g.lnMu.Lock()
	b := g.lns[addr]
	g.lnMu.Unlock()
	g.wg.Add(1)
	go g.accept(b)
	return nil
}

// unbind closes a TLS address a reload removed; its connections go on.
func (g *goFront) unbind(addr string) {
	g.lnMu.Lock()
	b := g.lns[addr]
	delete(g.lns, addr)
	g.lnMu.Unlock()
	if b != nil {
		_ = b.Close()
	}
}

// boundListener is a TLS listening socket. It outlives config reloads: each
// accepted connection is served by the listener its address has in the
// config current at that moment.
type boundListener struct {
	net.Listener
	addr string
}

func (g *goFront) serve() {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	for _, b := range g.lns {
		g.wg.Add(1)
		go g.accept(b)
	}
}

func (g *goFront) addrs() []string {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	out := make([]string, 0, len(g.lns))
	for _, l := range g.lns {
		out = append(out, "tls://"+l.Addr().String())
	}
	return out
}

func (g *goFront) closeListeners() {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	for _, l := range g.lns {
		_ = l.Close()
	}
}

// stop closes the listeners and every connection of this path, then
// waits for their goroutines.
func (g *goFront) stop() {
	g.mu.Lock()
	g.closing = true
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.closeListeners()
	g.wg.Wait()
}

// track registers a socket so that stop can close it; false means the
// engine is stopping and the caller must close it.
func (g *goFront) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *goFront) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	_ = c.Close()
}

func (g *goFront) stopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// accept runs one listener. A temporary accept error (EMFILE) backs off
// instead of ending the listener, unlike gnet's acceptor.
func (g *goFront) accept(b *boundListener) {
	defer g.wg.Done()
	var backoff time.Duration
	for {
		// Backpressure: at the cap, the next connections wait in the
		// kernel's backlog until one ends, as in nginx and HAProxy (the
		// plaintext accept loops do the same, listeners.go).
		g.e.waitForCapacity(b.addr, g.e.overCapacity, g.stopping)
		c, err := b.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.e.log.Warn("accept failed", zap.String("listen", b.addr), zapErr(err))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if g.e.overCapacity() { // the cap was reached by another listener meanwhile
			g.e.shed()
			_ = c.Close()
			continue
		}
		ln := g.e.rt().listenerAt(b.addr)
		if ln == nil || ln.certs == nil { // removed by a reload a moment ago
			_ = c.Close()
			continue
		}
		if !g.track(c) {
			_ = c.Close()
			return
		}
		g.wg.Add(1)
		g.live.Add(1)
		go g.serveTLS(ln, ln.certs, c)
	}
}

// serveTLS runs the TLS handshake and reads the request head, both within
// client_header_timeout from accept, then proxies. A client that stalls
// in the handshake is cut off by the same deadline as one that stalls in
// its head: a slot held for nothing must cost the holder, not the proxy.
func (g *goFront) serveTLS(ln *listener, st *certStore, raw net.Conn) {
	fin := func() {
		g.untrack(raw)
		g.live.Add(-1)
		g.wg.Done()
	}
	proxied := false
	defer func() {
		if !proxied {
			fin()
		}
	}()
	opened := time.Now()
	cc := &clientConn{ln: ln, opened: opened.UnixNano(), remote: addrPort(raw.RemoteAddr())}
	_ = raw.SetDeadline(opened.Add(ln.headerTimeout))
	under := raw
	if trusted, on := ln.proxyTrust, ln.proxyOn; on {
		var ok bool
		if under, ok = g.readProxyHeader(raw, cc, trusted); !ok {
			return
		}
	}
	conn := tls.Server(under, st.config)
	if err := conn.Handshake(); err != nil {
		g.e.log.Debug("TLS handshake failed", zap.Stringer("client", cc.remote), zapErr(err))
		return
	}
	buf := make([]byte, ln.maxHead)
	n, scanned := 0, 0
	req := new(handshake.Request)
	for {
		m, err := conn.Read(buf[n:])
		n += m
		if headComplete(buf[:n], &scanned) || n == len(buf) {
			perr := handshake.ParseRequest(buf[:n], ln.maxHead, req)
			if perr == nil {
				break
			}
			if n == len(buf) && errors.Is(perr, handshake.ErrIncomplete) {
				perr = handshake.ErrHeadTooLarge // never read into an empty slice
			}
			if !errors.Is(perr, handshake.ErrIncomplete) {
				g.refuse(conn, cc, nil, req, handshake.StatusOf(perr), perr)
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				g.refuse(conn, cc, nil, nil, 408, errHeaderTimeout)
			}
			return
		}
	}
	srv, loc, plain, status, err := ln.route(req)
	if err != nil {
		g.refuse(conn, cc, srv, req, status, err)
		return
	}
	if plain {
		_ = raw.SetDeadline(time.Time{})
		hc := &httpConn{Conn: conn, rest: buf[:n], remote: cc.remote, fin: fin, headTimeout: ln.headerTimeout}
		hc.followHeads()
		proxied = true // servePlain calls fin, or the tunnel it hands over to does
		g.servePlain(ln, hc)
		return
	}
	if r, ok := g.e.admit(cc, srv, loc, req, false); !ok {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		g.e.refuseWith(conn, cc, srv, req, r)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	t := g.e.newTunnel(cc, srv, loc, req)
	upReq := handshake.AppendUpstreamRequest(make([]byte, 0, req.HeadLen+192), req, &handshake.Forward{
		ClientAddr: t.clientIP(),
		Proto:      "https",
		Host:       loc.host,
	})
	held := append([]byte(nil), buf[req.HeadLen:n]...)
	proxied = true
	g.proxy(conn, t, loc, upReq, held, fin)
}

// refuse answers a client of the goroutine path with an error status.
func (g *goFront) refuse(conn net.Conn, cc *clientConn, srv *server, req *handshake.Request, status int, err error) {
	var b [512]byte
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write(handshake.AppendErrorResponse(b[:0], status, err))
	g.e.countRefused(status)
	g.e.access.refused(cc, srv, req, status, err)
}

// handOffGo is handOff for a plaintext client whose location has TLS
// backends: the relay must encrypt, so the client's fd leaves gnet for the
// goroutine path instead of splice. The same rules as handOff hold: the
// duplicate is taken and gnet's copy closed in this OnTraffic.
func (f *front) handOffGo(c gnet.Conn, cc *clientConn, srv *server, loc *location, req *handshake.Request, buf []byte) gnet.Action {
	g := f.e.goFront
	conn, err := dupConn(c)
	if err != nil {
		return f.refuse(c, cc, srv, req, 503, err)
	}
	if !g.track(conn) {
		_ = conn.Close()
		return f.refuse(c, cc, srv, req, 503, errStopping)
	}
	t := f.e.newTunnel(cc, srv, loc, req)
	upReq := handshake.AppendUpstreamRequest(make([]byte, 0, req.HeadLen+192), req, &handshake.Forward{
		ClientAddr: t.clientIP(),
		Proto:      "http",
		Host:       loc.host,
	})
	held := append([]byte(nil), buf[req.HeadLen:]...)
	cc.handedOff = true
	_, _ = c.Discard(-1)
	g.wg.Add(1)
	g.live.Add(1)
	go g.proxy(conn, t, loc, upReq, held, func() {
		g.untrack(conn)
		g.live.Add(-1)
		g.wg.Done()
	})
	return gnet.Close
}

var errStopping = errors.New("the proxy is shutting down")

// backlogPoll is how often an accept loop held at max_connections looks
// at the connection count again.
const backlogPoll = 10 * time.Millisecond

// dupConn duplicates a gnet conn's socket as a Go net.Conn; gnet's copy is
// the caller's to close (by returning gnet.Close).
func dupConn(c gnet.Conn) (net.Conn, error) {
	fd, err := c.Dup()
	if err != nil {
		return nil, fmt.Errorf("dup client socket: %w", err)
	}
	file := os.NewFile(uintptr(fd), "client")
	conn, err := net.FileConn(file) // dups again: file's fd is ours to close
	_ = file.Close()
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	return conn, nil
}

// certStore holds one TLS listener's certificates. The index is swapped
// whole on reload, so a handshake sees either the old set or the new one.
type certStore struct {
	pairs  [][2]string // cert and key paths, in config order
	cur    atomic.Pointer[certIndex]
	config *tls.Config
}

// certIndex finds a certificate by SNI: an exact DNS name of a
// certificate, then a wildcard one level up ("*.example.com" for
// "a.example.com", RFC 6125 §6.4.3: the wildcard covers one label), then
// the first certificate. A name listed by two certificates belongs to the
// first.
type certIndex struct {
	def   *tls.Certificate
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // "example.com" for "*.example.com"
}

// load reads every pair from disk and swaps the index; on any error the
// previous index stays.
func (s *certStore) load() error {
	ix := &certIndex{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for _, p := range s.pairs {
		c, err := tls.LoadX509KeyPair(p[0], p[1])
		if err != nil {
			return fmt.Errorf("certificate %s, key %s: %w", p[0], p[1], err)
		}
		if ix.def == nil {
			ix.def = &c
		}
		if c.Leaf == nil {
			continue
		}
		for _, n := range c.Leaf.DNSNames {
			n = strings.ToLower(n)
			m := ix.exact
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				n, m = rest, ix.wild
			}
			if m[n] == nil {
				m[n] = &c
			}
		}
	}
	s.cur.Store(ix)
	return nil
}

func (s *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ix := s.cur.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c := ix.exact[name]; c != nil {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := ix.wild[name[i+1:]]; c != nil {
			return c, nil
		}
	}
	return ix.def, nil
}

// ReloadCertificates reads every TLS listener's certificates and keys from
// disk again (SIGHUP). A listener whose files do not all load keeps its
// previous certificates; the error names the pair. Connections already
// established keep the session they have.
func (e *Engine) ReloadCertificates() error {
	var errs []error
	for _, ln := range e.rt().listeners {
		st := ln.certs
		if st == nil {
			continue
		}
		if err := st.load(); err != nil {
			errs = append(errs, fmt.Errorf("listen %s: %w", ln.addr, err))
		}
	}
	return errors.Join(errs...)
}

// readProxyHeader reads the PROXY protocol header a listener with
// proxy_protocol = true requires, in front of the TLS handshake (the
// balancer writes it before the client's first byte, so it is plaintext
// here too). The client address becomes the header's source when the peer
// is trusted, as on the gnet path. Bytes read past the header (the start of
// the ClientHello) are handed back through the returned conn. A missing or
// malformed header closes the connection without an answer: the client
// speaks TLS, so a plaintext 400 would only be noise (HAProxy closes too).
func (g *goFront) readProxyHeader(raw net.Conn, cc *clientConn, trusted *guard.RealIP) (net.Conn, bool) {
	buf := make([]byte, handshake.MaxProxyV2)
	n := 0
	for {
		m, err := raw.Read(buf[n:])
		n += m
		src, _, used, perr := handshake.ParseProxyHeader(buf[:n])
		switch {
		case perr == nil:
			if src.IsValid() && trusted.Trusted(cc.remote.Addr()) {
				cc.remote = src
			}
			return &prefixConn{Conn: raw, rest: buf[used:n]}, true
		case !errors.Is(perr, handshake.ErrIncomplete):
			g.e.guards.count(RuleProxyProtocol)
			g.e.countRefused(0)
			g.e.log.Debug("PROXY header refused", zap.Stringer("client", cc.remote), zapErr(perr))
			return nil, false
		case err != nil || n == len(buf):
			return nil, false
		}
	}
}

// prefixConn serves rest before reading on from Conn.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
