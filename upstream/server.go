package upstream

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// ServerConfig is one configured server line, nginx's
// "server ADDRESS [weight=N] [max_conns=N] [max_fails=N] [fail_timeout=T]
// [backup] [down];". Zero values take nginx's defaults (see New), except
// MaxFails, whose zero is nginx's max_fails=0: pass DefaultMaxFails for the
// default.
type ServerConfig struct {
	// Address is "host:port"; host is an IP literal or a name that is
	// resolved at New and again every Config.ResolveEvery.
	Address string
	// Weight is the server's share relative to the others. Default 1.
	Weight int
	// MaxConns caps the tunnels (live plus being set up) this server gets.
	// 0, the default, is no cap.
	MaxConns int
	// MaxFails is how many failed attempts within FailTimeout make the
	// server unavailable for FailTimeout (nginx's default is 1,
	// DefaultMaxFails). 0 disables passive health.
	MaxFails int
	// FailTimeout is both the window in which MaxFails are counted and
	// how long the server then stays unavailable. Default 10s.
	FailTimeout time.Duration
	// Backup servers get tunnels only when no primary server is available.
	Backup bool
	// Down servers never get tunnels (a server taken out by hand).
	Down bool
}

// Defaults of ServerConfig, as nginx's.
const (
	DefaultWeight      = 1
	DefaultMaxFails    = 1
	DefaultFailTimeout = 10 * time.Second
)

// State is what a server looks like to the balancer right now.
type State uint8

const (
	// StateUp: the server gets new tunnels.
	StateUp State = iota
	// StateDown: marked down in the configuration.
	StateDown
	// StateUnhealthy: active health checks failed Fall times in a row and
	// have not yet passed Rise times.
	StateUnhealthy
	// StateFailed: passive health, MaxFails failures within FailTimeout;
	// the server is skipped until FailTimeout has passed.
	StateFailed
	// StateFull: MaxConns tunnels are live or being set up.
	StateFull
)

var stateNames = [...]string{"up", "down", "unhealthy", "failed", "full"}

// String returns "up", "down", "unhealthy", "failed" or "full", for logs
// and metrics labels.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Server is one upstream address and its counters. Every field that
// changes is an atomic, so event loops read and update it without a lock;
// everything else is fixed when the server is made.
//
// A server returned by Group.Next holds one of its MaxConns slots until
// exactly one of Failed, Answered or Abandoned is called, or Opened and
// later Closed: callers must end every attempt, or max_conns leaks.
type Server struct {
	// Name is the address as configured ("backend:9000" or
	// "127.0.0.1:9000"). Every address a name resolves to has its own
	// Server, with the same Name.
	Name string
	// Addr is the address the proxy dials. It never changes: when a name
	// resolves to other addresses, the group gets new Servers.
	Addr netip.AddrPort

	weight      int64
	maxConns    int64
	maxFails    int32
	failTimeout int64 // nanoseconds
	backup      bool
	down        bool
	id          string // the consistent-hash ring identity (see newRing)

	conns      atomic.Int64 // tunnels live or being set up (max_conns, least_conn)
	live       atomic.Int64 // verified tunnels open
	handshakes atomic.Int64 // verified tunnels ever
	failures   atomic.Int64 // failed attempts ever

	// Passive health, nginx's peer->fails, ->accessed and ->checked
	// (ngx_http_upstream_round_robin.c), on the monotonic clock of mono().
	fails    atomic.Int32
	accessed atomic.Int64
	checked  atomic.Int64

	unhealthy atomic.Bool // set by active health checks
	// Consecutive check results; only the group's checker touches them,
	// one round after another.
	checkOK, checkFail int
}

func newServer(name string, addr netip.AddrPort, c ServerConfig) *Server {
	return &Server{
		Name:        name,
		Addr:        addr,
		weight:      int64(c.Weight),
		maxConns:    int64(c.MaxConns),
		maxFails:    int32(c.MaxFails),
		failTimeout: int64(c.FailTimeout),
		backup:      c.Backup,
		down:        c.Down,
	}
}

// Weight is the configured weight.
func (s *Server) Weight() int { return int(s.weight) }

// MaxConns is the configured cap on tunnels; 0 means none.
func (s *Server) MaxConns() int { return int(s.maxConns) }

// Backup reports whether the server only serves when no primary can.
func (s *Server) Backup() bool { return s.backup }

// Live is the number of verified tunnels open to this server.
func (s *Server) Live() int64 { return s.live.Load() }

// Conns is the number of tunnels open or being set up: what max_conns
// and least_conn count.
func (s *Server) Conns() int64 { return s.conns.Load() }

// Handshakes is the number of verified tunnels this server ever accepted.
func (s *Server) Handshakes() int64 { return s.handshakes.Load() }

// Failures is the number of failed attempts (connect errors and timeouts,
// invalid upgrade answers) ever.
func (s *Server) Failures() int64 { return s.failures.Load() }

// Healthy reports what active health checks last concluded (true when
// the group has none).
func (s *Server) Healthy() bool { return !s.unhealthy.Load() }

// State reports the first reason, in the order of the State constants,
// that keeps the server from new tunnels, or StateUp.
func (s *Server) State() State {
	switch {
	case s.down:
		return StateDown
	case s.unhealthy.Load():
		return StateUnhealthy
	case s.passiveFailed(mono()):
		return StateFailed
	case s.maxConns > 0 && s.conns.Load() >= s.maxConns:
		return StateFull
	}
	return StateUp
}

// passiveFailed is nginx's test "max_fails && fails >= max_fails &&
// now - checked <= fail_timeout".
func (s *Server) passiveFailed(now int64) bool {
	return s.maxFails > 0 && s.fails.Load() >= s.maxFails && now-s.checked.Load() <= s.failTimeout
}

// acquire takes one of the server's max_conns slots; false when it is full.
// Without a cap it is one atomic add. With one, a compare-and-swap loop
// makes the cap exact even when many loops pick the server at once.
func (s *Server) acquire() bool {
	if s.maxConns <= 0 {
		s.conns.Add(1)
		return true
	}
	for {
		c := s.conns.Load()
		if c >= s.maxConns {
			return false
		}
		if s.conns.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// trial runs nginx's bookkeeping for a server that was just picked: once
// fail_timeout has passed since the window began, the window restarts
// ("if (now - best->checked > best->fail_timeout) best->checked = now").
// For a server that reached max_fails this is the single trial nginx
// allows after fail_timeout: only the caller whose compare-and-swap moves
// the window gets it, every other concurrent pick sees the server failed
// again. It returns false when the trial went to someone else.
func (s *Server) trial(now int64) bool {
	if s.maxFails <= 0 || s.fails.Load() == 0 {
		return true
	}
	c := s.checked.Load()
	if now-c <= s.failTimeout {
		return s.fails.Load() < s.maxFails
	}
	return s.checked.CompareAndSwap(c, now) || s.fails.Load() < s.maxFails
}

// Opened records a verified tunnel to s: it counts as a success for
// passive health and keeps the slot Next took until Closed.
func (s *Server) Opened() {
	s.live.Add(1)
	s.handshakes.Add(1)
	s.succeeded()
}

// Closed records the end of a tunnel that Opened counted, and frees its
// slot.
func (s *Server) Closed() {
	s.live.Add(-1)
	s.conns.Add(-1)
}

// Failed records a failed attempt (connect error or timeout, invalid
// upgrade answer) and frees its slot. After MaxFails of them within
// FailTimeout the server is skipped for FailTimeout.
func (s *Server) Failed() {
	s.failures.Add(1)
	s.conns.Add(-1)
	if s.maxFails <= 0 {
		return
	}
	now := mono()
	s.fails.Add(1)
	s.accessed.Store(now)
	s.checked.Store(now)
}

// Answered records a valid HTTP answer that was not a 101 (a 403, a 503
// the application chose to send): not a failure, as nginx does not count
// answers unless told to (proxy_next_upstream http_503 ...). It frees the
// slot.
func (s *Server) Answered() {
	s.conns.Add(-1)
	s.succeeded()
}

// Abandoned frees the slot of an attempt that ended without a verdict on
// the server: the client went away, or the proxy is shutting down.
func (s *Server) Abandoned() { s.conns.Add(-1) }

// succeeded is nginx's "mark peer live if check passed": a success after
// the window was (re)opened clears the failure count.
func (s *Server) succeeded() {
	if s.maxFails > 0 && s.fails.Load() > 0 && s.accessed.Load() < s.checked.Load() {
		s.fails.Store(0)
	}
}

// epoch anchors mono: time.Since on it reads the monotonic clock, so wall
// clock jumps never open or close a fail_timeout window.
var epoch = time.Now()

// mono is nanoseconds since the process started, on the monotonic clock.
// It starts above zero so that a zero timestamp means "never".
func mono() int64 { return int64(time.Since(epoch)) + 1 }
