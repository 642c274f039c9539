// Package upstream holds server groups and chooses which server a new
// tunnel goes to. It knows addresses and counters, not HTTP requests and
// not the event loops.
//
// A Group is nginx's upstream block: servers with weight, max_conns,
// max_fails/fail_timeout, backup and down; one balancing method (a Picker:
// round_robin, least_conn, ip_hash, hash [consistent], random); retries
// bounded by max_tries and next_upstream_timeout; active health checks
// that speak WebSocket; names re-resolved on an interval. The split by
// concern follows Caddy's reverse proxy: selectionpolicies.go (one small
// type per method), hash.go (keys and the ketama ring), healthchecks.go,
// resolve.go, server.go (per-server state and counters).
//
// The handshake path (Group.Next) takes no lock and allocates nothing:
// servers, their order and every precomputed table live in an immutable
// snapshot behind an atomic pointer, and everything that changes per
// tunnel is an atomic counter on the Server or lives in the caller's
// Selection. Health checks and re-resolution run on the group's own
// goroutines (Start, Stop) and only publish new snapshots or flip atomics.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one group as the engine hands it over, already validated by
// package configs; New applies nginx's defaults to zero values.
type Config struct {
	// Name is the group's name ("chat"), or the proxy_pass list for an
	// anonymous group.
	Name string
	// Servers in configuration order. At least one must not be a backup.
	Servers []ServerConfig
	// Method is the balancing method; "" means RoundRobin.
	Method Method
	// HashKey is the key of the Hash method in nginx variable syntax (see
	// ParseHashKey). Required for Hash, refused otherwise.
	HashKey string
	// Consistent selects the ketama ring for Hash.
	Consistent bool
	// MaxTries bounds the servers one handshake may try; 0 means each
	// server once (nginx: proxy_next_upstream_tries, whose 0 is unlimited;
	// a handshake never tries a server twice either way).
	MaxTries int
	// NextUpstreamTimeout bounds the time from a handshake's first attempt
	// after which no further server is tried; 0 is no bound (nginx:
	// proxy_next_upstream_timeout).
	NextUpstreamTimeout time.Duration
	// ResolveEvery is how often names among the servers are resolved
	// again; 0 resolves them once, at New.
	ResolveEvery time.Duration
	// HealthCheck enables active health checks; nil means none.
	HealthCheck *HealthCheck
}

// Options are the group's links to its surroundings.
type Options struct {
	// Resolver resolves server names; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// ResolveTimeout bounds each lookup; 0 means 5s.
	ResolveTimeout time.Duration
	// OnEvent, if set, hears about state changes (health, addresses). It
	// is called from the group's goroutines, never from Next.
	OnEvent func(Event)
}

// EventKind is what an Event reports.
type EventKind uint8

const (
	// EventUnhealthy: active checks failed Fall times in a row.
	EventUnhealthy EventKind = iota + 1
	// EventHealthy: an unhealthy server passed Rise checks in a row.
	EventHealthy
	// EventResolved: a name now resolves to other addresses; new tunnels
	// use the new list.
	EventResolved
	// EventResolveFailed: a lookup failed; the previous addresses stay.
	EventResolveFailed
)

// Event is a change the engine may want to log.
type Event struct {
	Kind   EventKind
	Group  string
	Server *Server // for health events
	Name   string  // for resolve events: the configured "host:port"
	Err    error   // why the check or the lookup failed
}

// Errors Next returns when it has no server to offer.
var (
	// ErrNoServers: New was given no servers.
	ErrNoServers = errors.New("upstream group has no servers")
	// ErrNoLiveUpstreams: every server not yet tried by this handshake is
	// down, unhealthy or failed (nginx's "no live upstreams"). → 502
	ErrNoLiveUpstreams = errors.New("no live upstreams")
	// ErrAllFull: every server that could take the tunnel is at its
	// max_conns. → 503 with Retry-After
	ErrAllFull = errors.New("every upstream server is at max_conns")
	// ErrTriesSpent: the handshake tried max_tries servers.
	ErrTriesSpent = errors.New("upstream tries spent")
	// ErrNextTimeout: next_upstream_timeout passed since the first try.
	ErrNextTimeout = errors.New("next_upstream_timeout reached")
)

// Group is a balanced set of servers. It is safe for concurrent use.
type Group struct {
	// Name is Config.Name.
	Name string

	cfg       Config
	keySource KeySource
	opts      Options
	snap      atomic.Pointer[snapshot]
	hostnames bool // some server is a name, not an IP literal

	mu     sync.Mutex // Start and Stop only
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// snapshot is a group's servers at one moment, with everything the
// pickers precompute. It is never modified once published; re-resolution
// publishes a new one. A Selection keeps the snapshot it began with, so
// indexes in its tried set stay meaningful for the whole handshake.
type snapshot struct {
	all     []*Server   // primary servers, then backups: Selection.tried indexes
	tiers   []tier      // primary, then backup if any
	entries [][]*Server // per ServerConfig, the Servers of its addresses
	addrs   [][]string  // per ServerConfig, its addresses as text (to spot changes)
}

// maxServers bounds a group: the pickers' tables index servers in 16 bits.
const maxServers = 1 << 16

// New builds a group, resolving every server name (each address a name
// resolves to becomes a server of its own, nginx's way). It starts no
// goroutine: Start does.
func New(cfg Config, opts Options) (*Group, error) {
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("upstream %q: %w", cfg.Name, ErrNoServers)
	}
	if cfg.Method == "" {
		cfg.Method = RoundRobin
	}
	g := &Group{Name: cfg.Name, opts: opts}
	switch cfg.Method {
	case RoundRobin, LeastConn, Random, IPHash:
		if cfg.HashKey != "" || cfg.Consistent {
			return nil, fmt.Errorf("upstream %q: hash_key and consistent need method %q", cfg.Name, Hash)
		}
	case Hash:
		ks, err := ParseHashKey(cfg.HashKey)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", cfg.Name, err)
		}
		g.keySource = ks
	default:
		return nil, fmt.Errorf("upstream %q: unknown method %q", cfg.Name, cfg.Method)
	}
	if cfg.Method == IPHash {
		g.keySource = KeySource{Kind: KeyClientNet}
	}
	if cfg.MaxTries < 0 || cfg.NextUpstreamTimeout < 0 || cfg.ResolveEvery < 0 {
		return nil, fmt.Errorf("upstream %q: negative max_tries, next_upstream_timeout or resolve", cfg.Name)
	}
	servers := make([]ServerConfig, len(cfg.Servers))
	primary := false
	for i, s := range cfg.Servers {
		if s.Weight <= 0 {
			s.Weight = DefaultWeight
		}
		if s.MaxFails < 0 {
			s.MaxFails = 0
		}
		if s.FailTimeout <= 0 {
			s.FailTimeout = DefaultFailTimeout
		}
		if s.MaxConns < 0 {
			s.MaxConns = 0
		}
		if s.Backup && (cfg.Method == IPHash || cfg.Method == Hash) {
			// As nginx: a backup has no place in a hash's key space.
			return nil, fmt.Errorf("upstream %q: server %s: backup cannot be used with method %q", cfg.Name, s.Address, cfg.Method)
		}
		primary = primary || !s.Backup
		if !isLiteral(s.Address) {
			g.hostnames = true
		}
		servers[i] = s
	}
	if !primary {
		return nil, fmt.Errorf("upstream %q: every server is a backup", cfg.Name)
	}
	cfg.Servers = servers
	if hc := cfg.HealthCheck; hc != nil {
		h := hc.withDefaults()
		cfg.HealthCheck = &h
	}
	g.cfg = cfg

	timeout := opts.ResolveTimeout
	if timeout <= 0 {
		timeout = defaultResolveTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs := make([][]string, len(servers))
	for i, s := range servers {
		list, err := g.lookup(ctx, s.Address)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", cfg.Name, err)
		}
		addrs[i] = list
	}
	sn, err := g.build(addrs, nil)
	if err != nil {
		return nil, err
	}
	g.snap.Store(sn)
	return g, nil
}

// build makes a snapshot for the given addresses of each ServerConfig,
// reusing old's Server (and so its counters and health) for every address
// that stays.
func (g *Group) build(addrs [][]string, old *snapshot) (*snapshot, error) {
	sn := &snapshot{entries: make([][]*Server, len(addrs)), addrs: addrs}
	var primary, backup []*Server
	for e, list := range addrs {
		sc := g.cfg.Servers[e]
		for _, a := range list {
			ap, err := parseAddrPort(a)
			if err != nil {
				return nil, fmt.Errorf("upstream %q: %w", g.Name, err)
			}
			var s *Server
			if old != nil {
				for _, o := range old.entries[e] {
					if o.Addr == ap {
						s = o
					}
				}
			}
			if s == nil {
				s = newServer(sc.Address, ap, sc)
				s.id = ringID(sc.Address, ap)
			}
			sn.entries[e] = append(sn.entries[e], s)
			if sc.Backup {
				backup = append(backup, s)
			} else {
				primary = append(primary, s)
			}
		}
	}
	if len(primary)+len(backup) >= maxServers {
		return nil, fmt.Errorf("upstream %q: %d servers, more than %d", g.Name, len(primary)+len(backup), maxServers-1)
	}
	sn.all = make([]*Server, 0, len(primary)+len(backup))
	sn.all = append(append(sn.all, primary...), backup...)
	sn.tiers = append(sn.tiers, newTier(sn.all[:len(primary):len(primary)], 0, g.cfg.Method, g.cfg.Consistent))
	if len(backup) > 0 {
		sn.tiers = append(sn.tiers, newTier(sn.all[len(primary):], len(primary), g.cfg.Method, g.cfg.Consistent))
	}
	return sn, nil
}

// Servers returns the group's current servers: primaries, then backups,
// each in configuration order (the addresses of a name sorted). The slice
// is shared: do not modify it.
func (g *Group) Servers() []*Server { return g.snap.Load().all }

// Method is the group's balancing method.
func (g *Group) Method() Method { return g.cfg.Method }

// KeySource says what the engine must extract from a request for this
// group: KeyNone (nothing), KeyClientNet (ip_hash: AddrKey of the client),
// or a hash_key variable (KeyOf its value).
func (g *Group) KeySource() KeySource { return g.keySource }

// MaxTries is the configured max_tries (0: every server once).
func (g *Group) MaxTries() int { return g.cfg.MaxTries }

// Selection is one handshake's walk through a group: its key, the
// servers it tried, and the hashing methods' rehash state (nginx keeps the
// same in its per-request peer data). Embed one in the per-tunnel state;
// the zero value is a selection without a key.
type Selection struct {
	key     Key
	snap    *snapshot
	start   int64 // mono() of the first Next, when next_upstream_timeout is set
	n       int   // servers Next returned
	tries   int   // rehashes so far, nginx's hp->tries
	hash    uint32
	rehash  uint32
	hashing bool
	tried   [4]uint64 // servers of snap tried, by index; past 256 untracked

	// One pick's scratch state. It lives here rather than on the stack
	// because the Picker interface call would move it to the heap.
	now           int64 // mono(), read at most once per pick (clock)
	ignorePassive bool  // second pass: every server had failed (see snapshot.pick)
	sawPassive    bool  // a server was skipped for passive failures only
}

// Reset starts a new selection for a request with key k (the zero Key for
// methods that hash nothing).
func (s *Selection) Reset(k Key) { *s = Selection{key: k} }

// Attempts is the number of servers Next has returned.
func (s *Selection) Attempts() int { return s.n }

func (s *Selection) wasTried(i int) bool {
	return i < 256 && s.tried[i>>6]&(1<<(i&63)) != 0
}

func (s *Selection) markTried(i int) {
	if i < 256 {
		s.tried[i>>6] |= 1 << (i & 63)
	}
}

// Next returns the server for the selection's next attempt, with one of
// its max_conns slots taken: the caller must end the attempt with exactly
// one of Server.Failed, Answered, Abandoned, or Opened then Closed.
//
// No server is returned twice to one selection. The first call picks by
// the group's method; later calls (retries, after a failed connect or an
// invalid answer) pick again among the servers not yet tried, until
// max_tries servers were returned (ErrTriesSpent) or next_upstream_timeout
// has passed since the first call (ErrNextTimeout). With nothing left it
// returns ErrAllFull when the servers it could have used are at
// max_conns, else ErrNoLiveUpstreams.
//
// Hot path: no lock, no allocation; atomic loads, one atomic add for the
// method's counter, a compare-and-swap for the slot when max_conns is set.
func (g *Group) Next(sel *Selection) (*Server, error) {
	if sel.snap == nil {
		sel.snap = g.snap.Load()
		if g.cfg.NextUpstreamTimeout > 0 {
			sel.start = mono()
		}
	} else {
		limit := g.cfg.MaxTries
		if limit <= 0 || limit > len(sel.snap.all) {
			limit = len(sel.snap.all)
		}
		if sel.n >= limit {
			return nil, ErrTriesSpent
		}
		if g.cfg.NextUpstreamTimeout > 0 && mono()-sel.start >= int64(g.cfg.NextUpstreamTimeout) {
			return nil, ErrNextTimeout
		}
	}
	s, err := sel.snap.pick(sel)
	if s != nil {
		sel.n++
	}
	return s, err
}

// pick runs the method over the primary tier, then the backups (nginx:
// backup servers get traffic only when no primary can take it). When
// nothing was found and some server was skipped only because of passive
// failures, nginx's rule applies: "all peers failed, mark them as live
// for quick recovery", and the pick runs once more. Servers that active
// checks found unhealthy are never revived that way: a group whose every
// server failed its checks answers 502 "no live upstreams".
func (sn *snapshot) pick(sel *Selection) (*Server, error) {
	c := sel
	c.now, c.ignorePassive, c.sawPassive = 0, false, false
	for pass := 0; pass < 2; pass++ {
		for ti := range sn.tiers {
			t := &sn.tiers[ti]
			// A chosen server can be lost to a concurrent pick (its last
			// max_conns slot, or its single post-failure trial); it is
			// then marked tried and the method picks again, a bounded
			// number of times.
			for range 8 {
				i := t.picker.pick(c, t)
				if i < 0 {
					break
				}
				s := t.servers[i]
				sel.markTried(t.base + i)
				if !c.ignorePassive && s.maxFails > 0 && s.fails.Load() > 0 && !s.trial(c.clock()) {
					continue
				}
				if !s.acquire() {
					continue
				}
				return s, nil
			}
		}
		if !c.sawPassive {
			break
		}
		for _, s := range sn.all {
			s.fails.Store(0)
		}
		c.ignorePassive, c.sawPassive = true, false
	}
	return nil, sn.why(sel)
}

// why tells ErrAllFull from ErrNoLiveUpstreams for a pick that found
// nothing: full means some server that is up and untried has no slot.
func (sn *snapshot) why(sel *Selection) error {
	for i, s := range sn.all {
		if sel.wasTried(i) || s.down || s.unhealthy.Load() {
			continue
		}
		if s.maxConns > 0 && s.conns.Load() >= s.maxConns {
			return ErrAllFull
		}
	}
	return ErrNoLiveUpstreams
}

// Start starts the group's goroutines: one health checker if the group
// has active checks, one resolver if some server is a name and
// ResolveEvery is set. Start after Stop starts them again.
func (g *Group) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	if g.cfg.HealthCheck != nil {
		g.wg.Add(1)
		go g.checkLoop(ctx)
	}
	if g.hostnames && g.cfg.ResolveEvery > 0 {
		g.wg.Add(1)
		go g.resolveLoop(ctx)
	}
}

// Stop stops the group's goroutines and waits for them: a health check
// under way is cut short. Tunnels are not affected. Stop without Start
// does nothing.
func (g *Group) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.wg.Wait()
	g.cancel = nil
}

func (g *Group) event(e Event) {
	if g.opts.OnEvent != nil {
		e.Group = g.Name
		g.opts.OnEvent(e)
	}
}
