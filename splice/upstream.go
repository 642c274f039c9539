package splice

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

const (
	defaultBufferSize   = 16 << 10
	defaultMaxReplyHead = 16 << 10
)

// start adopts a submitted job: a slot, the client's registration, the first
// connect attempt.
func (l *loop) start(s submission) {
	j := s.job
	t := &tunnel{job: j, req: j.Request, hidx: -1, firstEOF: -1}
	t.rep.Start = s.start
	t.rsize = j.BufferSize
	if t.rsize <= 0 {
		t.rsize = defaultBufferSize
	}
	t.rsize = min(t.rsize, readBufSize)
	t.maxReply = j.MaxReplyHead
	if t.maxReply <= 0 {
		t.maxReply = defaultMaxReplyHead
	}
	t.ct, t.ht = int64(max(j.ConnectTimeout, 0)), int64(max(j.HandshakeTimeout, 0))
	t.rt, t.st = int64(max(j.ReadTimeout, 0)), int64(max(j.SendTimeout, 0))

	if n := len(l.free); n > 0 {
		t.slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		t.slot = int32(len(l.slots))
		l.slots = append(l.slots, nil)
		l.gens = append(l.gens, 0)
	}
	l.slots[t.slot] = t
	t.s[client] = side{fd: j.ClientFD, writable: true}
	t.s[up] = side{fd: -1}
	t.state = stRedial
	t.gen[client] = l.nextGen(t.slot)
	if err := l.register(j.ClientFD, t.slot, t.gen[client], client); err != nil {
		l.finish(t, ClientError, fmt.Errorf("register client fd %d: %w", j.ClientFD, err))
		return
	}
	l.dial(t)
}

// dial asks the handler for addresses until a connect is under way, or gives
// up with Failed. Immediate failures (a closed port on loopback refuses at
// once) move on to the next address without waiting.
func (l *loop) dial(t *tunnel) {
	for {
		addr, ok := t.job.Handler.NextUpstream(t.rep.Attempts, t.lastErr)
		if !ok {
			r, err := t.lastReason, t.lastErr
			if err == nil {
				r, err = ConnectFailed, ErrNoUpstream
			}
			l.fail(t, r, err, t.lastTimeout)
			return
		}
		t.rep.Attempts++
		t.rep.Upstream = addr
		t.lastTimeout, t.lastReason = false, ConnectFailed
		fd, err := dialSocket(addr)
		if err != nil {
			t.lastErr = fmt.Errorf("connect %s: %w", addr, err)
			continue
		}
		gen := l.nextGen(t.slot)
		if err := l.register(fd, t.slot, gen, up); err != nil {
			unix.Close(fd)
			t.lastErr = fmt.Errorf("register upstream fd: %w", err)
			continue
		}
		// A retry sends the whole request again, to a new server.
		t.req, t.reply = t.job.Request, t.reply[:0]
		t.s[up] = side{fd: fd}
		t.gen[up] = gen
		t.state = stConnecting
		t.deadline = never
		if t.ct > 0 {
			t.deadline = l.now + t.ct
			l.arm(t, t.deadline)
		}
		return
	}
}

// closeUpstream closes the upstream socket of a job that is not a tunnel.
func (l *loop) closeUpstream(t *tunnel) {
	if t.s[up].fd >= 0 {
		unix.Close(t.s[up].fd)
	}
	t.s[up] = side{fd: -1}
	t.gen[up] = 0 // events still queued for the closed socket are now stale
}

// attemptFailed drops the current attempt (connecting, or waiting for a
// verdict: nothing has reached the client yet, so another server may still
// serve it); the next one starts between batches, where new fds may be
// registered. r is the Reason the job ends with if no server is left.
func (l *loop) attemptFailed(t *tunnel, r Reason, err error, timedOut bool) {
	l.closeUpstream(t)
	t.lastErr, t.lastTimeout, t.lastReason = err, timedOut, r
	t.state = stRedial
	l.redial = append(l.redial, t)
}

// connectDone handles the first writable (or error) edge of a connecting
// upstream socket: SO_ERROR tells how the connect ended.
func (l *loop) connectDone(t *tunnel, e uint32) {
	err := sockErr(t.s[up].fd)
	if err == 0 && e&unix.EPOLLOUT == 0 {
		err = unix.ECONNRESET // a hang-up without an error and without OUT
	}
	if err != 0 {
		l.attemptFailed(t, ConnectFailed, fmt.Errorf("connect %s: %w", t.rep.Upstream, err), false)
		return
	}
	t.rep.Connected = time.Now()
	t.state = stHandshake
	s := &t.s[up]
	s.writable = true
	s.readable = e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
	s.rdhup = e&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
	t.deadline = never
	if t.ht > 0 {
		t.deadline = l.now + t.ht
		l.arm(t, t.deadline)
	}
	l.handshake(t)
}

// handshake writes the request and reads the answer until Judge decides.
func (l *loop) handshake(t *tunnel) {
	u := &t.s[up]
	for len(t.req) > 0 && u.writable {
		n, e := sysWrite(u.fd, t.req)
		switch e {
		case 0:
		case unix.EAGAIN:
			u.writable = false
			continue
		case unix.EINTR:
			continue
		default:
			l.attemptFailed(t, HandshakeFailed, fmt.Errorf("write request to %s: %w", t.rep.Upstream, e), false)
			return
		}
		t.req = t.req[n:]
		if len(t.req) > 0 {
			u.writable = false
		}
	}
	got := false
	var rerr unix.Errno
	for u.readable && !u.eof && len(t.reply) < t.maxReply {
		room := min(len(l.buf), t.maxReply-len(t.reply))
		n, e := sysRead(u.fd, l.buf[:room])
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			u.readable = false
			break
		}
		if e != 0 {
			rerr = e // judge what came before the error first
			break
		}
		if n == 0 {
			u.eof = true
			break
		}
		if t.reply == nil {
			t.reply = make([]byte, 0, min(t.maxReply, 1024))
		}
		t.reply = append(t.reply, l.buf[:n]...)
		got = true
		if n < room && !u.rdhup {
			u.readable = false
		}
	}
	if got {
		switch v := t.job.Handler.Judge(t.reply); v.Action {
		case Tunnel:
			l.startTunnel(t, v)
			return
		case Refuse:
			l.refuse(t, v)
			return
		case Retry:
			err := v.Err
			if err == nil {
				err = ErrInvalidReply
			}
			l.attemptFailed(t, HandshakeFailed, fmt.Errorf("upstream %s: %w", t.rep.Upstream, err), false)
			return
		}
	}
	switch {
	case rerr != 0:
		l.attemptFailed(t, HandshakeFailed, fmt.Errorf("read reply from %s: %w", t.rep.Upstream, rerr), false)
	case u.eof:
		l.attemptFailed(t, HandshakeFailed, fmt.Errorf("upstream %s: %w", t.rep.Upstream, ErrUpstreamClosed), false)
	case len(t.reply) >= t.maxReply:
		l.attemptFailed(t, HandshakeFailed, fmt.Errorf("upstream %s: %w (%d bytes)", t.rep.Upstream, ErrReplyTooLarge, len(t.reply)), false)
	}
}

// startTunnel turns a verified pair into a tunnel: the whole reply goes to
// the client, Held (after any request bytes the upstream answered before
// reading) goes upstream, then both directions open.
func (l *loop) startTunnel(t *tunnel, v Verdict) {
	t.state = stTunnel
	t.rep.Tunnelled = true
	t.lastUp = l.now
	l.pend(&t.d[toDown], t.reply)
	// Frames start after the upstream's head one way, after what is left of
	// the upgrade request the other.
	t.fc[toDown] = frameCursor{need: uint64(max(v.FramesAfter, 0))}
	t.fc[toUp] = frameCursor{need: uint64(len(t.req))}
	held := t.job.Held
	if len(t.req) > 0 {
		held = append(append(make([]byte, 0, len(t.req)+len(held)), t.req...), held...)
	}
	l.pend(&t.d[toUp], held)
	// A tunnel lives for hours: drop every reference to handshake bytes now,
	// so an idle tunnel keeps none of them alive.
	t.reply, t.req = nil, nil
	t.job.Request, t.job.Held = nil, nil
	// Client bytes may have waited in the kernel since before registration;
	// one read that finds nothing costs an EAGAIN.
	t.s[client].readable = true
	l.arm(t, t.due())
	l.serviceTunnel(t)
	if l.drainAt != 0 && !t.dead {
		l.markDrain(t, l.drainAt)
		l.goAway(t, false)
	}
}

// refuse writes v.Reply to the client, then relays the part of the upstream
// stream the verdict asks for (Skip, Forward), then closes both.
func (l *loop) refuse(t *tunnel, v Verdict) {
	t.state = stRefuse
	t.rep.Reason = Refused
	skip, fwd := max(v.Skip, 0), v.Forward
	if fwd < -1 {
		fwd = -1
	}
	var rest []byte
	if skip < len(t.reply) {
		rest, skip = t.reply[skip:], 0
	} else {
		skip -= len(t.reply)
	}
	if fwd >= 0 {
		if int64(len(rest)) > fwd {
			rest = rest[:fwd]
		}
		fwd -= int64(len(rest))
	}
	out := append(append(make([]byte, 0, len(v.Reply)+len(rest)), v.Reply...), rest...)
	t.reply, t.req = nil, nil
	t.job.Request, t.job.Held = nil, nil
	t.skip, t.fwd = skip, fwd
	t.lastUp = l.now
	l.pend(&t.d[toDown], out)
	l.arm(t, t.due())
	l.serviceRefuse(t)
}

// serviceRefuse drives the refusal: flush, then read-skip-forward from the
// upstream, bounded like a tunnel's down flow.
func (l *loop) serviceRefuse(t *tunnel) {
	u, c, f := &t.s[up], &t.s[client], &t.d[toDown]
	for k := 0; k < maxReadsPerWake; k++ {
		if f.buf != nil {
			if e := l.flush(t, toDown); e != 0 {
				l.finish(t, Refused, fmt.Errorf("client: %w", e))
				return
			}
			if f.buf != nil {
				return
			}
		}
		if t.fwd == 0 {
			l.finish(t, Refused, nil)
			return
		}
		if u.eof {
			var err error
			if t.fwd > 0 {
				err = fmt.Errorf("upstream %s: %w", t.rep.Upstream, ErrShortForward)
			}
			l.finish(t, Refused, err)
			return
		}
		if !u.readable {
			return
		}
		size := t.rsize
		if t.fwd > 0 && int64(size) > int64(t.skip)+t.fwd {
			size = int(int64(t.skip) + t.fwd)
		}
		n, e := sysRead(u.fd, l.buf[:size])
		switch e {
		case 0:
		case unix.EAGAIN:
			u.readable = false
			return
		case unix.EINTR:
			continue
		default:
			l.finish(t, Refused, fmt.Errorf("upstream %s: %w", t.rep.Upstream, e))
			return
		}
		if n == 0 {
			u.eof = true
			continue
		}
		t.lastUp = l.now
		if n < size && !u.rdhup {
			u.readable = false
		}
		b := l.buf[:n]
		if t.skip > 0 {
			s := min(t.skip, n)
			b, t.skip = b[s:], t.skip-s
		}
		if len(b) == 0 {
			continue
		}
		if t.fwd > 0 {
			t.fwd -= int64(len(b))
		}
		w := 0
		if c.writable {
			w, e = sysWrite(c.fd, b)
			switch e {
			case 0:
			case unix.EAGAIN:
				w = 0
			default:
				l.finish(t, Refused, fmt.Errorf("client: %w", e))
				return
			}
			l.wrote(t, toDown, b[:w])
		}
		if w < len(b) {
			c.writable = false
			l.stash(t, f, b[w:])
		}
	}
	l.park(t)
}

// fail gives up on the upstream: the handler's answer goes to the client,
// then both close.
func (l *loop) fail(t *tunnel, r Reason, err error, timedOut bool) {
	l.closeUpstream(t)
	t.state = stFailing
	t.rep.Reason, t.rep.Err = r, err
	t.reply, t.req = nil, nil
	out := t.job.Handler.Failed(err, timedOut)
	l.pend(&t.d[toDown], out)
	l.arm(t, t.due())
	l.serviceFailing(t)
}

func (l *loop) serviceFailing(t *tunnel) {
	if e := l.flush(t, toDown); e != 0 {
		l.finish(t, t.rep.Reason, fmt.Errorf("client: %w", e))
		return
	}
	if t.d[toDown].buf == nil {
		l.finish(t, t.rep.Reason, nil)
	}
}
