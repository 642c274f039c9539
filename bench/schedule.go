package bench

import "time"

// schedule is one connection's send plan in rate mode. Messages are
// numbered over the whole run, n = 0, 1, 2, ..., and message n is due
// n/rate seconds after the start; connection i of conns sends messages
// i, i+conns, i+2·conns, ...: its k-th message is due at
// (i + k·conns)/rate, its first at i/rate, then one every conns/rate
// seconds. Together the connections send rate messages per second, evenly
// spread, with no two due at the same instant.
type schedule struct {
	i, conns int
	rate     float64
}

// due is when message k of the connection is due, from the start.
func (s schedule) due(k int64) time.Duration {
	return time.Duration((float64(s.i) + float64(k)*float64(s.conns)) / s.rate * float64(time.Second))
}

// wait is how long a sender at elapsed must sleep before message k: zero
// when it is due or late. A sender that fell behind sends at once and
// never skips a message, so latency measured from the due time shows the
// delay the path caused (coordinated omission, as wrk2 corrects it).
func (s schedule) wait(k int64, elapsed time.Duration) time.Duration {
	return max(0, s.due(k)-elapsed)
}

// latencyStart is where a message's latency is measured from: its due
// time, or when the sender's timer actually woke for it or an earlier
// message, if later. Go timers fire up to about a millisecond late; that
// lateness is the generator's, not the path's, and must not count.
// Waiting for a free slot or for a blocked write happens after the wake,
// so the path's backpressure still counts in full.
func latencyStart(due, woke time.Time) time.Time {
	if woke.After(due) {
		return woke
	}
	return due
}
