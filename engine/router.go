package engine

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/guard"
	"github.com/sluice-proxy/sluice/handshake"
	"github.com/sluice-proxy/sluice/upstream"
)

// listener is one listen address and the servers that share it. The first
// server configured on an address is its default, as in nginx: its limits
// apply before the Host header is known, and it answers unknown hosts.
type listener struct {
	addr    string         // as configured
	ap      netip.AddrPort // parsed; the address may be unspecified (0.0.0.0)
	servers []*server

	headerTimeout time.Duration // of the default server
	maxHead       int           // the largest max_header_bytes among its servers
	pending       pendingList   // connections still sending their head
	parked        pendingList   // kept-alive connections between requests (goFront.park)
	http          *plainServer  // serves its plain HTTP connections (plain.go)
	certs         *certStore    // a TLS listener's certificates; nil: plaintext (gnet)
	proxyOn       bool          // proxy_protocol: a PROXY header comes first
	proxyTrust    *guard.RealIP // whose PROXY header address is believed; nil: nobody's
}

// server is one [[server]] block.
type server struct {
	cfg       *configs.Server
	exact     []string // lower-case names
	wildcards []string // ".example.com" for "*.example.com"
	locations []*location
	maxHead   int
	name      string       // first server_name or "_", for the access log
	guard     *serverGuard // its admission rules (guard.go)
}

// location is one [[server.location]] block, ready to use: a proxy
// location has a group, a static one (root) has files.
type location struct {
	cfg   *configs.Location
	path  []byte
	group *upstream.Group // nil for a static location
	files *static         // a static location's files; nil while its root is missing
	host  []byte          // Host sent upstream; nil keeps the client's
	m     *locMetrics     // its counters (metrics.go), carried over by reloads
	guard *locationGuard  // its admission rules (guard.go)
	upTLS *tls.Config     // client TLS toward its backends; nil: plaintext (splice)
}

// isStatic reports whether the location serves files.
func (l *location) isStatic() bool { return l.group == nil }

// router maps a connection's local address and a request's Host and path
// to a location. It is built once from a validated config and then only
// read, so event loops share it without locks.
type router struct {
	listeners []*listener
	groups    []*upstream.Group
	files     []*static // every static location's root, closed by stop
}

// buildRouter builds the routing tables and the upstream groups (resolving
// server names). Group events (health changes, new addresses) go to log.
func buildRouter(cfg *configs.Config, log *zap.Logger) (*router, error) {
	r := &router{}
	byAddr := map[string]*listener{}
	groups := map[*configs.Upstream]*upstream.Group{}
	for _, sc := range cfg.Servers {
		s := &server{cfg: sc, maxHead: int(sc.MaxHeaderBytes), name: "_"}
		for _, n := range sc.ServerName {
			n = strings.ToLower(n)
			if s.name == "_" {
				s.name = n
			}
			if strings.HasPrefix(n, "*.") {
				s.wildcards = append(s.wildcards, n[1:])
			} else {
				s.exact = append(s.exact, n)
			}
		}
		for _, lc := range sc.Locations {
			if lc.IsStatic() {
				loc := staticLocation(cfg, lc, log)
				if loc.files != nil {
					r.files = append(r.files, loc.files)
				}
				s.locations = append(s.locations, loc)
				continue
			}
			g, ok := groups[lc.Upstream]
			if !ok {
				var err error
				if g, err = buildGroup(lc.Upstream, log); err != nil {
					r.closeFiles() // the roots opened so far
					return nil, fmt.Errorf("location %s: %w", lc.Path, err)
				}
				groups[lc.Upstream] = g
				r.groups = append(r.groups, g)
			}
			loc := &location{cfg: lc, path: []byte(lc.Path), group: g, m: new(locMetrics)}
			if lc.Host != "" {
				loc.host = []byte(lc.Host)
			}
			s.locations = append(s.locations, loc)
		}
		// Longest prefix first, so the first match wins.
		sort.SliceStable(s.locations, func(i, j int) bool {
			return len(s.locations[i].path) > len(s.locations[j].path)
		})
		for _, addr := range sc.Listen {
			ln := byAddr[addr]
			if ln == nil {
				ap, err := parseListen(addr)
				if err != nil {
					r.closeFiles()
					return nil, err
				}
				ln = &listener{addr: addr, ap: ap, headerTimeout: time.Duration(sc.ClientHeaderTimeout)}
				byAddr[addr] = ln
				r.listeners = append(r.listeners, ln)
			}
			ln.servers = append(ln.servers, s)
			if s.maxHead > ln.maxHead {
				ln.maxHead = s.maxHead
			}
		}
	}
	return r, nil
}

// buildGroup turns a validated [upstream.NAME] (or anonymous group) into
// an upstream.Group. Nothing here is a default: configs filled them all.
func buildGroup(u *configs.Upstream, log *zap.Logger) (*upstream.Group, error) {
	if u == nil {
		return nil, fmt.Errorf("no upstream resolved")
	}
	c := upstream.Config{
		Name:                u.Name,
		Method:              upstream.Method(u.Method),
		HashKey:             u.HashKey,
		Consistent:          u.Consistent,
		MaxTries:            u.MaxTries,
		NextUpstreamTimeout: u.NextUpstreamTimeout.D(),
		ResolveEvery:        u.ResolveEvery().D(),
	}
	for _, sp := range u.Specs() {
		c.Servers = append(c.Servers, upstream.ServerConfig{
			Address:     sp.Address,
			Weight:      sp.Weight,
			MaxConns:    sp.MaxConns,
			MaxFails:    sp.MaxFails,
			FailTimeout: sp.FailTimeout.D(),
			Backup:      sp.Backup,
			Down:        sp.Down,
		})
	}
	if h := u.HealthCheck; h != nil {
		hc := &upstream.HealthCheck{
			HTTP:     h.Type == "http",
			Path:     h.Path,
			Host:     h.Host,
			Interval: h.Interval.D(),
			Timeout:  h.Timeout.D(),
			Rise:     h.Rise,
			Fall:     h.Fall,
			Ping:     h.Ping != nil && *h.Ping,
		}
		for _, r := range h.Expect {
			hc.Expect = append(hc.Expect, upstream.StatusRange{Lo: r.Lo, Hi: r.Hi})
		}
		c.HealthCheck = hc
	}
	return upstream.New(c, upstream.Options{OnEvent: func(ev upstream.Event) { logGroupEvent(log, ev) }})
}

// logGroupEvent writes one line per health or address change: the group
// decided, the operator wants to know.
func logGroupEvent(log *zap.Logger, ev upstream.Event) {
	fields := []zap.Field{zap.String("group", ev.Group)}
	if ev.Server != nil {
		fields = append(fields, zap.String("upstream", ev.Server.Name), zap.Stringer("addr", ev.Server.Addr))
	}
	if ev.Name != "" {
		fields = append(fields, zap.String("upstream", ev.Name))
	}
	if ev.Err != nil {
		fields = append(fields, zap.Error(ev.Err))
	}
	switch ev.Kind {
	case upstream.EventUnhealthy:
		log.Warn("upstream server unhealthy: no new tunnels", fields...)
	case upstream.EventHealthy:
		log.Info("upstream server healthy again", fields...)
	case upstream.EventResolved:
		log.Info("upstream name resolves to new addresses", fields...)
	case upstream.EventResolveFailed:
		log.Warn("upstream name lookup failed: keeping the previous addresses", fields...)
	}
}

// start starts every group's health checks and re-resolution; stop ends
// them and waits.
func (r *router) start() {
	for _, g := range r.groups {
		g.Start()
	}
}

func (r *router) stop() {
	for _, g := range r.groups {
		g.Stop()
	}
	r.closeFiles()
}

// closeFiles closes the static roots (their directory fds).
func (r *router) closeFiles() {
	for _, f := range r.files {
		_ = f.close()
	}
	r.files = nil
}

func parseListen(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listen %q: %w", addr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listen %q: %w", addr, err)
	}
	return ap, nil
}

// listenerAt is the listener configured for addr (as written in listen).
func (r *router) listenerAt(addr string) *listener {
	for _, ln := range r.listeners {
		if ln.addr == addr {
			return ln
		}
	}
	return nil
}

// serverFor picks the server block for a Host header value: an exact name,
// then the longest matching wildcard, then the listener's default server
// (nginx's server name rules without regular expressions).
func (ln *listener) serverFor(host []byte) *server {
	if len(ln.servers) == 1 {
		return ln.servers[0]
	}
	h := hostName(host)
	var best *server
	bestLen := 0
	for _, s := range ln.servers {
		for _, n := range s.exact {
			if asciiEqualFold(h, n) {
				return s
			}
		}
		for _, w := range s.wildcards {
			if len(w) > bestLen && len(h) > len(w) && asciiEqualFold(h[len(h)-len(w):], w) {
				best, bestLen = s, len(w)
			}
		}
	}
	if best != nil {
		return best
	}
	return ln.servers[0]
}

// locationFor returns the location with the longest path prefix of path.
func (s *server) locationFor(path []byte) *location {
	for _, l := range s.locations {
		if bytes.HasPrefix(path, l.path) {
			return l
		}
	}
	return nil
}

// hostName strips the port and a trailing dot from a Host value.
func hostName(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return bytes.TrimSuffix(host, []byte("."))
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// route judges the first head of a connection on ln: the server (by Host)
// and, for a WebSocket upgrade, the location (by path) it tunnels to; or
// plain, for every request that is not an upgrade (no Upgrade header, or
// one that does not offer websocket, such as h2c, which is ignored as
// nginx does) or that asks to upgrade in a static location (the file is
// served, as nginx would). Plain connections go to fasthttp, which judges
// each of their requests itself (plain.go). A broken upgrade, a bad path
// or no location is refused with the status and error returned (srv is
// set when known, for the access log). Both fronts, gnet and the goroutine
// path, route through here.
func (ln *listener) route(req *handshake.Request) (srv *server, loc *location, plain bool, status int, err error) {
	srv = ln.serverFor(req.Host)
	if req.HeadLen > srv.maxHead {
		return srv, nil, false, handshake.StatusOf(handshake.ErrHeadTooLarge), handshake.ErrHeadTooLarge
	}
	if err := handshake.CheckUpgrade(req); err != nil {
		if errors.Is(err, handshake.ErrNotUpgrade) || errors.Is(err, handshake.ErrUpgradeNotWebSocket) {
			return srv, nil, true, 0, nil
		}
		return srv, nil, false, handshake.StatusOf(err), err
	}
	var scratch [256]byte
	if _, loc, status, err = srv.locate(scratch[:0], req.Path); err != nil {
		return srv, nil, false, status, err
	}
	return srv, loc, loc.isStatic(), 0, nil
}

// locate finds the location of a request path as sent. Locations match
// the normalised path (percent-decoded once, dot segments resolved), as
// nginx matches its decoded URI: otherwise "/static/../admin/" would be
// judged by the rules of /static/ and then reach a backend that resolves
// it to /admin/. The path sent upstream stays the one the client sent.
// The normalised path is returned too (appended to scratch when it
// differs from raw): static locations serve it.
func (s *server) locate(scratch, raw []byte) ([]byte, *location, int, error) {
	path, err := handshake.NormalizePath(scratch, raw)
	if err != nil {
		return nil, nil, handshake.StatusOf(err), err
	}
	loc := s.locationFor(path)
	if loc == nil {
		return path, nil, 404, errNoLocation
	}
	return path, loc, 0, nil
}
