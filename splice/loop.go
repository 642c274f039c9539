package splice

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	readBufSize     = 64 << 10 // the loop's shared read buffer; also the largest read
	maxEvents       = 256      // events per epoll_wait
	maxReadsPerWake = 8        // reads per direction per service before the tunnel is parked
	maxWaitMs       = 1000     // longest epoll_wait while timers are pending
	maxSpareBufs    = 1024     // pooled pending buffers kept per loop
	never           = math.MaxInt64
	wakeSlot        = -1 // epoll data of the loop's eventfd
	epollIn         = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
)

type submission struct {
	job   *Job
	start time.Time
}

// loop is one relay loop: one goroutine locked to its OS thread, one epoll
// fd, one eventfd to be woken for new jobs. Only mu-guarded fields are
// touched by other goroutines; everything else belongs to the loop
// goroutine, so the relay path takes no lock.
type loop struct {
	pool *Pool
	epfd int
	evfd int

	mu      sync.Mutex
	inbox   []submission
	calls   []func() // test hook: run on the loop between batches
	closing bool
	woken   bool // an eventfd write is pending since the last inbox swap

	// Loop goroutine only from here on.
	spareInbox []submission
	spareCalls []func()
	base       time.Time
	baseUnix   int64 // base in unix nanoseconds, for Live.LastActive
	now        int64 // nanoseconds since base, refreshed once per epoll_wait batch
	drainAt    int64 // loop time Drain must be done by; 0: not draining
	draining   int   // tunnels with a drain deadline of their own (DrainWhere)
	events     []unix.EpollEvent
	buf        []byte // shared read buffer

	slots []*tunnel // by slot index (epoll data)
	gens  []uint32  // per slot generation counter; never 0
	free  []int32   // free slot indexes

	ready, spareReady []*tunnel // tunnels parked with work left (budget exhausted)
	redial            []*tunnel // tunnels whose connect attempt failed; dialled between batches
	heap              []*tunnel // min-heap on tunnel.hkey
	spare             [][]byte  // free pending buffers

	// Statistics, loop goroutine only; tests read them through call.
	pendBytes int64 // bytes read but not yet written, all tunnels
	bufsOut   int   // pooled pending buffers in use
	stale     int64 // events ignored because their generation was stale
	parks     int64 // tunnels parked with their read budget spent
	wakeups   atomic.Int64
	jobs      atomic.Int64 // jobs and tunnels this loop owns (LoopJobs)
}

func newLoop(p *Pool) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// Level-triggered: the loop reads the eventfd each time it fires.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	base := time.Now()
	return &loop{
		pool:     p,
		epfd:     epfd,
		evfd:     evfd,
		base:     base,
		baseUnix: base.UnixNano(),
		events:   make([]unix.EpollEvent, maxEvents),
		buf:      make([]byte, readBufSize),
	}, nil
}

func (l *loop) closeFDs() {
	l.mu.Lock()
	unix.Close(l.evfd)
	l.evfd = -1
	l.mu.Unlock()
	unix.Close(l.epfd)
}

func (l *loop) submit(j *Job, start time.Time) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.inbox = append(l.inbox, submission{j, start})
	if !l.woken {
		l.woken = true
		l.wakeLocked()
	}
	l.pool.live.Add(1)
	l.jobs.Add(1)
	l.mu.Unlock()
	return nil
}

// call runs fn on the loop goroutine between two batches and waits for it.
// For tests: it is how they read loop-owned statistics without a race.
func (l *loop) call(fn func()) {
	done := make(chan struct{})
	l.mu.Lock()
	l.calls = append(l.calls, func() { fn(); close(done) })
	l.wakeLocked()
	l.mu.Unlock()
	<-done
}

// wakeLocked makes the loop's epoll_wait return. l.mu must be held: the loop
// closes the eventfd under l.mu when it exits, so a wake-up racing with the
// exit can never write into a closed fd, or into a reused fd number.
func (l *loop) wakeLocked() {
	if l.evfd < 0 {
		return
	}
	var one = [8]byte{1}
	unix.Write(l.evfd, one[:])
}

func (l *loop) run() {
	runtime.LockOSThread() // never unlocked: the thread ends with the loop
	defer l.pool.wg.Done()
	for {
		if l.adopt() {
			return
		}
		n, err := unix.EpollWait(l.epfd, l.events, l.waitMs())
		l.wakeups.Add(1)
		l.now = int64(time.Since(l.base))
		if err != nil && err != unix.EINTR {
			// Only EBADF/EFAULT/EINVAL are possible: a bug, not a condition.
			panic(fmt.Sprintf("splice: epoll_wait: %v", err))
		}
		ready := l.ready
		l.ready = l.spareReady[:0]
		for i := 0; i < n; i++ {
			l.dispatch(&l.events[i])
		}
		for _, t := range ready {
			t.queued = false
			if !t.dead {
				l.service(t)
			}
		}
		clear(ready)
		l.spareReady = ready[:0]
		l.expire()
		l.drainStep()
	}
}

// adopt runs between epoll_wait batches. It is the only place where new fds
// are registered (new jobs, new connect attempts), so an event still queued
// for a fd number closed during the last batch can never reach a tunnel that
// reuses the number; slot generations catch the rest. It returns true when
// the loop has shut down.
func (l *loop) adopt() bool {
	l.mu.Lock()
	l.woken = false
	jobs, calls, closing := l.inbox, l.calls, l.closing
	l.inbox, l.calls = l.spareInbox[:0], l.spareCalls[:0]
	l.mu.Unlock()

	for _, fn := range calls {
		fn()
	}
	clear(calls)
	l.spareCalls = calls[:0]

	if closing {
		l.shutdown(jobs)
		return true
	}
	if len(l.redial) > 0 {
		rd := l.redial
		l.redial = nil
		for _, t := range rd {
			if !t.dead {
				l.dial(t)
			}
		}
	}
	for _, s := range jobs {
		l.start(s)
	}
	clear(jobs)
	l.spareInbox = jobs[:0]
	return false
}

func (l *loop) shutdown(jobs []submission) {
	for _, s := range jobs {
		unix.Close(s.job.ClientFD)
		r := Report{Start: s.start, End: time.Now(), Reason: Shutdown}
		l.pool.live.Add(-1)
		l.jobs.Add(-1)
		s.job.Handler.Done(&r)
	}
	for _, t := range l.slots {
		if t != nil {
			l.finish(t, Shutdown, nil)
		}
	}
	l.closeFDs()
}

func (l *loop) waitMs() int {
	if len(l.ready) > 0 || len(l.redial) > 0 {
		return 0
	}
	ms := -1
	if len(l.heap) > 0 {
		d := l.heap[0].hkey - l.now
		if d <= 0 {
			return 0
		}
		// Round up: waking before the deadline would only spin.
		ms = int(min((d+int64(time.Millisecond)-1)/int64(time.Millisecond), maxWaitMs))
	}
	wake := func(w int) {
		if ms < 0 || w < ms {
			ms = w
		}
	}
	if l.drainAt != 0 {
		// Draining: wake by the deadline even without events.
		wake(int(min(max((l.drainAt-l.now)/int64(time.Millisecond)+1, 0), maxWaitMs)))
	}
	if l.draining > 0 {
		wake(drainPollMs) // tunnels with deadlines of their own: look again soon
	}
	return ms
}

func (l *loop) nextGen(slot int32) uint32 {
	g := (l.gens[slot] + 1) & 0x7fffffff // gen<<1|side must fit in 32 bits
	if g == 0 {
		g = 1
	}
	l.gens[slot] = g
	return g
}

// register adds fd edge-triggered with EPOLLIN|EPOLLOUT|EPOLLRDHUP, once for
// the fd's life: readiness is then tracked in side flags and no epoll_ctl is
// needed per chunk. The event data carries the slot index and the
// generation<<1|side, so an event left over from an earlier owner of the slot
// (or an earlier connect attempt) is recognised and ignored.
func (l *loop) register(fd int, slot int32, gen uint32, side int) error {
	ev := unix.EpollEvent{Events: epollIn, Fd: slot, Pad: int32(gen<<1 | uint32(side))}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

func (l *loop) dispatch(ev *unix.EpollEvent) {
	if ev.Fd == wakeSlot {
		var b [8]byte
		unix.Read(l.evfd, b[:])
		return
	}
	t := l.slots[ev.Fd]
	side := int(ev.Pad & 1)
	if t == nil || t.gen[side] != uint32(ev.Pad)>>1 {
		l.stale++
		return
	}
	e := ev.Events
	s := &t.s[side]
	switch t.state {
	case stTunnel:
		// Like nginx: an error or hang-up makes both syscalls worth trying;
		// they report it (after any data that arrived before it).
		if e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.readable = true
		}
		// A FIN that arrives with data gives one edge: keep reading until 0.
		if e&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.rdhup = true
		}
		if e&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.writable = true
		}
		l.serviceTunnel(t)
		// An error on a side neither direction touched (e.g. a reset after
		// its EOF, nothing to write) would otherwise go unnoticed.
		if e&unix.EPOLLERR != 0 && !t.dead {
			if err := sockErr(s.fd); err != 0 {
				l.fault(t, side, err)
			}
		}
	case stConnecting:
		if side == 0 {
			l.clientEvent(t, e)
		} else if e&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.connectDone(t, e)
		}
	case stHandshake:
		if side == 0 {
			l.clientEvent(t, e)
			return
		}
		if e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.readable = true
		}
		if e&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.rdhup = true
		}
		if e&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.writable = true
		}
		l.handshake(t)
	case stRefuse, stFailing:
		if side == 0 {
			if e&unix.EPOLLERR != 0 {
				l.finish(t, ClientError, fmt.Errorf("client: %w", sockErr(s.fd)))
				return
			}
			if e&unix.EPOLLHUP != 0 {
				l.finish(t, ClientClosed, fmt.Errorf("client: %w", unix.EPIPE))
				return
			}
			if e&unix.EPOLLOUT != 0 {
				s.writable = true
			}
		} else {
			if e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				s.readable = true
			}
			if e&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				s.rdhup = true
			}
		}
		l.service(t)
	case stRedial:
		if side == 0 {
			l.clientEvent(t, e)
		}
	}
}

// clientEvent handles an event on a client that is not read yet (connect or
// handshake in progress): its bytes stay in the kernel, which is how they
// are held. An error or hang-up aborts the job without an answer.
func (l *loop) clientEvent(t *tunnel, e uint32) {
	s := &t.s[0]
	switch {
	case e&unix.EPOLLERR != 0:
		l.finish(t, ClientError, fmt.Errorf("client before verdict: %w", sockErr(s.fd)))
	case e&unix.EPOLLHUP != 0, e&unix.EPOLLRDHUP != 0 && peekClosed(s.fd, l.buf):
		l.finish(t, ClientClosed, nil)
	default:
		if e&unix.EPOLLIN != 0 {
			s.readable = true
		}
		if e&unix.EPOLLRDHUP != 0 {
			s.readable, s.rdhup = true, true
		}
		if e&unix.EPOLLOUT != 0 {
			s.writable = true
		}
	}
}

// service continues a parked tunnel or one whose client became writable.
func (l *loop) service(t *tunnel) {
	switch t.state {
	case stTunnel:
		l.serviceTunnel(t)
	case stRefuse:
		l.serviceRefuse(t)
	case stFailing:
		l.serviceFailing(t)
	}
}

func (l *loop) park(t *tunnel) {
	if !t.queued {
		l.parks++
		t.queued = true
		l.ready = append(l.ready, t)
	}
}

// Timers. Each tunnel sits at most once in the heap, keyed by a time no
// later than its real earliest deadline. Activity only stores a timestamp
// (lastUp, flow.since); nothing touches the heap per chunk. When the key
// comes due, the real deadline is recomputed: act, re-key or drop.

func (l *loop) arm(t *tunnel, d int64) {
	if d == never {
		return
	}
	if t.hidx < 0 {
		t.hkey = d
		t.hidx = len(l.heap)
		l.heap = append(l.heap, t)
		l.heapUp(t.hidx)
	} else if d < t.hkey {
		t.hkey = d
		l.heapUp(t.hidx)
	}
}

func (l *loop) expire() {
	for len(l.heap) > 0 {
		t := l.heap[0]
		if t.hkey > l.now {
			return
		}
		d := t.due()
		if d > l.now {
			if d == never {
				l.heapRemove(t)
			} else {
				t.hkey = d
				l.heapDown(0)
			}
			continue
		}
		l.heapRemove(t)
		l.timeout(t)
	}
}

func (l *loop) heapRemove(t *tunnel) {
	i := t.hidx
	last := len(l.heap) - 1
	if i != last {
		l.heapSwap(i, last)
	}
	l.heap[last] = nil
	l.heap = l.heap[:last]
	t.hidx = -1
	if i != last {
		l.heapDown(i)
		l.heapUp(i)
	}
}

func (l *loop) heapSwap(i, j int) {
	h := l.heap
	h[i], h[j] = h[j], h[i]
	h[i].hidx = i
	h[j].hidx = j
}

func (l *loop) heapUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if l.heap[p].hkey <= l.heap[i].hkey {
			return
		}
		l.heapSwap(i, p)
		i = p
	}
}

func (l *loop) heapDown(i int) {
	n := len(l.heap)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && l.heap[c+1].hkey < l.heap[c].hkey {
			c++
		}
		if l.heap[i].hkey <= l.heap[c].hkey {
			return
		}
		l.heapSwap(i, c)
		i = c
	}
}
