package splice

import (
	"time"

	"golang.org/x/sys/unix"
)

// Drain ends every tunnel for a graceful shutdown and reports how it went.
// Each verified tunnel gets a close frame with status 1001 (Going Away) on
// both sides as soon as both of its directions stand at a frame boundary
// with nothing pending (a message being relayed finishes first), and is
// then closed (Reason Shutdown). Handshakes still in progress go on; a
// tunnel they open is drained at once. At deadline whatever is left is
// closed: a tunnel side at a frame boundary still gets its close frame,
// the other only a TCP close.
//
// It returns once no job is left (new ones must not be submitted: stop the
// front first) or, failing that, shortly after deadline, with the number of
// tunnels that did not get a close frame on both sides; 0 is a clean drain.
// The pool keeps running: Close it afterwards.
func (p *Pool) Drain(deadline time.Time) (forced int) {
	for _, l := range p.loops {
		l.mu.Lock()
		l.calls = append(l.calls, func() { l.startDrain(deadline) })
		l.wakeLocked()
		l.mu.Unlock()
	}
	// The loops close what is left at deadline; this wait only has to
	// outlast them.
	for p.live.Load() > 0 && time.Now().Before(deadline.Add(time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	return int(p.forced.Load())
}

// DrainWhere ends the verified tunnels whose Handler pick selects, the way
// Drain ends them all (1001 between frames, the rest at deadline), and
// leaves every other job alone; it does not wait. A config reload uses it
// for the tunnels of upstream servers it removed. pick runs on the relay
// loops, once per tunnel: keep it short.
func (p *Pool) DrainWhere(deadline time.Time, pick func(Handler) bool) {
	for _, l := range p.loops {
		l.mu.Lock()
		l.calls = append(l.calls, func() { l.drainSome(deadline, pick) })
		l.wakeLocked()
		l.mu.Unlock()
	}
}

// drainPollMs is how often a loop with tunnels drained one by one looks
// at their deadlines when no event wakes it.
const drainPollMs = 50

// Forced is the number of tunnels Drain has closed without a close frame
// on both sides so far.
func (p *Pool) Forced() int { return int(p.forced.Load()) }

// startDrain runs on the loop: every tunnel, and every tunnel still to
// come, drains.
func (l *loop) startDrain(deadline time.Time) {
	l.drainAt = max(int64(deadline.Sub(l.base)), 1)
	for _, t := range l.slots {
		if t != nil && !t.dead && t.state == stTunnel {
			l.markDrain(t, l.drainAt)
		}
	}
	l.drainStep()
}

// drainSome marks the verified tunnels pick selects.
func (l *loop) drainSome(deadline time.Time, pick func(Handler) bool) {
	at := max(int64(deadline.Sub(l.base)), 1)
	for _, t := range l.slots {
		if t != nil && !t.dead && t.state == stTunnel && t.drainAt == 0 && pick(t.job.Handler) {
			l.markDrain(t, at)
		}
	}
	l.drainStep()
}

// markDrain gives t a drain deadline (loop time), keeping the earlier one.
func (l *loop) markDrain(t *tunnel, at int64) {
	if t.drainAt == 0 {
		l.draining++
		t.drainAt = at
	} else {
		t.drainAt = min(t.drainAt, at)
	}
}

// drainStep offers the draining tunnels of the loop their close frames,
// forcing those past their deadline; during a shutdown (drainAt) also
// whatever else is left at the deadline.
func (l *loop) drainStep() {
	if l.draining == 0 && l.drainAt == 0 {
		return
	}
	for _, t := range l.slots {
		if t == nil || t.dead {
			continue
		}
		switch {
		case t.drainAt != 0:
			l.goAway(t, l.now >= t.drainAt)
		case l.drainAt != 0 && l.now >= l.drainAt:
			l.goAway(t, true) // a handshake still going at the shutdown's deadline
		}
	}
}

// goAway closes t with close frames if both directions are at a frame
// boundary; with force, it closes t whatever its state. Only Drain calls
// it, on the loop.
func (l *loop) goAway(t *tunnel, force bool) {
	if t.state != stTunnel {
		if force {
			l.finish(t, Shutdown, ErrClosed)
		}
		return
	}
	down := t.d[toDown].buf == nil && t.fc[toDown].atBoundary() && !t.s[client].shut
	upOK := t.d[toUp].buf == nil && t.fc[toUp].atBoundary() && !t.s[up].shut
	if !(down && upOK) && !force {
		return
	}
	clean := true
	if !down || !l.sendFrame(t, toDown, client, closeToClient) {
		clean = false
	}
	if !upOK || !l.sendFrame(t, toUp, up, closeToUpstream) {
		clean = false
	}
	if !clean {
		l.pool.forced.Add(1)
	}
	// Read what the peers had already sent, so that closing does not
	// answer it with a reset that could overtake the close frame.
	for _, s := range [...]int{client, up} {
		if fd := t.s[s].fd; fd >= 0 {
			unix.Shutdown(fd, unix.SHUT_WR)
			l.discard(fd)
		}
	}
	l.finish(t, Shutdown, nil)
}

// sendFrame writes a whole control frame for flow i to side s, or nothing
// that counts: a partial write (a full socket) is reported as a failure.
func (l *loop) sendFrame(t *tunnel, i, s int, f []byte) bool {
	fd := t.s[s].fd
	if fd < 0 {
		return false
	}
	n, e := sysWrite(fd, f)
	if n > 0 {
		l.wrote(t, i, f[:n])
	}
	return e == 0 && n == len(f)
}
