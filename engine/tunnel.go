package engine

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

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

	sel     upstream.Selection // the group's walk for this handshake: key hash, servers tried
	cur     *upstream.Server
	held    bool  // cur holds a slot (max_conns) this tunnel must give back
	pickErr error // why the group had no server to offer, if it had none
	// badAnswer is what was wrong with cur's answer to the upgrade, when
	// that ended the attempt (the 502's cause if no server is left).
	badAnswer error
	key       [32]byte // the client's Sec-WebSocket-Key, to verify the Accept
	keyLen    uint8
	status    int      // what the client was answered
	opened    bool     // a verified tunnel was counted on cur
	slot      connSlot // limit_conn slot, given back in Done

	id     uint64                  // set when the 101 is verified: the key in Engine.live
	live   splice.Live             // bytes and last activity as they happen (/tunnels)
	gdrain atomic.Pointer[goDrain] // goroutine-path tunnels: their drain state (drain.go)
}

// newTunnel is called where the request head is parsed: it keeps the few
// words of it the tunnel needs, among them the hash of the balancing key,
// never the request itself.
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
	t.slot, cc.slot = cc.slot, connSlot{}
	t.sel.Reset(balanceKey(loc.group.KeySource(), cc.remote.Addr(), req))
	return t
}

// balanceKey extracts what the group's method hashes (see
// upstream.KeySource) and reduces it to an upstream.Key, nginx's variables
// read the nginx way: $http_NAME is the first such header, $cookie_NAME
// and $arg_NAME compare names case-insensitively and keep values raw, and
// $uri is the path as sent. No allocation.
func balanceKey(ks upstream.KeySource, client netip.Addr, req *handshake.Request) upstream.Key {
	switch ks.Kind {
	case upstream.KeyClientNet:
		return upstream.AddrKey(client)
	case upstream.KeyRemoteAddr:
		var b [48]byte
		return upstream.KeyOf(client.Unmap().AppendTo(b[:0]))
	case upstream.KeyURI:
		return upstream.KeyOf(req.Path)
	case upstream.KeyHeader:
		for _, h := range req.Headers {
			if asciiEqualFold(h.Name, ks.Name) {
				return upstream.KeyOf(h.Value)
			}
		}
	case upstream.KeyCookie:
		for _, h := range req.Headers {
			if asciiEqualFold(h.Name, "cookie") {
				if v, ok := pairValue(h.Value, ';', ks.Name); ok {
					return upstream.KeyOf(v)
				}
			}
		}
	case upstream.KeyArg:
		if v, ok := pairValue(req.Query, '&', ks.Name); ok {
			return upstream.KeyOf(v)
		}
	}
	return upstream.Key{}
}

// pairValue finds name=value in a sep-separated list (a Cookie header, a
// query string), name compared case-insensitively, spaces around pairs
// ignored.
func pairValue(list []byte, sep byte, name string) ([]byte, bool) {
	for len(list) > 0 {
		pair := list
		if i := bytes.IndexByte(list, sep); i >= 0 {
			pair, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		pair = bytes.TrimSpace(pair)
		k, v, ok := bytes.Cut(pair, []byte{'='})
		if ok && asciiEqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func (t *tunnel) clientIP() []byte {
	return t.client.Addr().Unmap().AppendTo(make([]byte, 0, 40))
}

// NextUpstream implements splice.Handler: the group's method for the
// first attempt, then, after a failed connect, a connect or handshake
// timeout, a connection closed before the answer or an invalid answer
// (nginx's proxy_next_upstream error timeout invalid_header), the group's
// next server not yet tried, until max_tries or next_upstream_timeout.
// Nothing is retried once the 101 has gone to the client: splice asks only
// before a verdict. A failure counts against the server's passive
// health (max_fails) and gives its max_conns slot back.
func (t *tunnel) NextUpstream(attempt int, lastErr error) (netip.AddrPort, bool) {
	if lastErr != nil {
		if t.badAnswer == nil { // an invalid answer was logged by Judge
			t.e.log.Warn("upstream attempt failed", zapServer(t.cur), zapErr(lastErr))
		}
		t.fail()
	}
	s, err := t.loc.group.Next(&t.sel)
	if err != nil {
		t.pickErr = err
		if attempt == 0 || errors.Is(err, upstream.ErrAllFull) {
			t.e.log.Warn("no upstream server available", zap.String("group", t.loc.group.Name), zapErr(err))
		}
		return netip.AddrPort{}, false
	}
	t.cur, t.held, t.badAnswer = s, true, nil
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
		// A valid answer, relayed: not a failure of the server (nginx
		// counts only error, timeout and invalid_header by default).
		t.release((*upstream.Server).Answered)
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
	t.loc.m.tunnels.Add(1)
	t.loc.m.outcomes[101].Add(1)
	t.e.live.add(t)
	t.e.metrics.handshakeLatency.observe(time.Since(time.Unix(0, t.start)).Seconds())
	// Frames start after the 101's head: splice follows them from there,
	// so a graceful shutdown can close between two frames.
	return splice.Verdict{Action: splice.Tunnel, FramesAfter: resp.HeadLen}
}

// fail counts one failed attempt against the current server and gives
// its slot back, once.
func (t *tunnel) fail() { t.release((*upstream.Server).Failed) }

// release ends the current attempt with end (Failed, Answered or
// Abandoned) if it still holds its slot.
func (t *tunnel) release(end func(*upstream.Server)) {
	if t.cur != nil && t.held {
		t.held = false
		end(t.cur)
	}
}

// badGateway gives up on the current server's answer. cause is a
// handshake sentinel: the client, if it ends up with the 502, learns what
// was wrong with the answer; the error log also learns which upstream gave
// it (an internal address the client must not see).
//
// Nothing of the answer reached the client, so the handshake moves on to
// the group's next server (nginx: proxy_next_upstream invalid_header);
// when none is left, Failed answers 502 with this cause.
func (t *tunnel) badGateway(cause error) splice.Verdict {
	t.fail()
	t.badAnswer = cause
	t.e.log.Warn("invalid upgrade answer", zapServer(t.cur), zapErr(cause))
	return splice.Verdict{Action: splice.Retry, Err: cause}
}

// Failed implements splice.Handler: 504 when the upstream was too slow to
// accept or to answer, 502 when it refused, reset or closed; when the
// group had no server to offer, the answer of pickAnswers.
func (t *tunnel) Failed(err error, timedOut bool) []byte {
	t.fail()
	for _, a := range pickAnswers {
		if errors.Is(t.pickErr, a.err) && (a.always || t.sel.Attempts() == 0) {
			t.status = a.status
			return a.reply
		}
	}
	t.status = 502
	if timedOut {
		t.status = 504
	}
	if t.badAnswer != nil && !timedOut {
		return handshake.AppendErrorResponse(nil, 502, t.badAnswer)
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

// pickAnswers maps the group's "no server" sentinels to what the client
// gets: the one place these statuses are decided.
//   - every server able to take the tunnel is at max_conns: 503 with
//     Retry-After (RFC 9110 §15.6.4, §10.2.3), a condition that passes, and
//     the client should come back rather than treat the service as broken;
//     whether or not another server failed first in this handshake.
//   - nothing is live before any attempt (every server down, unhealthy or
//     failed): nginx's 502 "no live upstreams". After failed attempts the
//     failure itself decides (502, or 504 for a timeout).
var pickAnswers = [...]struct {
	err    error
	always bool
	status int
	reply  []byte
}{
	{upstream.ErrAllFull, true, 503, withHeader(handshake.AppendErrorResponse(nil, 503, upstream.ErrAllFull), "Retry-After: 1\r\n")},
	{upstream.ErrNoLiveUpstreams, false, 502, handshake.AppendErrorResponse(nil, 502, upstream.ErrNoLiveUpstreams)},
}

// withHeader inserts a header line before the blank line ending resp's head.
func withHeader(resp []byte, line string) []byte {
	end := bytes.Index(resp, []byte("\r\n\r\n")) + 2
	out := append([]byte(nil), resp[:end]...)
	out = append(out, line...)
	return append(out, resp[end:]...)
}

// Done implements splice.Handler: counters and the access-log line.
func (t *tunnel) Done(r *splice.Report) {
	t.slot.release()
	if !t.opened { // a 101 was counted when it was verified
		t.loc.m.outcomes[statusIndex(t.status)].Add(1)
	}
	if t.opened {
		t.cur.Closed()
		t.e.stats.tunnels.Add(-1)
		t.e.live.remove(t)
		t.loc.m.tunnels.Add(-1)
		t.loc.m.bytesUp.Add(r.BytesUp)
		t.loc.m.bytesDown.Add(r.BytesDown)
		t.e.metrics.tunnelDuration.observe(durationSince(t.start, r.End).Seconds())
	} else {
		// The client left, or the pool shut down, before any verdict.
		t.release((*upstream.Server).Abandoned)
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
