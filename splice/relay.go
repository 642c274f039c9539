package splice

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

type state uint8

const (
	stConnecting state = iota + 1 // upstream connect in progress
	stRedial                      // attempt failed; next one starts between batches
	stHandshake                   // request out, waiting for a verdict on the reply
	stTunnel                      // verified tunnel, bytes flow both ways
	stRefuse                      // writing the refusal and the forwarded part of the reply
	stFailing                     // writing Handler.Failed's bytes to the client
)

// Sides and directions. Flow i reads side i and writes side 1-i.
const (
	client = 0
	up     = 1 // the upstream side; also flow 1 = upstream → client ("down")
	toUp   = 0 // flow client → upstream
	toDown = 1 // flow upstream → client
)

// side is one socket of a job with its edge-triggered readiness as last seen.
type side struct {
	fd       int
	readable bool // an edge said readable and no read has said drained since
	writable bool // ditto for writes
	rdhup    bool // peer's FIN (or an error) seen: read until 0, a short read proves nothing
	eof      bool // read returned 0
	shut     bool // we sent shutdown(SHUT_WR)
}

// flow is one direction's bytes read but not yet written: buf[off:end].
// buf is nil when nothing is pending, so an idle tunnel holds no buffer.
type flow struct {
	buf    []byte
	off    int
	end    int
	pooled bool  // buf came from the loop's free list (else: reply, Held, refusal)
	since  int64 // loop time of the last write progress while pending
	bytes  int64 // bytes written to the destination
	peak   int   // most bytes ever pending in a pooled buffer (tests)
}

// tunnel is one job from adoption to Done, whatever its state.
type tunnel struct {
	job   *Job
	rep   Report
	state state
	slot  int32
	gen   [2]uint32 // generation in each side's epoll data; 0 = no fd registered
	s     [2]side
	d     [2]flow
	fc    [2]frameCursor // frame boundaries of each flow as written (Drain)
	// drainAt is when a drain must have closed this tunnel (loop time);
	// 0: not draining.
	drainAt int64

	rsize    int   // bytes per read: min(BufferSize, readBufSize)
	maxReply int   // MaxReplyHead
	ct, ht   int64 // connect and handshake timeouts (ns, 0 = none)
	rt, st   int64 // read and send timeouts (ns, 0 = none)
	deadline int64 // connect or handshake deadline, loop time

	lastErr     error  // last attempt's failure
	lastTimeout bool   // ... whether it was a timeout
	lastReason  Reason // ... and the Reason it gives when no attempt is left

	req   []byte // request bytes still to write
	reply []byte // upstream answer so far
	skip  int    // refuse: reply bytes still to discard
	fwd   int64  // refuse: bytes still to forward (-1: until EOF)

	lastUp   int64 // loop time of the last read from the upstream (or of unblocking)
	firstEOF int   // side that sent EOF first, -1 while none

	hidx   int   // index in the loop's heap, -1 if absent
	hkey   int64 // heap key: no later than the real earliest deadline
	queued bool  // on the loop's ready list
	dead   bool  // finished; pointers to it may linger in lists
}

// readIdle is the read idle timeout in force. A refusal is still part of
// the handshake: an upstream that answers, say, a chunked 426 and then keeps
// the connection open must not hold the client for the tunnel's read
// timeout (an hour by default), so the handshake timeout bounds it.
func (t *tunnel) readIdle() int64 {
	if t.state == stRefuse && t.ht > 0 && (t.rt == 0 || t.ht < t.rt) {
		return t.ht
	}
	return t.rt
}

// due returns the tunnel's real earliest deadline in loop time.
func (t *tunnel) due() int64 {
	switch t.state {
	case stConnecting, stHandshake:
		return t.deadline
	case stTunnel, stRefuse, stFailing:
		d := int64(never)
		// The read clock runs only while we wait for the upstream: while the
		// down flow is blocked on the client we are not reading, by choice
		// (nginx deletes its read timer in that case too).
		if rt := t.readIdle(); rt > 0 && t.state != stFailing && t.d[toDown].buf == nil {
			d = t.lastUp + rt
		}
		if t.st > 0 {
			for i := range t.d {
				if t.d[i].buf != nil {
					d = min(d, t.d[i].since+t.st)
				}
			}
		}
		return d
	}
	return never
}

// serviceTunnel moves bytes both ways and ends the tunnel once both
// directions are finished (each source sent EOF, its bytes were delivered and
// the destination was shut down for writing).
func (l *loop) serviceTunnel(t *tunnel) {
	if s, e := l.pump(t, toUp); e != 0 {
		l.fault(t, s, e)
		return
	}
	if s, e := l.pump(t, toDown); e != 0 {
		l.fault(t, s, e)
		return
	}
	if t.s[client].shut && t.s[up].shut {
		r := ClientClosed
		if t.firstEOF == up {
			r = UpstreamClosed
		}
		l.finish(t, r, nil)
	}
}

// pump moves bytes for flow i: first what is pending, then fresh reads, each
// written to the other side at once.
//
// HOT PATH: this runs per relayed chunk. It must not allocate, lock or log.
// A partial write copies the rest into a pooled buffer (no allocation in
// steady state) and stops reading the source until it drains; at most
// maxReadsPerWake reads, then the tunnel is parked so a bulk flow cannot
// starve the loop's other tunnels.
//
// The seam for splice(2): a tunnel found to be a bulk flow would run a
// different pump for the direction (socket → pipe → socket, the pipe taken
// from a per-loop pool and bounded by BufferSize the same way); the side and
// flow state, the timers and the ending logic stay as they are.
//
// On failure pump returns the side that failed and its errno.
func (l *loop) pump(t *tunnel, i int) (int, unix.Errno) {
	f := &t.d[i]
	src, dst := &t.s[i], &t.s[1-i]
	if f.buf != nil {
		if e := l.flush(t, i); e != 0 {
			return 1 - i, e
		}
		if f.buf != nil {
			return 0, 0
		}
	}
	if src.eof {
		if !dst.shut {
			dst.shut = true
			// Errors (ENOTCONN after a reset) surface on the next read.
			unix.Shutdown(dst.fd, unix.SHUT_WR)
		}
		return 0, 0
	}
	size := t.rsize
	for k := 0; k < maxReadsPerWake; k++ {
		if !src.readable {
			return 0, 0
		}
		n, e := sysRead(src.fd, l.buf[:size])
		switch e {
		case 0:
		case unix.EAGAIN:
			src.readable = false
			return 0, 0
		case unix.EINTR:
			continue
		default:
			return i, e
		}
		if n == 0 {
			src.eof, src.readable = true, false
			if t.firstEOF < 0 {
				t.firstEOF = i
			}
			dst.shut = true
			unix.Shutdown(dst.fd, unix.SHUT_WR)
			return 0, 0
		}
		if i == toDown {
			t.lastUp = l.now
		}
		// A short read drained the socket: the next arrival raises a new
		// edge. Not so once the FIN is in: it raised its only edge already.
		if n < size && !src.rdhup {
			src.readable = false
		}
		w := 0
		if dst.writable {
			for {
				w, e = sysWrite(dst.fd, l.buf[:n])
				if e != unix.EINTR {
					break
				}
			}
			switch e {
			case 0:
			case unix.EAGAIN:
				w = 0
			default:
				return 1 - i, e
			}
			l.wrote(t, i, l.buf[:w])
		}
		if w < n {
			// A partial write leaves SOCK_NOSPACE set, so the kernel raises
			// EPOLLOUT when room returns (nginx relies on the same).
			dst.writable = false
			l.stash(t, f, l.buf[w:n])
			return 0, 0
		}
	}
	if src.readable {
		l.park(t)
	}
	return 0, 0
}

// wrote accounts for bytes b just written for flow i: the count, the frame
// cursor and, when the job asked for live totals, those: two atomic
// operations per write, no lock, no allocation (TestNoAllocPerChunk).
func (l *loop) wrote(t *tunnel, i int, b []byte) {
	n := len(b)
	t.d[i].bytes += int64(n)
	t.fc[i].advance(b)
	if lv := t.job.Live; lv != nil && n > 0 {
		// LastActive first: a reader that sees the new byte count then
		// also sees a time (Go's atomics are sequentially consistent).
		lv.LastActive.Store(l.baseUnix + l.now)
		if i == toUp {
			lv.BytesUp.Add(int64(n))
		} else {
			lv.BytesDown.Add(int64(n))
		}
	}
}

// flush writes flow i's pending bytes. When they are all out, the buffer goes
// back to the free list; a down flow that unblocks restarts the read clock.
func (l *loop) flush(t *tunnel, i int) unix.Errno {
	f := &t.d[i]
	if f.buf == nil {
		return 0
	}
	dst := &t.s[1-i]
	for f.end > f.off {
		if !dst.writable {
			return 0
		}
		n, e := sysWrite(dst.fd, f.buf[f.off:f.end])
		switch e {
		case 0:
		case unix.EAGAIN:
			dst.writable = false
			return 0
		case unix.EINTR:
			continue
		default:
			return e
		}
		l.wrote(t, i, f.buf[f.off:f.off+n])
		f.off += n
		f.since = l.now
		l.pendBytes -= int64(n)
		if f.off < f.end {
			dst.writable = false
			return 0
		}
	}
	l.release(f)
	if i == toDown {
		// The read clock restarts; its deadline may be earlier than the
		// heap key (a send deadline): a heap operation per unblocking, at
		// most, never per chunk.
		t.lastUp = l.now
		if rt := t.readIdle(); rt > 0 {
			l.arm(t, l.now+rt)
		}
	}
	return 0
}

// stash keeps b (the unwritten tail of a read) in a pooled buffer of flow f.
func (l *loop) stash(t *tunnel, f *flow, b []byte) {
	var buf []byte
	if n := len(l.spare); n > 0 {
		buf = l.spare[n-1]
		l.spare[n-1] = nil
		l.spare = l.spare[:n-1]
	}
	if cap(buf) < len(b) {
		buf = make([]byte, t.rsize) // cold: the free list is empty or holds a smaller size
	}
	f.buf, f.off, f.end, f.pooled = buf[:cap(buf)], 0, copy(buf[:cap(buf)], b), true
	f.since = l.now
	f.peak = max(f.peak, f.end)
	l.bufsOut++
	l.pendBytes += int64(f.end)
	if t.st > 0 {
		l.arm(t, l.now+t.st) // a heap operation only if earlier than the key
	}
}

// pend makes b (reply, Held, refusal: not pooled) the pending bytes of f.
func (l *loop) pend(f *flow, b []byte) {
	if len(b) == 0 {
		return
	}
	f.buf, f.off, f.end, f.pooled, f.since = b, 0, len(b), false, l.now
	l.pendBytes += int64(len(b))
}

func (l *loop) release(f *flow) {
	if f.buf == nil {
		return
	}
	l.pendBytes -= int64(f.end - f.off)
	if f.pooled {
		l.bufsOut--
		if len(l.spare) < maxSpareBufs {
			l.spare = append(l.spare, f.buf)
		}
	}
	f.buf, f.off, f.end, f.pooled = nil, 0, 0, false
}

// fault ends a tunnel after a syscall on side s failed with e.
func (l *loop) fault(t *tunnel, s int, e unix.Errno) {
	r, who := ClientError, "client"
	if s == up {
		r, who = UpstreamError, "upstream "+t.rep.Upstream.String()
	}
	// A peer that sent its FIN and then refuses our bytes simply left.
	if t.s[s].eof {
		r = ClientClosed
		if s == up {
			r = UpstreamClosed
		}
	}
	l.finish(t, r, fmt.Errorf("%s: %w", who, e))
}

// timeout acts on a deadline that came due.
func (l *loop) timeout(t *tunnel) {
	switch t.state {
	case stConnecting:
		l.attemptFailed(t, ConnectTimeout, fmt.Errorf("connect %s: %w", t.rep.Upstream, ErrConnectTimeout), true)
	case stHandshake:
		l.attemptFailed(t, HandshakeTimeout, fmt.Errorf("upstream %s: %w", t.rep.Upstream, ErrHandshakeTimeout), true)
	default:
		for i := range t.d {
			if f := &t.d[i]; t.st > 0 && f.buf != nil && f.since+t.st <= l.now {
				who := "client"
				if i == toUp {
					who = "upstream " + t.rep.Upstream.String()
				}
				l.finish(t, SendTimeout, fmt.Errorf("write to %s: %w", who, ErrSendTimeout))
				return
			}
		}
		l.finish(t, ReadTimeout, fmt.Errorf("upstream %s: %w", t.rep.Upstream, ErrReadTimeout))
	}
}

// finish ends a job: both fds closed (each exactly once), buffers returned,
// timers dropped, slot freed, then Done. The first reason sealed by refuse or
// fail stands (only Shutdown overrides it).
func (l *loop) finish(t *tunnel, r Reason, err error) {
	if t.dead {
		return
	}
	t.dead = true
	if t.drainAt != 0 {
		l.draining--
	}
	if fd := t.s[up].fd; fd >= 0 {
		unix.Close(fd)
		t.s[up].fd = -1
	}
	if fd := t.s[client].fd; fd >= 0 {
		// The engine's fd is a dup: another descriptor of the same socket may
		// live elsewhere, and an epoll registration belongs to the socket,
		// not the fd number. Delete it explicitly.
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		if (t.state == stRefuse || t.state == stFailing) && r != Shutdown {
			l.discard(fd)
		}
		unix.Close(fd)
		t.s[client].fd = -1
	}
	t.gen = [2]uint32{}
	for i := range t.d {
		l.release(&t.d[i])
	}
	if t.hidx >= 0 {
		l.heapRemove(t)
	}
	l.slots[t.slot] = nil
	l.free = append(l.free, t.slot)

	if t.rep.Reason == 0 || r == Shutdown {
		t.rep.Reason = r
	}
	if t.rep.Err == nil {
		t.rep.Err = err
	}
	t.rep.BytesUp, t.rep.BytesDown = t.d[toUp].bytes, t.d[toDown].bytes
	t.rep.End = time.Now()
	h := t.job.Handler
	t.job, t.reply, t.req, t.lastErr = nil, nil, nil, nil
	l.pool.live.Add(-1)
	l.jobs.Add(-1)
	h.Done(&t.rep)
}

// discard reads and drops what the client sent and we never read, so that
// the close after a refusal or a 502 sends a FIN, not a reset that could
// destroy the answer in flight. Bounded: this is not a lingering close.
func (l *loop) discard(fd int) {
	for k := 0; k < 4; k++ {
		n, e := sysRead(fd, l.buf)
		if e != 0 || n < len(l.buf) {
			return
		}
	}
}
