package bench

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A run goes through these phases. Messages are counted (Sent, Echoed,
// Errors, Latency) only when written in phaseMeasure, except in idle mode,
// where every message is one of the two checks each tunnel makes and all
// are counted.
type phase int32

const (
	phaseOpening phase = iota // dialing the connections
	phaseWarmup               // load runs, nothing is recorded
	phaseMeasure              // the measured window
	phaseDrain                // no new messages; waiting for echoes, closing
)

var phaseNames = [...]string{"opening", "warmup", "measure", "drain"}

func (p phase) String() string { return phaseNames[p] }

// Bounds of the load generator's own concurrency.
const (
	// maxDialing bounds connections being opened (or checked and closed,
	// in idle mode) at once, so opening 100,000 tunnels does not start
	// 100,000 connects in the same instant.
	maxDialing = 256
	// rateWindow and bulkWindow bound the messages in flight on one
	// connection: a rate sender that reaches it waits for an echo, falls
	// behind its schedule and catches up (the wait counts in the latency);
	// a bulk sender keeps the path full without queueing without end.
	rateWindow = 1024
	bulkWindow = 8
	// cancelGrace is how long echoes in flight still have when the run's
	// context is cancelled (at most Timeout).
	cancelGrace = time.Second
	// closeTimeout bounds each closing handshake at the end (at most
	// Timeout); it is not measured.
	closeTimeout = 2 * time.Second
)

// run is the state of one Run, shared by its goroutines.
type run struct {
	o       Options
	t       *target
	src     *Sources // nil when the target is not on loopback: no binding
	tmpl    []byte
	bufSize int

	ids     atomic.Uint64 // conn ids
	srcNext atomic.Uint64

	phase atomic.Int32
	stop  chan struct{} // closed when the measured window ends
	limit atomic.Int64  // unix ns past which no read or write waits; 0 = none

	sent, echoed, handshakes atomic.Int64
	echoes                   atomic.Int64 // echoes in any phase, for progress
	open                     atomic.Int64 // connections open now
	errs                     errorCounts
	lat, hsLat               *recorder

	loadStart atomic.Int64 // unix ns when the load (warmup or window) began

	// Owned by the goroutine that runs the timeline.
	measuring        bool
	winStart, winEnd time.Time
	opened, alive    int
}

// Run generates the load o describes and returns what it measured. It
// returns an error only for options Normalize rejects; failures of the
// target are counted in the Result. Cancelling ctx ends the run early:
// the window closes at once, echoes in flight get at most a second, and
// the partial Result is returned. Run leaves no goroutine behind.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Normalize(); err != nil {
		return nil, err
	}
	t, err := parseTarget(o.URL, o.Host, o.Origin, o.TLS)
	if err != nil {
		return nil, err
	}
	r := &run{
		o:       o,
		t:       t,
		tmpl:    newTemplate(o.Payload),
		bufSize: min(max(o.Payload+14, 4<<10), 64<<10),
		stop:    make(chan struct{}),
	}
	if o.Sources > 0 {
		if r.src, err = NewSources(o.Sources); err != nil {
			return nil, err
		}
	}
	workers := o.Conns
	if o.Mode == ModeIdle {
		workers = min(workers, maxDialing)
	}
	r.lat = newRecorder(workers)
	r.hsLat = newRecorder(min(o.Conns, maxDialing))

	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		select {
		case <-ctx.Done():
			r.setLimit(time.Now().Add(min(cancelGrace, o.Timeout)))
		case <-done:
		}
	})
	if o.Progress != nil {
		p := newProgress(o.Progress, r)
		bg.Go(func() { p.loop(done) })
	}

	switch o.Mode {
	case ModeIdle:
		r.idle(ctx)
	case ModeHandshake:
		r.handshake(ctx)
	default:
		r.messages(ctx)
	}
	close(done)
	bg.Wait()
	return r.result(), nil
}

// counting reports whether a message written now is counted.
func (r *run) counting() bool {
	return r.o.Mode == ModeIdle || phase(r.phase.Load()) == phaseMeasure
}

// stopped reports whether the measured window has ended.
func (r *run) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// setLimit lowers the time past which nothing waits to t.
func (r *run) setLimit(t time.Time) {
	n := t.UnixNano()
	for {
		old := r.limit.Load()
		if old != 0 && old <= n {
			return
		}
		if r.limit.CompareAndSwap(old, n) {
			return
		}
	}
}

// limitTime is the limit, or the zero time when there is none.
func (r *run) limitTime() time.Time {
	if n := r.limit.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// deadline is the deadline of one read or write starting now.
func (r *run) deadline() time.Time { return deadline(r.o.Timeout, r.limitTime()) }

// nextSource is the source address of the next connection (the zero
// Addr, which binds nothing, when there are no sources).
func (r *run) nextSource() netip.Addr {
	if r.src == nil {
		return netip.Addr{}
	}
	return r.src.At(int(r.srcNext.Add(1) - 1))
}

// newConn makes a conn with a fresh id.
func (r *run) newConn() *conn {
	c := newConn(r.tmpl, r.bufSize)
	c.id = r.ids.Add(1)
	return c
}

// dial opens c. A failure is counted when counted is true and the run was
// not cancelled; a success records the handshake latency (dial start to
// verified 101) for goroutine g.
func (r *run) dial(ctx context.Context, c *conn, g int, counted bool) bool {
	start := time.Now()
	if err := c.dial(ctx, r.t, r.nextSource(), r.o.Timeout); err != nil {
		if counted && ctx.Err() == nil {
			r.errs.add(err)
		}
		return false
	}
	if counted {
		r.hsLat.record(g, time.Since(start))
	}
	r.open.Add(1)
	return true
}

// exchange sends message seq on c and waits for its echo, counting it
// when counted is true, for goroutine g.
func (r *run) exchange(c *conn, g int, seq uint64, counted bool) error {
	if counted {
		r.sent.Add(1)
	}
	start := time.Now()
	end, err := c.roundTrip(seq, r.o.Timeout, r.limitTime())
	if err != nil {
		if counted {
			r.errs.add(err)
		}
		return err
	}
	r.echoes.Add(1)
	if counted {
		r.echoed.Add(1)
		r.lat.record(g, end.Sub(start))
	}
	return nil
}

// close ends c: the closing handshake when it is healthy, else just the
// socket.
func (r *run) close(c *conn, healthy bool) {
	if healthy {
		_ = c.shutdown(deadline(min(closeTimeout, r.o.Timeout), r.limitTime()))
	} else {
		_ = c.nc.Close()
	}
	r.open.Add(-1)
}

// parallel calls fn(g, i) for i in [0, n) from min(n, width) goroutines,
// g being the goroutine's number, and waits for them.
func parallel(n, width int, fn func(g, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range min(n, width) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(g, i)
			}
		})
	}
	wg.Wait()
}

// openAll opens n connections, at most maxDialing at a time, and returns
// those that opened (and passed check, when not nil).
func (r *run) openAll(ctx context.Context, n int, check func(c *conn, g int) bool) []*conn {
	conns := make([]*conn, n)
	parallel(n, maxDialing, func(g, i int) {
		if ctx.Err() != nil {
			return
		}
		c := r.newConn()
		if !r.dial(ctx, c, g, true) {
			return
		}
		if check != nil && !check(c, g) {
			r.close(c, false)
			return
		}
		conns[i] = c
	})
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	return open
}

// beginLoad marks the start of the load: warmup when there is one, else
// the measured window.
func (r *run) beginLoad() {
	r.loadStart.Store(time.Now().UnixNano())
	if r.o.Warmup > 0 {
		r.phase.Store(int32(phaseWarmup))
		return
	}
	r.beginMeasure()
}

// beginMeasure calls OnMeasure(true) and opens the window.
func (r *run) beginMeasure() {
	if r.o.OnMeasure != nil {
		r.o.OnMeasure(true)
	}
	r.measuring = true
	r.winStart = time.Now()
	r.phase.Store(int32(phaseMeasure))
}

// endMeasure closes the window (if it was open), stops the senders and
// calls OnMeasure(false). With drain, echoes still awaited get Timeout
// from now.
func (r *run) endMeasure(drain bool) {
	now := time.Now()
	if r.measuring {
		r.winEnd = now
	}
	r.phase.Store(int32(phaseDrain))
	if drain {
		r.setLimit(now.Add(r.o.Timeout))
	}
	close(r.stop)
	if r.measuring && r.o.OnMeasure != nil {
		r.o.OnMeasure(false)
	}
}

// hold runs the timeline after beginLoad: the rest of the warmup, then
// the window. It returns early when ctx ends.
func (r *run) hold(ctx context.Context) {
	if !r.measuring {
		if !sleep(ctx, r.o.Warmup) {
			return
		}
		r.beginMeasure()
	}
	sleep(ctx, r.o.Duration)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// idle opens the tunnels, each checked by one echo, holds them for the
// window, checks each again and closes them.
func (r *run) idle(ctx context.Context) {
	conns := r.openAll(ctx, r.o.Conns, func(c *conn, g int) bool {
		return r.exchange(c, g, 1, true) == nil
	})
	r.opened = len(conns)
	if len(conns) > 0 && ctx.Err() == nil {
		r.beginLoad()
		r.hold(ctx)
	}
	r.endMeasure(false)
	var alive atomic.Int64
	parallel(len(conns), maxDialing, func(g, i int) {
		c := conns[i]
		if ctx.Err() != nil { // cancelled: no check, just a clean close
			r.close(c, true)
			return
		}
		ok := r.exchange(c, g, 2, true) == nil
		if ok {
			alive.Add(1)
		}
		r.close(c, ok)
	})
	r.alive = int(alive.Load())
}

// messages runs rate, closed and bulk modes: open the connections, load
// them through warmup and window, drain, close.
func (r *run) messages(ctx context.Context) {
	conns := r.openAll(ctx, r.o.Conns, nil)
	if len(conns) == 0 || ctx.Err() != nil {
		r.endMeasure(true)
		for _, c := range conns {
			r.close(c, true)
		}
		return
	}
	r.beginLoad()
	t0 := time.Now()
	var wg sync.WaitGroup
	for g, c := range conns {
		wg.Go(func() {
			var healthy bool
			switch r.o.Mode {
			case ModeRate:
				s := &schedule{i: g, conns: len(conns), rate: r.o.Rate}
				healthy = r.stream(c, g, s, t0, rateWindow)
			case ModeBulk:
				healthy = r.stream(c, g, nil, t0, bulkWindow)
			default:
				healthy = r.closedLoop(c, g)
			}
			r.close(c, healthy)
		})
	}
	r.hold(ctx)
	r.endMeasure(true)
	wg.Wait()
}

// closedLoop is closed mode on one connection: send, wait for the echo,
// repeat until the window ends. It reports whether c is still healthy.
func (r *run) closedLoop(c *conn, g int) bool {
	for seq := uint64(1); !r.stopped(); seq++ {
		err := r.exchange(c, g, seq, r.counting())
		if err != nil && kindOf(err) != KindMismatch {
			return false
		}
	}
	return true
}

// handshake runs Conns workers cycling connect, upgrade, echo, close until
// the window ends. A cycle belongs to the phase it began in: its
// connection errors, its message and its completion are counted when it
// began in the window.
func (r *run) handshake(ctx context.Context) {
	r.beginLoad()
	var wg sync.WaitGroup
	for g := range r.o.Conns {
		wg.Go(func() {
			c := r.newConn()
			for !r.stopped() && ctx.Err() == nil {
				counted := r.counting()
				c.id = r.ids.Add(1)
				if !r.dial(ctx, c, g, counted) {
					continue
				}
				err := r.exchange(c, g, 1, counted)
				if err != nil {
					r.close(c, false)
					continue
				}
				err = c.shutdown(r.deadline())
				r.open.Add(-1)
				switch {
				case err != nil && counted:
					r.errs.add(err)
				case counted:
					r.handshakes.Add(1)
				}
			}
		})
	}
	r.hold(ctx)
	r.endMeasure(true)
	wg.Wait()
}

// result builds the Result.
func (r *run) result() *Result {
	o := &r.o
	res := &Result{
		Mode:       o.Mode,
		URL:        o.URL,
		Conns:      o.Conns,
		Payload:    o.Payload,
		Sources:    o.Sources,
		Sent:       r.sent.Load(),
		Echoed:     r.echoed.Load(),
		Errors:     r.errs.snapshot(),
		Handshakes: r.handshakes.Load(),

		Latency:          r.lat.summary(),
		HandshakeLatency: r.hsLat.summary(),
	}
	if o.Mode == ModeRate {
		res.Rate = o.Rate
	}
	if o.Mode == ModeIdle {
		res.Open, res.Alive = r.opened, r.alive
	}
	if r.measuring {
		res.Elapsed = r.winEnd.Sub(r.winStart).Seconds()
	}
	if res.Elapsed > 0 {
		res.MsgsPerSec = float64(res.Echoed) / res.Elapsed
		res.MBPerSec = float64(res.Echoed) * float64(o.Payload) / 1e6 / res.Elapsed
		res.HandshakesPerSec = float64(res.Handshakes) / res.Elapsed
	}
	return res
}
