// Package engine wires sluice together: gnet listeners and their
// per-connection state machine (head → route → hand-off), the splice relay
// pool that dials, verifies the upstream's 101 and relays the tunnel, and
// the logs. It is the only package of the proxy itself that imports gnet (the
// benchmark echo backend in package bench runs on gnet too).
//
// The path of one connection:
//
//	accept (gnet) → head parsed in place → server/location chosen →
//	fd duplicated and handed to splice → non-blocking connect →
//	upgrade request written → 101 verified → relayed tunnel → access log
//
// gnet owns a connection only until its head is judged; the reasons are in
// ARCHITECTURE.md ("Why tunnels leave gnet").
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/splice"
)

// Engine is a running (or ready to run) proxy for one config.
type Engine struct {
	cfg *configs.Config
	// cur is the routing of the config in force; a reload swaps it, and
	// each connection keeps the listener (and so the servers, locations
	// and rules) it arrived under.
	cur        atomic.Pointer[router]
	generation atomic.Int64 // reloads that took effect
	reloadState
	pool   *splice.Pool
	log    *zap.Logger
	access accessLog
	stats  stats
	guards *guards // admission rules and refusal counters (guard.go)
	// metrics are the counters the admin listener reports (metrics.go).
	metrics *engineMetrics
	admin   *admin      // nil without [admin] listen
	live    liveTunnels // verified tunnels alive, for /tunnels
	// draining is set by Shutdown: new connections are closed at once.
	draining atomic.Bool
	// goFront serves TLS listeners and TLS upstreams (tls.go).
	goFront *goFront

	gnets   gnetListeners // plaintext listeners, one gnet engine each (listeners.go)
	done    chan error
	stopped sync.Once
}

type stats struct {
	conns   atomic.Int64 // connections gnet holds (head not yet judged)
	tunnels atomic.Int64 // verified tunnels alive
	refused atomic.Int64 // handshakes answered with an error by the front
}

// New checks that cfg can be served (upstream names resolve, listen
// addresses parse) without binding anything.
func New(cfg *configs.Config, logs Logs) (*Engine, error) {
	if logs.Error == nil {
		logs.Error = zap.NewNop()
	}
	if logs.Access == nil {
		logs.Access = zap.NewNop()
	}
	r, err := buildRouter(cfg, logs.Error)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: logs.Error, access: accessLog{logs.Access}, metrics: newEngineMetrics()}
	e.guards = &guards{maxConns: maxConnections(cfg.MaxConnections)}
	e.goFront = newGoFront(e)
	if err := e.prepare(r, cfg); err != nil {
		r.closeFiles()
		return nil, err
	}
	e.cur.Store(r)
	return e, nil
}

// workers is the number of gnet event loops and of splice relay loops.
func (e *Engine) workers() int {
	if e.cfg.Workers > 0 {
		return e.cfg.Workers
	}
	return runtime.NumCPU()
}

// Start binds every listener and starts the loops. It returns once the
// listeners accept connections, or with the reason they could not.
func (e *Engine) Start() error {
	pool, err := splice.NewPool(splice.Config{Loops: e.workers()})
	if err != nil {
		return fmt.Errorf("relay pool: %w", err)
	}
	e.pool = pool
	addrs := make([]string, 0, len(e.rt().listeners))
	fail := func(err error) error {
		e.closeGnetListeners()
		e.goFront.closeListeners()
		e.admin.stop(context.Background())
		e.pool.Close()
		e.rt().closeFiles()
		return err
	}
	for _, ln := range e.rt().listeners {
		if !e.goFront.serves(ln) {
			if err := e.bindGnet(ln.addr); err != nil {
				return fail(err)
			}
			addrs = append(addrs, "tcp://"+ln.addr)
		}
	}
	if err := e.startAdmin(); err != nil {
		return fail(err)
	}
	if err := e.goFront.bind(); err != nil {
		return fail(err)
	}
	e.done = make(chan error, 1)
	if err := e.startGnet(); err != nil {
		return fail(err)
	}
	e.rt().start()
	e.serveGnet()
	e.goFront.serve()
	e.log.Info("listening", zap.Strings("addrs", append(addrs, e.goFront.addrs()...)), zap.Int("workers", e.workers()))
	return nil
}

// Stop stops accepting, closes connections still in their head, ends every
// tunnel and waits for the loops to exit (or ctx to end).
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopped.Do(func() {
		e.admin.stop(ctx)
		err = e.stopGnet(ctx)
		e.goFront.stop()
		if e.pool != nil {
			e.pool.Close()
		}
		e.rt().stop()
		for _, ln := range e.rt().listeners {
			ln.http.closeIdle()
		}
	})
	return err
}

// Done delivers the event loops' exit error if they stop for a reason
// other than Stop.
func (e *Engine) Done() <-chan error { return e.done }

// Tunnels is the number of verified tunnels alive.
func (e *Engine) Tunnels() int64 { return e.stats.tunnels.Load() }

// Pending is the number of connections that gnet or splice still hold:
// heads being read, upstreams being dialed, tunnels.
func (e *Engine) Pending() int64 {
	n := e.stats.conns.Load()
	if e.pool != nil {
		n += int64(e.pool.Live())
	}
	return n + e.goFront.live.Load() + e.gnets.enrolling.Load()
}

// Refused is the number of handshakes the front answered with an error.
func (e *Engine) Refused() int64 { return e.stats.refused.Load() }

// stopTimeout bounds how long Stop may take after a drain.
const stopTimeout = 5 * time.Second

// headGrace is how long a shutdown waits for request heads still arriving
// (a client that opened a connection and sends nothing is not worth the
// whole drain time; nginx closes those at once).
const headGrace = 2 * time.Second

// ErrDrainIncomplete is Run's error when the graceful shutdown had to close
// tunnels without their close frames (drain_timeout ran out while a frame
// was in flight).
var ErrDrainIncomplete = errors.New("drain incomplete: some tunnels were closed without a close frame")

// Run starts the engine and blocks until ctx ends, then shuts it down
// gracefully (Shutdown, within drain_timeout); the error wraps
// ErrDrainIncomplete when the drain was not clean.
//
// Accepting is sluice's own (listeners.go): past max_connections (an fd
// budget below RLIMIT_NOFILE, guard.go) the accept loops stop calling
// accept(), and an accept error such as EMFILE is logged and retried after
// a back-off, so neither ends the process. TestMaxConnectionsUnderLowFDLimit
// runs a child sluice under ulimit -n 200 against 400 connections.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-e.done:
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_ = e.stopGnet(ctx) // the listeners
		cancel()
		e.admin.stop(context.Background())
		e.goFront.stop()
		e.pool.Close()
		e.rt().stop()
		if err == nil {
			// gnet reports some fatal stops (an acceptor error) only in its
			// own log and returns nil.
			err = errors.New("gnet engine shut down on its own (see the error log)")
		}
		return fmt.Errorf("event loops stopped: %w", err)
	}
	clean, err := e.Shutdown(e.cfg.DrainTimeout.D())
	if err == nil && !clean {
		err = ErrDrainIncomplete
	}
	return err
}

// Shutdown stops the engine gracefully: new connections are closed at
// once (TLS listeners stop accepting), heads being read and handshakes in
// progress may finish, and each spliced tunnel is closed with a WebSocket
// close frame 1001 (Going Away) to both sides as soon as both directions
// stand between two frames (splice.Pool.Drain; goroutine-path tunnels
// the same way, drain.go). What is left at drain is closed, with a close
// frame on a side that is between frames. Then it stops like Stop. clean
// reports whether every tunnel got its close frames on both sides.
func (e *Engine) Shutdown(drain time.Duration) (clean bool, err error) {
	deadline := time.Now().Add(drain)
	e.draining.Store(true)
	if e.admin != nil {
		e.admin.stopping.Store(true) // /healthz says 503; metrics still served
	}
	e.goFront.closeListeners()
	e.closeGnetListeners()
	e.closeParkedConns()
	forced := 0
	if e.pool != nil {
		// Tunnels are drained while heads still arrive: a head that
		// completes hands a tunnel over that is drained at once.
		done := make(chan struct{})
		go func() { e.pool.Drain(deadline); close(done) }()
		headsBy := time.Now().Add(headGrace)
		if deadline.Before(headsBy) {
			headsBy = deadline
		}
		for e.stats.conns.Load() > 0 && time.Now().Before(headsBy) {
			time.Sleep(5 * time.Millisecond)
		}
		<-done
		for e.pool.Live() > 0 && time.Now().Before(deadline.Add(time.Second)) {
			time.Sleep(5 * time.Millisecond)
		}
		forced = e.pool.Forced()
	}
	forced += e.goFront.drain(deadline)
	if forced > 0 {
		e.log.Warn("drain closed tunnels without a close frame", zap.Int("tunnels", forced), zap.Duration("drain_timeout", drain))
	} else {
		e.log.Info("drained: every tunnel got its close frames")
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return forced == 0, e.Stop(ctx)
}

// closeParkedConns closes the kept-alive connections parked between requests
// (goFront.park), as nginx closes idle kept-alive connections when it
// shuts down: nothing is in flight on them. One that had just begun a
// request is off the list (OnTraffic) and finishes it.
func (e *Engine) closeParkedConns() {
	for _, r := range append(e.retiredRouters(), e.rt()) {
		for _, ln := range r.listeners {
			if ln.certs == nil {
				ln.parked.expire(math.MaxInt64, closeParked)
			}
		}
	}
}

// probeFree binds and releases each address, so that a reload learns that
// an address it adds is taken before it changes anything. (Go's listener
// sets SO_REUSEADDR, so a port whose old connections sit in TIME_WAIT
// still passes.)
func probeFree(addrs []string) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", strings.TrimPrefix(a, "tcp://"))
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		_ = ln.Close()
	}
	return nil
}

// rt is the routing in force.
func (e *Engine) rt() *router { return e.cur.Load() }

// prepare finishes a freshly built router for this engine: admission
// rules, TLS material, and a plain-HTTP server per listener.
func (e *Engine) prepare(r *router, cfg *configs.Config) error {
	if err := buildRules(r); err != nil {
		return err
	}
	if err := buildTLS(r, cfg); err != nil {
		return err
	}
	for _, ln := range r.listeners {
		ln.http = newPlainServer(e, ln, ln.certs != nil)
	}
	return nil
}
