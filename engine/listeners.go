package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"
)

// gnetListener is one plaintext listen address and the gnet engine that
// serves it. Each address has its own engine so that a reload can add or
// remove an address without touching the others.
type gnetListener struct {
	addr     string
	eng      gnet.Engine
	stopping atomic.Bool // Stop asked for it: its end is no failure
	ended    chan struct{}
}

// gnetListeners are the engine's plaintext listeners by address.
type gnetListeners struct {
	mu  sync.Mutex
	all map[string]*gnetListener
}

// startGnet binds addr (checked free first, see probeFree) and starts its
// event loops; it returns once they accept, or with the reason they could
// not. An engine that stops on its own later reports to e.done.
func (e *Engine) startGnet(addr string) error {
	if err := probeFree([]string{addr}); err != nil {
		return err
	}
	f := &front{e: e, addr: addr, booted: make(chan gnet.Engine, 1)}
	gl := &gnetListener{addr: addr, ended: make(chan struct{})}
	failed := make(chan error, 1)
	go func() {
		err := gnet.Run(f, "tcp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(e.workers()),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			// One listening socket per loop (SO_REUSEPORT): each loop then
			// accepts one connection per readiness event and runs OnOpen
			// before the next accept, so a connection past max_connections
			// is closed before another fd is taken. Without it gnet's main
			// reactor accepts until EAGAIN before the loops see any of the
			// connections, a backlog-sized burst of fds that can meet
			// EMFILE and stop the engine (see Run, guard.go). The cost:
			// another process of the same user can bind the port too.
			gnet.WithReusePort(true),
			gnet.WithLogger(e.log.Sugar()),
		)
		close(gl.ended)
		select {
		case failed <- err: // still starting
		default:
		}
		if !gl.stopping.Load() {
			if err == nil {
				// gnet reports some fatal stops (an acceptor error) only in
				// its own log and returns nil.
				err = errors.New("gnet engine shut down on its own (see the error log)")
			}
			select {
			case e.done <- fmt.Errorf("listen %s: %w", addr, err):
			default:
			}
		}
	}()
	select {
	case gl.eng = <-f.booted:
	case err := <-failed:
		if err == nil {
			err = errors.New("event loops stopped at start")
		}
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	e.gnets.mu.Lock()
	if e.gnets.all == nil {
		e.gnets.all = map[string]*gnetListener{}
	}
	e.gnets.all[addr] = gl
	e.gnets.mu.Unlock()
	return nil
}

// stopGnet stops addr's engine: its listening sockets close and so do the
// connections still in their head; tunnels and plain HTTP connections
// already left it.
func (e *Engine) stopGnet(ctx context.Context, addr string) error {
	e.gnets.mu.Lock()
	gl := e.gnets.all[addr]
	delete(e.gnets.all, addr)
	e.gnets.mu.Unlock()
	if gl == nil {
		return nil
	}
	gl.stopping.Store(true)
	err := gl.eng.Stop(ctx)
	select {
	case <-gl.ended:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// gnetConnections is, per plaintext listen address, the connections its
// event loops hold.
func (e *Engine) gnetConnections() map[string]int {
	e.gnets.mu.Lock()
	defer e.gnets.mu.Unlock()
	out := make(map[string]int, len(e.gnets.all))
	for addr, gl := range e.gnets.all {
		out[addr] = gl.eng.CountConnections()
	}
	return out
}

// stopAllGnet stops every plaintext listener.
func (e *Engine) stopAllGnet(ctx context.Context) error {
	e.gnets.mu.Lock()
	addrs := make([]string, 0, len(e.gnets.all))
	for a := range e.gnets.all {
		addrs = append(addrs, a)
	}
	e.gnets.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		if err := e.stopGnet(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for addr, wasTLS := range before {
		isTLS, kept := after[addr]
		if kept && isTLS == wasTLS {
			continue
		}
		if wasTLS {
			e.goFront.unbind(addr)
		} else if err := e.stopGnet(ctx, addr); err != nil {
			errs = append(errs, err)
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
			err = e.startGnet(addr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.log.Info("listener opened", zap.String("listen", addr))
	}
	return errors.Join(errs...)
}
