package engine

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/splice"
)

// goDrain is a goroutine-path tunnel's share of a graceful shutdown (the
// splice path has splice.Pool.Drain): its two sockets, so a drain can wake
// its blocked reads, the deadline, and each direction's frame boundaries
// (cur[0] toward the upstream, cur[1] toward the client; each written only
// by its own pipe goroutine).
type goDrain struct {
	client, up net.Conn
	at         atomic.Int64 // drain deadline, unix ns; 0: not draining
	cur        [2]splice.FrameCursor
}

var (
	errDrained     = errors.New("closed for shutdown with a close frame")
	errDrainForced = errors.New("closed for shutdown without a close frame")
)

func drained(err error) bool { return errors.Is(err, errDrained) || errors.Is(err, errDrainForced) }

// start begins the drain of one tunnel: both pipes wake from their reads
// and close at their next frame boundary.
func (d *goDrain) start(deadline int64) {
	if deadline == 0 {
		deadline = time.Now().UnixNano()
	}
	d.at.Store(deadline)
	now := time.Now()
	_ = d.client.SetReadDeadline(now)
	_ = d.up.SetReadDeadline(now)
}

// drain starts the drain of every goroutine-path tunnel, waits until they
// ended or the deadline passed (plus a second), and returns how many were
// closed without their close frames (those still open count too).
func (g *goFront) drain(deadline time.Time) int {
	g.drainDeadline.Store(deadline.UnixNano())
	for _, t := range g.e.live.snapshot() {
		if gd := t.gdrain.Load(); gd != nil {
			gd.start(deadline.UnixNano())
		}
	}
	for {
		left := 0
		for _, t := range g.e.live.snapshot() {
			if t.gdrain.Load() != nil {
				left++
			}
		}
		if left == 0 || time.Now().After(deadline.Add(time.Second)) {
			return int(g.drainForced.Load()) + left
		}
		time.Sleep(5 * time.Millisecond)
	}
}
