package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/splice"
)

// proxy is the goroutine path's splice.Pool: it asks the tunnel for
// servers, dials, sends the upgrade, lets the tunnel judge the answer and
// relays. The tunnel (NextUpstream, Judge, Failed, Done) is the same one
// splice drives, so balancing, passive health, max_conns and retries
// behave alike on both paths.
//
// fin is the caller's cleanup (closing client, its counters); it runs
// once, last, after the access log. A verified tunnel is relayed by two
// new goroutines and proxy returns at once, so the goroutine that did the
// TLS and HTTP handshakes, whose stack grew deep in crypto code, does not
// stay parked for the tunnel's lifetime; the last relay goroutine to end
// then calls fin.
func (g *goFront) proxy(client net.Conn, t *tunnel, loc *location, upReq, held []byte, fin func()) {
	r := &splice.Report{Start: time.Now()}
	end := func() {
		r.End = time.Now()
		if g.stopping() && r.Reason != splice.Refused {
			r.Reason = splice.Shutdown
		}
		t.Done(r)
		fin()
	}
	relayed := false
	defer func() {
		if !relayed {
			end()
		}
	}()
	var (
		lastErr error
		reason  splice.Reason
	)
	for attempt := 0; ; attempt++ {
		addr, ok := t.NextUpstream(attempt, lastErr)
		if !ok {
			if lastErr == nil {
				lastErr, reason = splice.ErrNoUpstream, splice.ConnectFailed
			}
			out := t.Failed(lastErr, reason == splice.ConnectTimeout || reason == splice.HandshakeTimeout)
			r.BytesDown += writeWithin(client, out, loc.cfg.SendTimeout.D())
			r.Reason, r.Err = reason, lastErr
			return
		}
		r.Attempts++
		r.Upstream = addr
		up, reply, v, why, err := g.attempt(t, loc, addr.String(), upReq, r)
		if err != nil {
			lastErr, reason = err, why
			continue
		}
		switch v.Action {
		case splice.Retry:
			g.untrack(up)
			lastErr, reason = v.Err, splice.HandshakeFailed
			if lastErr == nil {
				lastErr = splice.ErrInvalidReply
			}
			continue
		case splice.Refuse:
			g.refused(client, up, loc, reply, v, r)
			g.untrack(up)
			return
		}
		_ = up.SetDeadline(time.Time{})
		// LastActive before the counts, so a reader seeing bytes sees a time.
		t.live.LastActive.Store(time.Now().UnixNano())
		n := writeWithin(client, reply, loc.cfg.SendTimeout.D())
		r.BytesDown += n
		t.live.BytesDown.Add(n)
		r.Tunnelled = true
		if len(held) > 0 {
			n = writeWithin(up, held, loc.cfg.SendTimeout.D())
			r.BytesUp += n
			t.live.BytesUp.Add(n)
		}
		relayed = true
		// Frame boundaries as written, for a graceful shutdown: after the
		// 101's head toward the client; from the first held byte upward.
		gd := &goDrain{client: client, up: up}
		gd.cur[1] = splice.NewFrameCursor(v.FramesAfter)
		gd.cur[1].Advance(reply)
		gd.cur[0].Advance(held)
		t.gdrain.Store(gd)
		if g.e.draining.Load() { // the shutdown began during the handshake
			gd.start(g.drainDeadline.Load())
		}
		g.relay(client, up, loc, r, &t.live, gd, func() { g.untrack(up); end() })
		return
	}
}

// attempt dials one server, wraps it in TLS when the backends speak TLS,
// writes the upgrade request and reads until the tunnel's Judge decides.
// On error the connection is closed and why is the splice.Reason the
// failure would end the job with.
func (g *goFront) attempt(t *tunnel, loc *location, addr string, upReq []byte, r *splice.Report) (up net.Conn, reply []byte, v splice.Verdict, why splice.Reason, err error) {
	d := net.Dialer{Timeout: loc.cfg.ConnectTimeout.D()}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		if isTimeout(err) {
			return nil, nil, v, splice.ConnectTimeout, fmt.Errorf("connect %s: %w", addr, splice.ErrConnectTimeout)
		}
		return nil, nil, v, splice.ConnectFailed, fmt.Errorf("connect %s: %w", addr, err)
	}
	if !g.track(raw) {
		_ = raw.Close()
		return nil, nil, v, splice.ConnectFailed, errStopping
	}
	r.Connected = time.Now()
	_ = raw.SetDeadline(r.Connected.Add(loc.cfg.HandshakeTimeout.D()))
	up = raw
	fail := func(err error) (net.Conn, []byte, splice.Verdict, splice.Reason, error) {
		g.untrack(raw)
		if isTimeout(err) {
			return nil, nil, v, splice.HandshakeTimeout, fmt.Errorf("%s: %w", addr, splice.ErrHandshakeTimeout)
		}
		return nil, nil, v, splice.HandshakeFailed, fmt.Errorf("%s: %w", addr, err)
	}
	if cfg := loc.upTLS; cfg != nil {
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = hostOnly(t.cur.Name)
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		up = tc
	}
	if _, err := up.Write(upReq); err != nil {
		return fail(err)
	}
	buf := make([]byte, maxReplyHead)
	n := 0
	for {
		m, err := up.Read(buf[n:])
		n += m
		if m > 0 {
			v = t.Judge(buf[:n])
			if v.Action != splice.NeedMore {
				if v.Action == splice.Retry {
					return up, nil, v, 0, nil
				}
				return up, buf[:n], v, 0, nil
			}
			if n == len(buf) {
				return fail(splice.ErrReplyTooLarge)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = splice.ErrUpstreamClosed
			}
			return fail(err)
		}
	}
}

// refused relays a valid non-101 answer: Judge's Reply, then Forward
// bytes of the upstream stream after Skip (-1: until the upstream closes).
func (g *goFront) refused(client, up net.Conn, loc *location, reply []byte, v splice.Verdict, r *splice.Report) {
	r.Reason = splice.Refused
	send := loc.cfg.SendTimeout.D()
	r.BytesDown += writeWithin(client, v.Reply, send)
	rest := reply[min(v.Skip, len(reply)):]
	left := v.Forward
	if left >= 0 && int64(len(rest)) > left {
		rest = rest[:left]
	}
	r.BytesDown += writeWithin(client, rest, send)
	if left >= 0 {
		left -= int64(len(rest))
		if left == 0 {
			return
		}
	}
	idle := min(loc.cfg.HandshakeTimeout.D(), loc.cfg.ReadTimeout.D())
	var src io.Reader = up
	if left > 0 {
		src = io.LimitReader(up, left)
	}
	n, _, err := pipe(client, up, src, g.bufPool(int(loc.cfg.BufferSize)), idle, send, nil, nil, nil, 0)
	r.BytesDown += n
	if err != nil && !errors.Is(err, io.EOF) {
		r.Err = err
	}
}

// relay moves bytes both ways until both directions end, or one fails:
// then both sockets close, which ends the other direction. Reading the
// upstream is bounded by read_timeout between reads, every write by
// send_timeout (as on the splice path). A direction that reads EOF passes
// the half-close on (CloseWrite: close_notify then FIN for TLS).
func (g *goFront) relay(client, up net.Conn, loc *location, r *splice.Report, live *splice.Live, gd *goDrain, fin func()) {
	type end struct {
		up  bool // the client→upstream direction
		n   int64
		err error
		rd  bool // err came from the read side
		seq int32
	}
	var (
		ends  [2]end
		order atomic.Int32
		left  atomic.Int32
	)
	left.Store(2)
	finish := func() {
		a, b := ends[0], ends[1]
		if b.seq < a.seq {
			a, b = b, a
		}
		for _, e := range ends {
			if e.up {
				r.BytesUp += e.n
			} else {
				r.BytesDown += e.n
			}
		}
		// Whichever direction stopped first says why the tunnel ended,
		// unless it ended cleanly and the other then failed.
		r.Reason, r.Err = endReason(a.up, a.rd, a.err)
		if errors.Is(a.err, io.EOF) && !errors.Is(b.err, io.EOF) {
			r.Reason, r.Err = endReason(b.up, b.rd, b.err)
		}
		if drained(a.err) || drained(b.err) {
			r.Reason, r.Err = splice.Shutdown, nil
			if !errors.Is(a.err, errDrained) || !errors.Is(b.err, errDrained) {
				g.drainForced.Add(1)
			}
		}
		fin()
	}
	run := func(i int, upDir bool) {
		dst, src, read := client, up, loc.cfg.ReadTimeout.D()
		if upDir {
			dst, src, read = up, client, 0
		}
		count := &live.BytesDown
		if upDir {
			count = &live.BytesUp
		}
		n, rd, err := pipe(dst, src, src, g.bufPool(int(loc.cfg.BufferSize)), read, loc.cfg.SendTimeout.D(), count, &live.LastActive, gd, i)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, errDrained):
			closeWrite(dst)
		default:
			_ = client.Close()
			_ = up.Close()
		}
		ends[i] = end{upDir, n, err, rd, order.Add(1)}
		if left.Add(-1) == 0 { // the atomic orders the other's ends[] write before this read
			finish()
		}
	}
	go run(0, true)
	go run(1, false)
}

// endReason maps how a direction ended to the access log's reason.
func endReason(upDir, readSide bool, err error) (splice.Reason, error) {
	clientSide := upDir == readSide // reading the client, or writing it
	switch {
	case errors.Is(err, io.EOF):
		if upDir {
			return splice.ClientClosed, nil
		}
		return splice.UpstreamClosed, nil
	case isTimeout(err) && readSide:
		return splice.ReadTimeout, splice.ErrReadTimeout
	case isTimeout(err):
		return splice.SendTimeout, splice.ErrSendTimeout
	case clientSide:
		return splice.ClientError, err
	}
	return splice.UpstreamError, err
}

// pipe copies from src (reading through r, which may be src or a limit
// on it) to dst until EOF or an error; readSide tells whether err came
// from reading. A read deadline is set before each read (readTimeout > 0),
// a write deadline before each write. No allocation per chunk.
//
// An idle tunnel must not pin two relay buffers, so the pooled buffer is
// taken only while data flows. A plain socket is first waited on for
// readability with no buffer at all (RawConn.Read; the callback peeks,
// because Go's poller is edge-triggered and bytes left from an earlier
// read raise no new event). A TLS source is first read into a small array:
// crypto/tls keeps the decrypted record in its own buffer, so a short read
// costs a copy, not a syscall; a read that fills the array switches to the
// pooled buffer until a read comes back short. The buffer then stays held
// only when a burst ended exactly on a buffer boundary.
//
// count and last, when not nil, follow the bytes written and the time of
// the last write, for observers (Engine.live).
//
// gd, when not nil, is the tunnel's drain state and dir this direction
// (0: toward the upstream, 1: toward the client): once a drain starts,
// pipe ends at the next frame boundary of what it has written, after
// writing a close frame 1001 there (errDrained), or at the drain deadline
// without one (errDrainForced).
func pipe(dst, src net.Conn, r io.Reader, pool *sync.Pool, readTimeout, sendTimeout time.Duration, count, last *atomic.Int64, gd *goDrain, dir int) (n int64, readSide bool, err error) {
	var rc syscall.RawConn
	if tc, ok := src.(*net.TCPConn); ok && r == io.Reader(src) {
		rc, _ = tc.SyscallConn()
	}
	var (
		small [smallRead]byte
		bp    *[]byte
	)
	defer func() {
		if bp != nil {
			pool.Put(bp)
		}
	}()
	for {
		if gd != nil {
			if at := gd.at.Load(); at != 0 {
				if gd.cur[dir].AtBoundary() {
					f := splice.GoingAway(dir == 1)
					_ = dst.SetWriteDeadline(time.Now().Add(time.Second))
					w, werr := dst.Write(f)
					n += int64(w)
					if werr != nil || w != len(f) {
						return n, false, errDrainForced
					}
					return n, false, errDrained
				}
				if time.Now().UnixNano() >= at {
					return n, false, errDrainForced
				}
				// A frame is in flight: relay on, but wake by the deadline.
				d := time.Unix(0, at)
				if readTimeout > 0 && time.Now().Add(readTimeout).Before(d) {
					d = time.Now().Add(readTimeout)
				}
				_ = src.SetReadDeadline(d)
			} else if readTimeout > 0 {
				_ = src.SetReadDeadline(time.Now().Add(readTimeout))
			}
		} else if readTimeout > 0 {
			_ = src.SetReadDeadline(time.Now().Add(readTimeout))
		}
		var (
			m    int
			rerr error
			buf  []byte
		)
		switch {
		case rc != nil:
			if rerr = waitReadable(rc); rerr == nil {
				bp = pool.Get().(*[]byte)
				buf = *bp
				m, rerr = r.Read(buf)
			}
		case bp != nil:
			buf = *bp
			m, rerr = r.Read(buf)
		default:
			buf = small[:]
			m, rerr = r.Read(buf)
		}
		if m > 0 {
			if sendTimeout > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(sendTimeout))
			}
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if gd != nil {
				gd.cur[dir].Advance(buf[:w])
			}
			if count != nil && w > 0 {
				last.Store(time.Now().UnixNano())
				count.Add(int64(w))
			}
			if werr != nil {
				return n, false, werr
			}
		}
		if rerr != nil {
			if gd != nil && gd.at.Load() != 0 && isTimeout(rerr) {
				continue // woken for the drain, or its deadline: look again
			}
			return n, true, rerr
		}
		switch {
		case rc == nil && bp == nil && m == len(buf):
			bp = pool.Get().(*[]byte) // a burst: read it in big chunks
		case bp != nil && (rc != nil || m < len(buf)):
			pool.Put(bp)
			bp = nil
		}
	}
}

// smallRead is what an idle TLS direction reads into before it takes a
// relay buffer.
const smallRead = 512

// waitReadable blocks until rc has bytes, EOF or an error to read, or the
// read deadline passes.
func waitReadable(rc syscall.RawConn) error {
	var one [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN
	})
}

// closeWrite half-closes c: for TLS a close_notify alert, which the peer
// reads as EOF, then a FIN on the socket underneath.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// writeWithin writes b under a send_timeout deadline and returns how much
// went out.
func writeWithin(c net.Conn, b []byte, d time.Duration) int64 {
	if len(b) == 0 {
		return 0
	}
	if d > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(d))
	}
	n, _ := c.Write(b)
	return int64(n)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hostOnly is the host of "host:port", brackets removed.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
