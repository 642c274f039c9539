package engine

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/splice"
)

// Reload puts cfg in force for new connections and leaves everything in
// progress alone: a connection keeps the listener, servers, locations,
// rules and upstream servers it arrived under, and a tunnel never notices
// a reload. cfg must be valid (configs.Load or Apply made it). The new
// routing, certificates and upstream groups are all built first; any
// failure leaves the running config untouched and says why.
//
// Listen addresses follow the file: a new one is bound and served, one
// gone is closed (connections it already passed on go on), one that turns
// between TLS and plaintext is closed and bound again; an address in both
// is never closed, so it never refuses a connection. A new plaintext
// address that is taken fails the reload before anything changes.
//
// Not applied by a reload (they take effect at the next start, and a
// warning says so): workers, max_connections, [log], [admin] and
// drain_timeout. limit_conn and limit_req start counting afresh, and each
// upstream server's max_conns counts only the tunnels opened under the new
// config.
func (e *Engine) Reload(cfg *configs.Config) (generation int64, err error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	start := time.Now()
	old := e.rt()
	r, err := buildRouter(cfg, e.log)
	if err != nil {
		return e.generation.Load(), fmt.Errorf("reload: %w", err)
	}
	if err := e.prepare(r, cfg); err != nil {
		r.closeFiles()
		return e.generation.Load(), fmt.Errorf("reload: %w", err)
	}
	if err := newAddrsFree(old, r); err != nil {
		r.closeFiles()
		return e.generation.Load(), fmt.Errorf("reload: %w", err)
	}
	carryMetrics(old, r)
	for _, w := range restartOnly(e.cfg, cfg) {
		e.log.Warn("reload: "+w+" changes at the next start", zap.String("key", w))
	}
	r.start()
	e.cur.Store(r)
	if err := e.applyListeners(old, r); err != nil {
		// The config is in force; the address that could not be bound is
		// not served until the next reload or restart.
		e.log.Error("reload: a listener could not be opened", zapErr(err))
	}
	e.retire(old)
	if cfg.ReloadDrainRemoved {
		e.drainRemoved(r, cfg.DrainTimeout.D())
	}
	gen := e.generation.Add(1)
	e.log.Info("config reloaded", zap.Int64("generation", gen), zap.String("source", cfg.Source),
		zap.Duration("took", time.Since(start)), zap.Int64("tunnels", e.Tunnels()))
	return gen, nil
}

// drainRemoved closes, with 1001 between frames, the tunnels whose
// upstream server is no longer among the servers of their location (the
// same server name and path) in r, or whose location is gone, within
// drain. Locations, not group names, are compared: an inline proxy_pass
// list is a group named after the list.
func (e *Engine) drainRemoved(r *router, drain time.Duration) {
	keep := map[string]map[netip.AddrPort]bool{}
	for _, nl := range locationsOf(r) {
		if nl.loc.group == nil {
			continue
		}
		m := map[netip.AddrPort]bool{}
		for _, s := range nl.loc.group.Servers() {
			m[s.Addr] = true
		}
		keep[nl.server+" "+string(nl.loc.path)] = m
	}
	removed := func(t *tunnel) bool {
		return t.cur != nil && !keep[t.srv.name+" "+string(t.loc.path)][t.cur.Addr]
	}
	deadline := time.Now().Add(drain)
	n := 0
	for _, t := range e.live.snapshot() {
		if !removed(t) {
			continue
		}
		n++
		if gd := t.gdrain.Load(); gd != nil {
			gd.start(deadline.UnixNano())
		}
	}
	if e.pool != nil {
		e.pool.DrainWhere(deadline, func(h splice.Handler) bool {
			t, ok := h.(*tunnel)
			return ok && removed(t)
		})
	}
	if n > 0 {
		e.log.Info("reload: closing the tunnels of removed upstream servers", zap.Int("tunnels", n), zap.Duration("within", drain))
	}
}

// Generation counts the reloads that took effect (0: the config sluice
// started with).
func (e *Engine) Generation() int64 { return e.generation.Load() }

// newAddrsFree checks that every address r adds can be bound, so that a
// reload that cannot open its listeners fails before anything changes.
func newAddrsFree(old, r *router) error {
	var added []string
	for _, ln := range r.listeners {
		if old.listenerAt(ln.addr) == nil {
			added = append(added, ln.addr)
		}
	}
	sort.Strings(added)
	return probeFree(added)
}

// restartOnly names the keys that differ between the config sluice started
// with and cfg but only apply at start.
func restartOnly(started, cfg *configs.Config) []string {
	var out []string
	if started.Workers != cfg.Workers {
		out = append(out, "workers")
	}
	if started.MaxConnections != cfg.MaxConnections {
		out = append(out, "max_connections")
	}
	if started.Log != cfg.Log {
		out = append(out, "[log]")
	}
	if started.Admin != cfg.Admin {
		out = append(out, "[admin]")
	}
	if started.DrainTimeout != cfg.DrainTimeout {
		out = append(out, "drain_timeout")
	}
	return out
}

// carryMetrics gives each location of r the counters of the location of
// old with the same server name and path, so that a reload does not reset
// them.
func carryMetrics(old, r *router) {
	prev := map[string]*locMetrics{}
	for _, nl := range locationsOf(old) {
		prev[nl.server+" "+string(nl.loc.path)] = nl.loc.m
	}
	for _, nl := range locationsOf(r) {
		if m := prev[nl.server+" "+string(nl.loc.path)]; m != nil {
			nl.loc.m = m
		}
	}
}

// retire lets a replaced routing wind down: its health checks stop at
// once (new tunnels no longer use its groups), its pending heads keep
// their header timeout (OnTick), its idle upstream keep-alive connections
// close, and its static roots close a minute later, when no request can
// still be reading them.
func (e *Engine) retire(old *router) {
	for _, g := range old.groups {
		g.Stop()
	}
	for _, ln := range old.listeners {
		ln.http.closeIdle()
	}
	e.retiredMu.Lock()
	e.retired = append(e.retired, old)
	// Keep only what may still hold pending heads: a head lives at most
	// client_header_timeout, far below a minute.
	e.retiredMu.Unlock()
	time.AfterFunc(time.Minute, func() {
		// A connection parked under the old routing and quiet since is
		// closed now rather than later: nothing would sweep it.
		for _, ln := range old.listeners {
			if ln.certs == nil {
				ln.parked.expire(math.MaxInt64, closeParked)
			}
		}
		old.closeFiles()
		e.retiredMu.Lock()
		for i, r := range e.retired {
			if r == old {
				e.retired = append(e.retired[:i], e.retired[i+1:]...)
				break
			}
		}
		e.retiredMu.Unlock()
	})
}

// retiredRouters returns the replaced routings still winding down.
func (e *Engine) retiredRouters() []*router {
	e.retiredMu.Lock()
	defer e.retiredMu.Unlock()
	return append([]*router(nil), e.retired...)
}

// reloadState is the engine's reload bookkeeping.
type reloadState struct {
	reloadMu  sync.Mutex
	retiredMu sync.Mutex
	retired   []*router
}
