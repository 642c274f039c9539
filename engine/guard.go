package engine

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/guard"
	"github.com/sluice-proxy/sluice/handshake"
)

// Admission: the guard rules of package guard, applied between the parse
// of a head and the hand-off, in the order that is cheapest and most
// decisive first, all before any upstream is dialed:
//
//	real IP → server allow/deny → location allow/deny → limit_req →
//	limit_conn (a slot, given back when the tunnel ends) → Origin
//
// Every refusal answers with a handshake sentinel naming the rule, writes an
// access-log line "refused" with a rule field, and counts in Refusals.

// Rule names, as they appear in the access log's rule field and as keys of
// Engine.Refusals.
const (
	RuleAccess         = "access"          // allow/deny, server or location
	RuleOrigin         = "origin"          // Origin not allowed or missing
	RuleLimitReq       = "limit_req"       // handshake rate per address
	RuleLimitConn      = "limit_conn"      // connections per address
	RuleMaxConnections = "max_connections" // the process's global cap
	RuleProxyProtocol  = "proxy_protocol"  // no or a malformed PROXY header
)

var ruleNames = [...]string{RuleAccess, RuleOrigin, RuleLimitReq, RuleLimitConn, RuleMaxConnections, RuleProxyProtocol}

// guards is the engine's admission state that outlives a config reload:
// the global cap and the refusal counters. The rules themselves hang on
// the server, location and listener they belong to (srv.guard, loc.guard,
// ln.proxyOn), so a connection keeps the rules of the config it arrived
// under.
type guards struct {
	maxConns int64
	refusals [len(ruleNames)]atomic.Int64
	// lastShedLog is when "at max_connections" was last logged (unix ns).
	lastShedLog atomic.Int64
	// pauses counts the times an accept loop stopped accepting at the cap.
	pauses atomic.Int64
}

type serverGuard struct {
	acl        *guard.CIDRList
	realIP     *guard.RealIP // nil: no trusted proxy, or real_ip_header = proxy_protocol
	connStatus int
	reqStatus  int
}

type locationGuard struct {
	acl    *guard.CIDRList // the location's own list; nil for none
	origin *guard.OriginPolicy
	conns  *guard.ConnLimiter // the location's, or its server's; nil for none
	rate   *guard.RateLimiter // the same
}

// buildRules turns the validated admission keys of a config into rules on
// r's servers, locations and listeners.
func buildRules(r *router) error {
	for _, ln := range r.listeners {
		for _, s := range ln.servers {
			if s.guard != nil {
				continue
			}
			if err := buildServerRules(s); err != nil {
				return fmt.Errorf("server %s: %w", s.name, err)
			}
		}
		// The PROXY header comes before any Host: the listener's default
		// server says whom to believe (configs makes servers on one
		// address agree on proxy_protocol).
		if def := ln.servers[0].cfg; def.ProxyProtocol {
			ln.proxyOn = true
			if def.RealIPHeader == "proxy_protocol" {
				ln.proxyTrust, _ = guard.NewRealIP(def.RealIPFrom)
			}
		}
	}
	return nil
}

func buildServerRules(s *server) error {
	sc := s.cfg
	sg := &serverGuard{connStatus: sc.LimitConnStatus, reqStatus: sc.LimitReqStatus}
	var err error
	if sg.acl, err = guard.NewAllowDeny(sc.Allow, sc.Deny); err != nil {
		return err
	}
	if len(sc.RealIPFrom) > 0 && sc.RealIPHeader != "proxy_protocol" {
		if sg.realIP, err = guard.NewRealIP(sc.RealIPFrom); err != nil {
			return err
		}
	}
	var conns *guard.ConnLimiter
	if sc.LimitConn > 0 {
		conns = guard.NewConnLimiter(sc.LimitConn)
	}
	rate, err := rateLimiter(sc.LimitReq)
	if err != nil {
		return err
	}
	s.guard = sg
	for _, loc := range s.locations {
		lc := loc.cfg
		lg := &locationGuard{conns: conns, rate: rate}
		if len(lc.Allow)+len(lc.Deny) > 0 {
			if lg.acl, err = guard.NewAllowDeny(lc.Allow, lc.Deny); err != nil {
				return err
			}
		}
		if lc.LimitConn != nil {
			lg.conns = nil
			if *lc.LimitConn > 0 {
				lg.conns = guard.NewConnLimiter(*lc.LimitConn)
			}
		}
		if lc.LimitReq != nil {
			if lg.rate, err = rateLimiter(lc.LimitReq); err != nil {
				return err
			}
		}
		if len(lc.Origins) > 0 || lc.SameOrigin || lc.OriginMissing == "deny" {
			if lg.origin, err = guard.NewOriginPolicy(lc.Origins, lc.SameOrigin, lc.OriginMissing != "deny"); err != nil {
				return fmt.Errorf("location %s: %w", lc.Path, err)
			}
		}
		loc.guard = lg
	}
	return nil
}

func rateLimiter(c *configs.LimitReq) (*guard.RateLimiter, error) {
	if c == nil {
		return nil, nil
	}
	r, err := guard.ParseRate(c.Rate)
	if err != nil {
		return nil, err
	}
	return guard.NewRateLimiter(r, c.Burst), nil
}

// fdHeadroom is what the fd budget keeps back from RLIMIT_NOFILE for
// everything that is not a client connection: listeners, epoll and event
// fds, log files, health checks, pipes, and the connections accepted only
// to be closed past the cap.
func fdHeadroom(limit int64) int64 { return max(limit/10, 100) }

// maxConnections is max_connections, or the budget the fd limit allows:
// each client connection costs two fds once it is a tunnel (the client's
// and the upstream's).
func maxConnections(configured int) int64 {
	var rl unix.Rlimit
	budget := int64(1 << 40)
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<40 {
		cur := int64(rl.Cur)
		budget = max((cur-fdHeadroom(cur))/2, 1)
	}
	if configured > 0 && int64(configured) < budget {
		return int64(configured)
	}
	return budget
}

// MaxConnections is the global cap in force (configured or derived from
// RLIMIT_NOFILE).
func (e *Engine) MaxConnections() int64 { return e.guards.maxConns }

// Refusals returns how many handshakes each admission rule refused since
// start, keyed by rule name (RuleAccess, RuleOrigin, ...), every rule
// present.
func (e *Engine) Refusals() map[string]int64 {
	m := make(map[string]int64, len(ruleNames))
	for i, n := range ruleNames {
		m[n] = e.guards.refusals[i].Load()
	}
	return m
}

func (g *guards) count(rule string) {
	for i, n := range ruleNames {
		if n == rule {
			g.refusals[i].Add(1)
			return
		}
	}
}

// overCapacity reports whether the process already holds max_connections
// client connections (heads being read, handshakes, tunnels).
func (e *Engine) overCapacity() bool {
	return e.Pending() >= e.guards.maxConns
}

// connSlot is a limit_conn slot a connection holds: given back once, by
// whoever holds it when the connection ends (the clientConn until the
// hand-off, then the tunnel).
type connSlot struct {
	l *guard.ConnLimiter
	a netip.Addr
}

func (s *connSlot) release() {
	if s.l != nil {
		s.l.Release(s.a)
		s.l = nil
	}
}

// proxyHeader strips the PROXY protocol header on listeners that require
// one, and believes its source address if the peer is trusted. It returns
// the buffer to go on with, or nil and the action to return (wait for more
// bytes, or the refusal).
func (f *front) proxyHeader(c gnet.Conn, cc *clientConn, buf []byte) ([]byte, gnet.Action) {
	trusted, on := cc.ln.proxyTrust, cc.ln.proxyOn
	if !on {
		cc.proxied = true
		return buf, gnet.None
	}
	src, _, n, err := handshake.ParseProxyHeader(buf)
	if errors.Is(err, handshake.ErrIncomplete) {
		return nil, gnet.None
	}
	if err != nil {
		cc.unlist()
		return nil, f.refuseRule(c, cc, nil, nil, err, RuleProxyProtocol, 0)
	}
	cc.proxied = true
	if src.IsValid() && trusted.Trusted(cc.remote.Addr()) {
		cc.remote = src
	}
	_, _ = c.Discard(n)
	buf, _ = c.Peek(-1)
	if len(buf) == 0 {
		return nil, gnet.None
	}
	return buf, gnet.None
}

// refusal is an admission rule's verdict against a client: the status
// (0: the sentinel's own, from handshake.StatusOf), the sentinel naming the
// rule, the rule, and for limit_req the Retry-After seconds.
type refusal struct {
	status     int
	err        error
	rule       string
	retryAfter int
}

// admit runs the admission rules for a routed request, in the documented
// order. It is shared by both fronts (gnet, and the goroutine path of TLS
// listeners) and touches no socket: it may replace cc.remote with the real
// client address and, when a limit_conn applies, leaves a slot in cc.slot
// (newTunnel takes it over; refuseWith or OnClose give it back). ok false
// means refused: answer with refuseWith.
//
// plain is set for a plain HTTP request: limit_conn and the Origin policy
// are about tunnels and are skipped; the address rules and limit_req apply.
func (e *Engine) admit(cc *clientConn, srv *server, loc *location, req *handshake.Request, plain bool) (r refusal, ok bool) {
	sg, lg := srv.guard, loc.guard
	if sg == nil || lg == nil {
		return refusal{}, true
	}
	if sg.realIP != nil {
		var stack [8][]byte
		xff := stack[:0]
		for _, h := range req.Headers {
			if asciiEqualFold(h.Name, "x-forwarded-for") {
				xff = append(xff, h.Value)
			}
		}
		if a := sg.realIP.FromForwarded(cc.remote.Addr(), xff); a != cc.remote.Addr().Unmap() {
			cc.remote = netip.AddrPortFrom(a, 0)
		}
	}
	client := cc.remote.Addr().Unmap()
	if !sg.acl.Allowed(client) || (lg.acl != nil && !lg.acl.Allowed(client)) {
		return refusal{err: handshake.ErrAccessDenied, rule: RuleAccess}, false
	}
	if lg.rate != nil {
		if allowed, retry := lg.rate.Allow(client, time.Now()); !allowed {
			return refusal{sg.reqStatus, handshake.ErrRateLimited, RuleLimitReq, int(retry / time.Second)}, false
		}
	}
	if lg.conns != nil && !plain {
		if !lg.conns.Acquire(client) {
			return refusal{status: sg.connStatus, err: handshake.ErrConnLimited, rule: RuleLimitConn}, false
		}
		cc.slot = connSlot{lg.conns, client}
	}
	if lg.origin != nil && !plain {
		var origin []byte
		n := 0
		for _, h := range req.Headers {
			if asciiEqualFold(h.Name, "origin") {
				origin = h.Value
				n++
			}
		}
		// Two Origin headers: two hops could judge different ones.
		if n > 1 || !lg.origin.Allow(origin, n == 1, req.Host) {
			err := handshake.ErrOriginDenied
			if n == 0 {
				err = handshake.ErrOriginMissing
			}
			return refusal{err: err, rule: RuleOrigin}, false
		}
	}
	return refusal{}, true
}

// admit is Engine.admit for the gnet front: refused, it answers and
// returns Close.
func (f *front) admit(c gnet.Conn, cc *clientConn, srv *server, loc *location, req *handshake.Request) (gnet.Action, bool) {
	r, ok := f.e.admit(cc, srv, loc, req, false)
	if ok {
		return gnet.None, true
	}
	_, _ = c.Discard(-1)
	f.e.refuseWith(c, cc, srv, req, r)
	return gnet.Close, false
}

// refuseRule answers a refusal by an admission rule on a gnet conn.
func (f *front) refuseRule(c gnet.Conn, cc *clientConn, srv *server, req *handshake.Request, err error, rule string, status int) gnet.Action {
	_, _ = c.Discard(-1)
	f.e.refuseWith(c, cc, srv, req, refusal{status: status, err: err, rule: rule})
	return gnet.Close
}

// refuseWith answers a refusal on w (a gnet conn queues it; the caller
// closes): the status with the rule's sentinel as the body, Retry-After
// when set (RFC 9110 §10.2.3; limit_req, whole seconds rounded up), the
// access-log line with the rule, and the counters. Any limit_conn slot the
// connection holds is given back.
func (e *Engine) refuseWith(w io.Writer, cc *clientConn, srv *server, req *handshake.Request, r refusal) {
	cc.slot.release()
	if r.status == 0 {
		r.status = handshake.StatusOf(r.err)
	}
	var b [512]byte
	out := handshake.AppendErrorResponse(b[:0], r.status, r.err)
	if r.retryAfter > 0 {
		out = withHeader(out, "Retry-After: "+strconv.Itoa(r.retryAfter)+"\r\n")
	}
	// Counted and logged before the answer leaves, so whoever reads the
	// answer can already see the count.
	e.countRefused(r.status)
	e.guards.count(r.rule)
	e.access.refusedBy(cc, srv, req, r.status, r.err, r.rule)
	_, _ = w.Write(out)
}

// waitForCapacity holds an accept loop while the process is at
// max_connections, so that new connections wait in the kernel's backlog
// (nginx and HAProxy pause accepting the same way). A pause is counted and
// logged, at most once a second. It returns early once stop says so.
func (e *Engine) waitForCapacity(listen string, full, stop func() bool) {
	if !full() || stop() {
		return
	}
	e.guards.pauses.Add(1)
	now := time.Now().UnixNano()
	if last := e.guards.lastShedLog.Load(); now-last > int64(time.Second) && e.guards.lastShedLog.CompareAndSwap(last, now) {
		e.log.Warn("at max_connections: new connections wait in the backlog", zap.String("listen", listen),
			zap.Int64("max_connections", e.guards.maxConns))
	}
	for full() && !stop() {
		time.Sleep(backlogPoll)
	}
}

// shed counts a connection closed past max_connections: one a TLS accept
// loop took just as another listener reached the cap. It gets no answer
// (writing one could block on a full client and the point is to spend
// nothing). It is counted, and logged at most once a second so that a
// flood does not become a log flood.
func (e *Engine) shed() {
	e.guards.count(RuleMaxConnections)
	e.countRefused(0)
	now := time.Now().UnixNano()
	if last := e.guards.lastShedLog.Load(); now-last > int64(time.Second) && e.guards.lastShedLog.CompareAndSwap(last, now) {
		e.log.Warn("at max_connections: closing new connections", zap.Int64("max_connections", e.guards.maxConns),
			zap.Int64("refused", e.Refusals()[RuleMaxConnections]))
	}
}
