package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"
)

// Plaintext listeners. sluice accepts on its own sockets and gives each new
// connection to gnet's event loops with Engine.Register; gnet binds no
// address clients use. Two things need that (both verified against gnet
// v2.10.0):
//
//   - Backpressure. gnet's acceptor cannot pause: it accepts whatever the
//     backlog holds. Past max_connections an accept loop of sluice's simply
//     stops calling accept(), so new connections wait in the kernel's
//     backlog until a tunnel ends, as nginx and HAProxy do, instead of being
//     accepted and closed.
//   - Failure. When gnet's accept() fails with anything but EAGAIN, EINTR,
//     ECONNRESET or ECONNABORTED (EMFILE, ENFILE, ENOBUFS), its acceptor
//     returns ErrAcceptSocket and the whole gnet engine shuts down. sluice's
//     loop logs and backs off instead.
//
// Register costs, per connection, a dup of the accepted fd, the close of
// the original and a wake of the chosen event loop (docs/BENCHMARKS.md,
// "Accepting on sluice's own sockets", has the count). One gnet engine
// serves every address, so a reload adds or removes an address by opening
// or closing a socket, with no engine to start or stop.

// gnetListener is one plaintext listening socket and its accept loop.
type gnetListener struct {
	addr    string
	ln      *net.TCPListener
	conns   atomic.Int64  // connections its address has in the event loops
	started atomic.Bool   // its accept loop was started
	closed  atomic.Bool   // its socket is closed: the accept loop ends
	done    chan struct{} // the accept loop has returned
}

// gnetListeners are the engine's plaintext listeners by address and the
// gnet engine they feed.
type gnetListeners struct {
	mu  sync.Mutex
	all map[string]*gnetListener

	eng   gnet.Engine
	up    bool          // eng runs
	ended chan struct{} // eng has stopped
	// stopping: Stop asked gnet to end; its end is then no failure.
	stopping atomic.Bool
	// enrolling counts connections accepted and not yet opened by a loop
	// (or failed), so that the capacity check sees them.
	enrolling atomic.Int64
	// results carries each Register's outcome to the reaper goroutine,
	// which settles enrolling. Its capacity bounds registrations in flight:
	// an accept loop waits to send when it is full.
	results chan (<-chan gnet.RegisteredResult)
}

// maxEnrolling bounds registrations in flight. Each one holds a goroutine
// of gnet's worker pool (and its stack) until the loop has opened the
// connection, and idle workers live on for 10 s: a burst of accepts with
// no bound would leave hundreds of them behind. A loop opens one in a few
// µs, so 64 in flight allow far more accepts per second than a core can
// serve handshakes.
const maxEnrolling = 64

// startGnet starts the event loops that serve every plaintext address.
// It returns once they run. If they stop on their own later, e.done hears.
func (e *Engine) startGnet() error {
	f := &front{e: e, booted: make(chan gnet.Engine, 1), ready: make(chan struct{})}
	g := &e.gnets
	g.ended = make(chan struct{})
	g.results = make(chan (<-chan gnet.RegisteredResult), maxEnrolling)
	// gnet's Engine methods refuse an engine without a listener, so it
	// gets one no client can reach: a unix socket in a private directory
	// that is removed as soon as the loops run (a bound socket works on
	// with its name gone). Not the working directory, which may be
	// read-only (systemd's ProtectSystem=strict) or kept by a SIGKILL;
	// not an abstract name either, which gnet's URL parsing cannot carry
	// (the "@" is read as userinfo) and any local process could reach.
	dir, err := os.MkdirTemp("", "sluice-loops-")
	if err != nil {
		return fmt.Errorf("event loops: private directory for gnet's listener: %w", err)
	}
	defer os.RemoveAll(dir)
	failed := make(chan error, 1)
	go func() {
		err := gnet.Run(f, "unix://"+filepath.Join(dir, "l"),
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(e.workers()),
			gnet.WithTicker(true),
			// Register picks a loop through the load balancer from other
			// goroutines; gnet's round robin is not safe for that.
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithLogger(e.log.Sugar()),
		)
		close(g.ended)
		select {
		case failed <- err: // still starting
		default:
		}
		if !g.stopping.Load() {
			if err == nil {
				// gnet reports some fatal stops only in its own log.
				err = errors.New("gnet engine shut down on its own (see the error log)")
			}
			select {
			case e.done <- fmt.Errorf("event loops: %w", err):
			default:
			}
		}
	}()
	select {
	case <-f.ready:
		g.eng = <-f.booted // sent before ready closed
	case err := <-failed:
		if err == nil {
			err = errors.New("event loops stopped at start")
		}
		return fmt.Errorf("event loops: %w", err)
	}
	g.up = true
	go e.reapRegistrations()
	return nil
}

// reapRegistrations settles enrolling as registrations finish: by then a
// loop has run OnOpen (which counted the connection) or gnet has closed it.
func (e *Engine) reapRegistrations() {
	for res := range e.gnets.results {
		if r := <-res; r.Err != nil {
			e.log.Debug("event loop refused a connection", zapErr(r.Err))
		}
		e.gnets.enrolling.Add(-1)
	}
}

// bindGnet opens the listening socket of a plaintext address. It binds
// without SO_REUSEPORT, so a second sluice on the same port fails with
// "address already in use" instead of silently sharing it.
func (e *Engine) bindGnet(addr string) error {
	// No TCP keepalive on accepted sockets (Go's default turns it on, three
	// setsockopt calls per connection): gnet's own acceptor, used before,
	// set none, and WebSocket peers have ping frames.
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	gl := &gnetListener{addr: addr, ln: l.(*net.TCPListener), done: make(chan struct{})}
	e.gnets.mu.Lock()
	if e.gnets.all == nil {
		e.gnets.all = map[string]*gnetListener{}
	}
	e.gnets.all[addr] = gl
	e.gnets.mu.Unlock()
	return nil
}

// serveGnet starts the accept loops of the bound addresses that have none.
func (e *Engine) serveGnet() {
	e.gnets.mu.Lock()
	defer e.gnets.mu.Unlock()
	for _, gl := range e.gnets.all {
		if !gl.serving() {
			gl.markServing()
			go e.acceptGnet(gl)
		}
	}
}

// startGnetListener binds addr and accepts on it (a reload added it).
func (e *Engine) startGnetListener(addr string) error {
	if err := e.bindGnet(addr); err != nil {
		return err
	}
	e.serveGnet()
	return nil
}

func (gl *gnetListener) serving() bool { return gl.started.Load() }
func (gl *gnetListener) markServing()  { gl.started.Store(true) }

// acceptGnet is one address's accept loop.
func (e *Engine) acceptGnet(gl *gnetListener) {
	defer close(gl.done)
	g := &e.gnets
	var backoff time.Duration
	for {
		// Backpressure: at the cap, new connections wait in the kernel's
		// backlog until one ends.
		e.waitForCapacity(gl.addr, e.overCapacity, gl.closed.Load)
		c, err := gl.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait for fds to come back.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			e.log.Warn("accept failed", zap.String("listen", gl.addr), zapErr(err))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if e.draining.Load() {
			_ = c.Close()
			continue
		}
		g.enrolling.Add(1)
		ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), gl), c)
		res, err := g.eng.Register(ctx)
		if err != nil { // the engine is stopping
			g.enrolling.Add(-1)
			_ = c.Close()
			continue
		}
		g.results <- res
	}
}

// stopGnetListener closes addr's listening socket and waits for its accept
// loop. Connections it accepted stay with the event loops: heads finish
// (or time out) and tunnels run on.
func (e *Engine) stopGnetListener(addr string) {
	e.gnets.mu.Lock()
	gl := e.gnets.all[addr]
	delete(e.gnets.all, addr)
	e.gnets.mu.Unlock()
	if gl != nil {
		gl.close()
	}
}

func (gl *gnetListener) close() {
	gl.closed.Store(true)
	_ = gl.ln.Close()
	if gl.serving() {
		<-gl.done
	}
}

// closeGnetListeners stops accepting on every plaintext address.
func (e *Engine) closeGnetListeners() {
	e.gnets.mu.Lock()
	all := e.gnets.all
	e.gnets.all = nil
	e.gnets.mu.Unlock()
	for _, gl := range all {
		gl.close()
	}
}

// stopGnet closes the plaintext listeners, then stops the event loops,
// which close the connections still in their head.
func (e *Engine) stopGnet(ctx context.Context) error {
	e.closeGnetListeners()
	g := &e.gnets
	if !g.up {
		return nil
	}
	g.up = false
	g.stopping.Store(true)
	err := g.eng.Stop(ctx)
	select {
	case <-g.ended:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	// No accept loop sends any more: the reaper may finish.
	close(g.results)
	return err
}

// gnetConnections is, per plaintext listen address, the connections the
// event loops hold for it.
func (e *Engine) gnetConnections() map[string]int {
	e.gnets.mu.Lock()
	defer e.gnets.mu.Unlock()
	out := make(map[string]int, len(e.gnets.all))
	for addr, gl := range e.gnets.all {
		out[addr] = int(gl.conns.Load())
	}
	return out
}

// applyListeners makes the bound listeners those of r: new addresses are
// bound and served, addresses gone are closed, an address that turns
// between TLS and plaintext is closed then bound again. Addresses in both
// are not touched, so they never refuse a connection. It runs after r is
// in force, so a connection on a new address finds its listener.
func (e *Engine) applyListeners(old, r *router) error {
	kind := func(x *router) map[string]bool {
		m := map[string]bool{}
		for _, ln := range x.listeners {
			m[ln.addr] = ln.certs != nil
		}
		return m
	}
	before, after := kind(old), kind(r)
	var errs []error
	for addr, wasTLS := range before {
		isTLS, kept := after[addr]
		if kept && isTLS == wasTLS {
			continue
		}
		if wasTLS {
			e.goFront.unbind(addr)
		} else {
			e.stopGnetListener(addr)
		}
		e.log.Info("listener closed", zap.String("listen", addr))
	}
	for addr, isTLS := range after {
		if wasTLS, kept := before[addr]; kept && isTLS == wasTLS {
			continue
		}
		var err error
		if isTLS {
			err = e.goFront.bindServe(addr)
		} else {
			err = e.startGnetListener(addr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.log.Info("listener opened", zap.String("listen", addr))
	}
	return errors.Join(errs...)
}
