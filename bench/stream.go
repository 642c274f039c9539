package bench

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// inflight is a message written and not yet echoed.
type inflight struct {
	seq     uint64
	start   time.Time // latency is measured from here
	counted bool
}

// stream runs rate mode (s != nil: send on s's schedule from t0) or bulk
// mode (s == nil: send as fast as the window allows) on one connection: a
// writer (this goroutine) and a reader, with at most window messages in
// flight. It returns when the window has ended and every message written
// has been echoed or counted as failed, reporting whether c is still
// healthy.
//
// Hot path, both sides: no allocation, no lock except the latency shard.
func (r *run) stream(c *conn, g int, s *schedule, t0 time.Time, window int) bool {
	q := make(chan inflight, window)     // written, in order
	slots := make(chan struct{}, window) // one per message in flight
	var dead atomic.Bool                 // the reader saw the connection fail
	var wg sync.WaitGroup
	wg.Go(func() { r.read(c, g, q, slots, &dead) })
	r.write(c, s, t0, q, slots, &dead)
	close(q)
	wg.Wait()
	return !dead.Load()
}

// write sends messages until the window ends or the connection fails.
func (r *run) write(c *conn, s *schedule, t0 time.Time, q chan<- inflight, slots chan struct{}, dead *atomic.Bool) {
	var timer *time.Timer
	if s != nil {
		timer = time.NewTimer(time.Hour)
		defer timer.Stop()
	}
	var woke time.Time // when the timer last woke this sender
	for k := int64(0); ; k++ {
		if dead.Load() || r.stopped() {
			return
		}
		var due time.Time
		if s != nil {
			due = t0.Add(s.due(k))
			if w := s.wait(k, time.Since(t0)); w > 0 {
				timer.Reset(w)
				select {
				case <-timer.C:
					woke = time.Now()
				case <-r.stop:
					return
				}
			}
		}
		select {
		case slots <- struct{}{}:
		case <-r.stop:
			return
		}
		if r.stopped() {
			<-slots
			return
		}
		m := inflight{seq: uint64(k) + 1, start: time.Now(), counted: r.counting()}
		if s != nil {
			m.start = latencyStart(due, woke)
		}
		if m.counted {
			r.sent.Add(1)
		}
		if err := c.send(m.seq, r.deadline()); err != nil {
			if m.counted {
				r.errs.add(err)
			}
			<-slots
			dead.Store(true)
			return
		}
		q <- m
	}
}

// read takes each message written, in order, and waits for its echo. Once
// the connection failed (anything but a mismatch, after which the next
// frame can still be read), the messages still in flight end with the
// same error without waiting.
func (r *run) read(c *conn, g int, q <-chan inflight, slots <-chan struct{}, dead *atomic.Bool) {
	var fatal error
	for m := range q {
		err := fatal
		if err == nil {
			err = c.recv(m.seq, r.deadline())
		}
		end := time.Now()
		<-slots
		if err == nil {
			r.echoes.Add(1)
			if m.counted {
				r.echoed.Add(1)
				r.lat.record(g, end.Sub(m.start))
			}
			continue
		}
		if m.counted {
			r.errs.add(err)
		}
		if fatal == nil && !errors.Is(err, ErrMismatch) {
			fatal = err
			dead.Store(true)
		}
	}
}
