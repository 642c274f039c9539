package splice

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a set of relay loops. Jobs are spread over the loops round robin;
// a job's two fds live on one loop until the job ends.
type Pool struct {
	loops []*loop
	next  atomic.Uint32
	live  atomic.Int64
	// forced counts tunnels Drain closed without a close frame on both sides.
	forced atomic.Int64
	wg     sync.WaitGroup
	once   sync.Once
}

// NewPool starts cfg.Loops relay loops.
func NewPool(cfg Config) (*Pool, error) {
	n := cfg.Loops
	if n <= 0 {
		n = runtime.NumCPU()
	}
	p := &Pool{loops: make([]*loop, 0, n)}
	for i := 0; i < n; i++ {
		l, err := newLoop(p)
		if err != nil {
			for _, l := range p.loops {
				l.closeFDs()
			}
			return nil, fmt.Errorf("splice: loop %d: %w", i, err)
		}
		p.loops = append(p.loops, l)
	}
	for _, l := range p.loops {
		p.wg.Add(1)
		go l.run()
	}
	return p, nil
}

// Submit hands j to one loop. It is safe for concurrent use. On success the
// pool owns j.ClientFD and will call j.Handler.Done exactly once. On error
// (the pool is closed, or j has no Handler) the caller still owns ClientFD.
func (p *Pool) Submit(j *Job) error {
	if j == nil || j.Handler == nil {
		return ErrNoHandler
	}
	l := p.loops[p.next.Add(1)%uint32(len(p.loops))]
	return l.submit(j, time.Now())
}

// Close ends every job and tunnel (Reason Shutdown, Done called for each),
// stops the loops and closes their epoll fds. It is idempotent and returns
// when every loop has exited.
func (p *Pool) Close() {
	p.once.Do(func() {
		for _, l := range p.loops {
			l.mu.Lock()
			l.closing = true
			l.wakeLocked()
			l.mu.Unlock()
		}
	})
	p.wg.Wait()
}

// Live returns the number of jobs and tunnels currently owned by the pool.
func (p *Pool) Live() int { return int(p.live.Load()) }

// LoopJobs returns, per relay loop, the jobs and tunnels it owns: how the
// load is spread over the loops.
func (p *Pool) LoopJobs() []int64 {
	out := make([]int64, len(p.loops))
	for i, l := range p.loops {
		out[i] = l.jobs.Load()
	}
	return out
}
