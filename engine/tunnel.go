package engine

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/handshake"
	"github.com/sluice-proxy/sluice/splice"
	"github.com/sluice-proxy/sluice/upstream"
)

// tunnel is the engine's side of one splice job: it chooses upstream
// servers, judges the upstream's answer and writes the access log line.
// It lives as long as the tunnel, so it keeps only what the log needs.
type tunnel struct {
	e      *Engine
	srv    *server
	loc    *location
	client netip.AddrPort
	path   string // for the access log
	start  int64  // unix nanoseconds, when the connection was accepted

	cursor uint32
	cur    *upstream.Server
	key    [32]byte // the client's Sec-WebSocket-Key, to verify the Accept
	keyLen uint8
	status int  // what the client was answered
	opened bool // a verified tunnel was counted on cur
	failed bool // cur's failure was counted
}

func (e *Engine) newTunnel(cc *clientConn, srv *server, loc *location, req *handshake.Request) *tunnel {
	t := &tunnel{
		e:      e,
		srv:    srv,
		loc:    loc,
		client: cc.remote,
		path:   string(req.Path),
		start:  cc.opened,
	}
	t.keyLen = uint8(copy(t.key[:], req.Key))
	return t
}

func (t *tunnel) clientIP() []byte {
	return t.client.Addr().Unmap().AppendTo(make([]byte, 0, 40))
}

// NextUpstream implements splice.Handler: round robin for the first
// attempt, then the group's next servers, each at most once.
func (t *tunnel) NextUpstream(attempt int, lastErr error) (netip.AddrPort, bool) {
	if lastErr != nil {
		t.fail()
		t.e.log.Warn("upstream connect failed", zapServer(t.cur), zapErr(lastErr))
	}
	var s *upstream.Server
	if attempt == 0 {
		s, t.cursor = t.loc.group.Pick()
	} else {
		s = t.loc.group.Next(t.cursor, attempt)
	}
	if s == nil {
		return netip.AddrPort{}, false
	}
	t.cur, t.failed = s, false
	return s.Addr, true
}

var responsePool = sync.Pool{New: func() any { return new(handshake.Response) }}

// Judge implements splice.Handler. Only an answer that is a valid switch
// for this client's key becomes a tunnel (RFC 6455 §4.1, the client's
// checks, done here on the client's behalf: none of nginx, HAProxy or Caddy
// checks Sec-WebSocket-Accept). Any other complete HTTP answer goes back to
// the client as an HTTP response and the connection closes.
func (t *tunnel) Judge(reply []byte) splice.Verdict {
	resp := responsePool.Get().(*handshake.Response)
	defer responsePool.Put(resp)
	err := handshake.ParseResponse(reply, maxReplyHead, resp)
	if errors.Is(err, handshake.ErrIncomplete) {
		return splice.Verdict{Action: splice.NeedMore}
	}
	if err != nil {
		return t.badGateway(err)
	}
	if resp.Status != 101 {
		t.status = resp.Status
		head := handshake.AppendRelayedResponse(make([]byte, 0, resp.HeadLen+32), resp)
		return splice.Verdict{Action: splice.Refuse, Reply: head, Skip: resp.HeadLen, Forward: handshake.BodyLength(resp)}
	}
	if err := handshake.VerifyUpgrade(resp, t.key[:t.keyLen]); err != nil {
		return t.badGateway(err)
	}
	t.status = 101
	t.opened = true
	t.cur.Opened()
	t.e.stats.tunnels.Add(1)
	return splice.Verdict{Action: splice.Tunnel}
}

// fail counts one failure against the current server, once.
func (t *tunnel) fail() {
	if t.cur != nil && !t.failed {
		t.cur.Failed()
		t.failed = true
	}
}

// badGateway refuses with 502. cause is a handshake sentinel: the client
// learns what was wrong with the answer, the error log also learns which
// upstream gave it (an internal address the client must not see).
func (t *tunnel) badGateway(cause error) splice.Verdict {
	t.fail()
	t.status = 502
	t.e.log.Warn("invalid upgrade answer", zapServer(t.cur), zapErr(cause))
	return splice.Verdict{Action: splice.Refuse, Reply: handshake.AppendErrorResponse(nil, 502, cause)}
}

// Failed implements splice.Handler: 504 when the upstream was too slow to
// accept or to answer, 502 when it refused, reset or closed.
func (t *tunnel) Failed(err error, timedOut bool) []byte {
	t.fail()
	t.status = 502
	if timedOut {
		t.status = 504
	}
	return handshake.AppendErrorResponse(nil, t.status, gatewayError(t.status))
}

func gatewayError(status int) error {
	if status == 504 {
		return errUpstreamTimeout
	}
	return errUpstreamFailed
}

var (
	errUpstreamTimeout = errors.New("upstream did not accept or answer the upgrade in time")
	errUpstreamFailed  = errors.New("no upstream server accepted the connection")
)

// Done implements splice.Handler: counters and the access-log line.
func (t *tunnel) Done(r *splice.Report) {
	if t.opened {
		t.cur.Closed()
		t.e.stats.tunnels.Add(-1)
	}
	t.e.access.finished(t, r)
}

func (t *tunnel) upstreamName() string {
	if t.cur == nil {
		return "-"
	}
	return t.cur.Name
}

func durationSince(startNano int64, end time.Time) time.Duration {
	return end.Sub(time.Unix(0, startNano))
}

func statusText(s int) string {
	if s == 0 {
		return "-"
	}
	return strconv.Itoa(s)
}
