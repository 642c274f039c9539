package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/upstream"
)

// Version is sluice's version as /status and /metrics report it; the
// command sets it from its build stamp.
var Version = "dev"

// admin is the operator's listener ([admin] listen): /metrics in the
// Prometheus text format, /status as JSON, /healthz. It runs on its own
// goroutines (net/http): nothing it does touches an event loop, and every
// figure it reports is an atomic load.
type admin struct {
	e        *Engine
	ln       net.Listener
	srv      *http.Server
	stopping atomic.Bool
}

// startAdmin binds the admin listener, if one is configured.
func (e *Engine) startAdmin() error {
	addr := e.cfg.Admin.Listen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	a := &admin{e: e, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", a.metrics)
	mux.HandleFunc("/status", a.status)
	mux.HandleFunc("/healthz", a.healthz)
	mux.HandleFunc("/tunnels", a.tunnels)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	go func() { _ = a.srv.Serve(ln) }()
	e.admin = a
	e.log.Info("admin listening", zap.String("addr", ln.Addr().String()),
		zap.Strings("paths", []string{"/metrics", "/status", "/tunnels", "/healthz"}))
	return nil
}

// AdminAddr is the admin listener's address, or "" without one.
func (e *Engine) AdminAddr() string {
	if e.admin == nil {
		return ""
	}
	return e.admin.ln.Addr().String()
}

// stop makes /healthz answer 503 at once, then closes the listener.
func (a *admin) stop(ctx context.Context) {
	if a == nil {
		return
	}
	a.stopping.Store(true)
	_ = a.srv.Shutdown(ctx)
}

func (a *admin) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if a.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "stopping\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// metrics writes every family with its HELP and TYPE lines, in a fixed
// order, labels escaped (location paths and server names are
// configuration, but a path may hold a quote or a backslash).
func (a *admin) metrics(w http.ResponseWriter, r *http.Request) {
	e := a.e
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	b := bufio.NewWriterSize(w, 32<<10)
	defer b.Flush()
	m := promWriter{w: b}

	m.family("sluice_build_info", "gauge", "Always 1; the version is a label.")
	m.sample("sluice_build_info", labels("version", Version), 1)
	m.family("sluice_config_generation", "gauge", "Config reloads that took effect since start.")
	m.sample("sluice_config_generation", "", float64(e.Generation()))
	m.family("sluice_uptime_seconds", "gauge", "Seconds since the engine started.")
	m.sample("sluice_uptime_seconds", "", time.Since(e.metrics.started).Seconds())

	m.family("sluice_connections", "gauge", "Client connections held: heads being read, handshakes, tunnels, plain HTTP connections.")
	m.sample("sluice_connections", "", float64(e.Pending()))
	m.family("sluice_max_connections", "gauge", "The cap on client connections in force (max_connections).")
	m.sample("sluice_max_connections", "", float64(e.guards.maxConns))
	m.family("sluice_accept_pauses_total", "counter", "Times an accept loop stopped accepting at max_connections (new connections waited in the backlog).")
	m.sample("sluice_accept_pauses_total", "", float64(e.guards.pauses.Load()))
	m.family("sluice_pending_heads", "gauge", "Connections whose request head the event loops are still reading.")
	m.sample("sluice_pending_heads", "", float64(e.stats.conns.Load()))
	relay := 0
	if e.pool != nil {
		relay = e.pool.Live()
	}
	m.family("sluice_relay_jobs", "gauge", "Connections the relay loops own: upstream dials, 101 waits and spliced tunnels.")
	m.sample("sluice_relay_jobs", "", float64(relay))
	m.family("sluice_goroutine_path_connections", "gauge", "Connections on the goroutine path: TLS clients, TLS upstreams, plain HTTP.")
	m.sample("sluice_goroutine_path_connections", "", float64(e.goFront.live.Load()))
	if e.pool != nil {
		m.family("sluice_relay_loop_jobs", "gauge", "Jobs and tunnels each relay loop owns: how the load is spread.")
		for i, n := range e.pool.LoopJobs() {
			m.sample("sluice_relay_loop_jobs", labels("loop", strconv.Itoa(i)), float64(n))
		}
	}
	m.family("sluice_listener_heads", "gauge", "Connections per listen address whose request head is still being read.")
	m.family("sluice_listener_event_loop_connections", "gauge", "Connections each plaintext listen address's event loops hold (heads being read).")
	heads := map[string]int{}
	for _, r := range append(e.retiredRouters(), e.rt()) {
		for _, ln := range r.listeners {
			heads[ln.addr] += ln.pending.count()
		}
	}
	for _, ln := range e.rt().listeners {
		m.sample("sluice_listener_heads", labels("listen", ln.addr), float64(heads[ln.addr]))
	}
	gc := e.gnetConnections()
	addrs := make([]string, 0, len(gc))
	for a := range gc {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		m.sample("sluice_listener_event_loop_connections", labels("listen", a), float64(gc[a]))
	}

	locs := e.locations()
	m.family("sluice_tunnels", "gauge", "Verified tunnels alive, by location.")
	for _, l := range locs {
		m.sample("sluice_tunnels", l.labels, float64(l.loc.m.tunnels.Load()))
	}
	m.family("sluice_handshakes_total", "counter", "WebSocket handshakes that reached a location, by the status the client got (101: a tunnel; 0: the client left first).")
	for _, l := range locs {
		for s := range l.loc.m.outcomes {
			if n := l.loc.m.outcomes[s].Load(); n > 0 {
				m.sample("sluice_handshakes_total", l.labels+`,status="`+strconv.Itoa(s)+`"`, float64(n))
			}
		}
	}
	m.family("sluice_http_requests_total", "counter", "Plain HTTP requests, by location and status.")
	for _, l := range locs {
		for s := range l.loc.m.requests {
			if n := l.loc.m.requests[s].Load(); n > 0 {
				m.sample("sluice_http_requests_total", l.labels+`,status="`+strconv.Itoa(s)+`"`, float64(n))
			}
		}
	}
	m.family("sluice_tunnel_bytes_total", "counter", "Bytes relayed by tunnels that ended, by location and direction (up: client to upstream).")
	for _, l := range locs {
		m.sample("sluice_tunnel_bytes_total", l.labels+`,direction="up"`, float64(l.loc.m.bytesUp.Load()))
		m.sample("sluice_tunnel_bytes_total", l.labels+`,direction="down"`, float64(l.loc.m.bytesDown.Load()))
	}
	m.family("sluice_refused_total", "counter", "Handshakes and requests the proxy refused itself, by the status answered (0: closed without an answer).")
	for s := range e.metrics.refused {
		if n := e.metrics.refused[s].Load(); n > 0 {
			m.sample("sluice_refused_total", labels("status", strconv.Itoa(s)), float64(n))
		}
	}
	m.family("sluice_refusals_total", "counter", "Refusals by the admission rule that refused.")
	ref := e.Refusals()
	for _, rule := range ruleNames {
		m.sample("sluice_refusals_total", labels("rule", rule), float64(ref[rule]))
	}
	m.histogram("sluice_handshake_duration_seconds", "From accept to the verified 101.", &e.metrics.handshakeLatency)
	m.histogram("sluice_tunnel_duration_seconds", "From accept to the end of tunnels that ended.", &e.metrics.tunnelDuration)

	servers := e.upstreamServers()
	m.family("sluice_upstream_up", "gauge", "1 when the server takes new tunnels (not down, healthy, not failed), else 0.")
	for _, s := range servers {
		up := 0.0
		if s.srv.State() == upstream.StateUp {
			up = 1
		}
		m.sample("sluice_upstream_up", s.labels, up)
	}
	m.family("sluice_upstream_tunnels", "gauge", "Tunnels alive per upstream server.")
	for _, s := range servers {
		m.sample("sluice_upstream_tunnels", s.labels, float64(s.srv.Live()))
	}
	m.family("sluice_upstream_handshakes_total", "counter", "Handshakes sent to each upstream server.")
	for _, s := range servers {
		m.sample("sluice_upstream_handshakes_total", s.labels, float64(s.srv.Handshakes()))
	}
	m.family("sluice_upstream_failures_total", "counter", "Failed attempts (connect errors, timeouts, invalid answers) per upstream server.")
	for _, s := range servers {
		m.sample("sluice_upstream_failures_total", s.labels, float64(s.srv.Failures()))
	}

	open, limit := fdUsage()
	m.family("sluice_open_fds", "gauge", "File descriptors the process holds.")
	m.sample("sluice_open_fds", "", float64(open))
	m.family("sluice_max_fds", "gauge", "The soft RLIMIT_NOFILE.")
	m.sample("sluice_max_fds", "", float64(limit))
}

// status is /status: the same figures as JSON, for people and scripts.
func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	e := a.e
	type server struct {
		Group      string `json:"group"`
		Server     string `json:"server"`
		Address    string `json:"address"`
		State      string `json:"state"`
		Tunnels    int64  `json:"tunnels"`
		Handshakes int64  `json:"handshakes"`
		Failures   int64  `json:"failures"`
	}
	type location struct {
		Server    string `json:"server"`
		Path      string `json:"path"`
		Tunnels   int64  `json:"tunnels"`
		BytesUp   int64  `json:"bytes_up"`
		BytesDown int64  `json:"bytes_down"`
	}
	out := struct {
		Version        string           `json:"version"`
		UptimeSeconds  float64          `json:"uptime_seconds"`
		ConfigSource   string           `json:"config_source"`
		Generation     int64            `json:"config_generation"`
		Connections    int64            `json:"connections"`
		MaxConnections int64            `json:"max_connections"`
		Tunnels        int64            `json:"tunnels"`
		Refused        int64            `json:"refused"`
		Refusals       map[string]int64 `json:"refusals"`
		Locations      []location       `json:"locations"`
		Upstreams      []server         `json:"upstreams"`
	}{
		Version:        Version,
		UptimeSeconds:  time.Since(e.metrics.started).Seconds(),
		ConfigSource:   e.cfg.Source,
		Generation:     e.Generation(),
		Connections:    e.Pending(),
		MaxConnections: e.guards.maxConns,
		Tunnels:        e.Tunnels(),
		Refused:        e.Refused(),
		Refusals:       e.Refusals(),
	}
	for _, l := range e.locations() {
		out.Locations = append(out.Locations, location{Server: l.server, Path: string(l.loc.path),
			Tunnels: l.loc.m.tunnels.Load(), BytesUp: l.loc.m.bytesUp.Load(), BytesDown: l.loc.m.bytesDown.Load()})
	}
	for _, s := range e.upstreamServers() {
		out.Upstreams = append(out.Upstreams, server{Group: s.group, Server: s.srv.Name, Address: s.srv.Addr.String(),
			State: s.srv.State().String(), Tunnels: s.srv.Live(), Handshakes: s.srv.Handshakes(), Failures: s.srv.Failures()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// tunnels is /tunnels: the verified tunnels alive, oldest first, a page
// at a time (?offset=N&limit=M, limit 100 by default and 1000 at most):
// what HAProxy's "show sess" gives, for WebSockets. Bytes count what was
// written to each side so far; idle is the time since the last write
// either way.
func (a *admin) tunnels(w http.ResponseWriter, r *http.Request) {
	offset, limit := 0, 100
	q := r.URL.Query()
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "offset: want a number >= 0", http.StatusBadRequest)
			return
		}
		offset = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			http.Error(w, "limit: want a number from 1 to 1000", http.StatusBadRequest)
			return
		}
		limit = n
	}
	type entry struct {
		ID           uint64  `json:"id"`
		Client       string  `json:"client"`
		Server       string  `json:"server"`
		Location     string  `json:"location"`
		Path         string  `json:"path"`
		Upstream     string  `json:"upstream"`
		UpstreamAddr string  `json:"upstream_addr"`
		AgeSeconds   float64 `json:"age_seconds"`
		IdleSeconds  float64 `json:"idle_seconds"`
		BytesUp      int64   `json:"bytes_up"`
		BytesDown    int64   `json:"bytes_down"`
	}
	all := a.e.live.snapshot()
	out := struct {
		Total   int     `json:"total"`
		Offset  int     `json:"offset"`
		Limit   int     `json:"limit"`
		Tunnels []entry `json:"tunnels"`
	}{Total: len(all), Offset: offset, Limit: limit, Tunnels: []entry{}}
	now := time.Now()
	for i := offset; i < len(all) && i < offset+limit; i++ {
		t := all[i]
		idle := 0.0
		if last := t.live.LastActive.Load(); last > 0 {
			idle = now.Sub(time.Unix(0, last)).Seconds()
		}
		out.Tunnels = append(out.Tunnels, entry{
			ID: t.id, Client: t.client.String(), Server: t.srv.name, Location: string(t.loc.path), Path: t.path,
			Upstream: t.upstreamName(), UpstreamAddr: t.cur.Addr.String(),
			AgeSeconds: now.Sub(time.Unix(0, t.start)).Seconds(), IdleSeconds: idle,
			BytesUp: t.live.BytesUp.Load(), BytesDown: t.live.BytesDown.Load(),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// namedLocation is a location with its metric labels.
type namedLocation struct {
	server string
	loc    *location
	labels string
}

// locations lists every location of the config in force once, labelled by
// its server's name and its path.
func (e *Engine) locations() []namedLocation { return locationsOf(e.rt()) }

func locationsOf(r *router) []namedLocation {
	var out []namedLocation
	seen := map[*server]bool{}
	for _, ln := range r.listeners {
		for _, s := range ln.servers {
			if seen[s] {
				continue
			}
			seen[s] = true
			for _, l := range s.locations {
				out = append(out, namedLocation{server: s.name, loc: l, labels: labels("server", s.name, "location", string(l.path))})
			}
		}
	}
	// s.locations is sorted longest path first (routing order); config
	// order reads better and is stable.
	sort.SliceStable(out, func(i, j int) bool { return out[i].server < out[j].server })
	return out
}

type namedServer struct {
	group  string
	srv    *upstream.Server
	labels string
}

// upstreamServers lists the servers of every group, as they are now (a
// re-resolution may have changed them).
func (e *Engine) upstreamServers() []namedServer {
	var out []namedServer
	for _, g := range e.rt().groups {
		for _, s := range g.Servers() {
			out = append(out, namedServer{group: g.Name, srv: s, labels: labels("group", g.Name, "server", s.Name, "address", s.Addr.String())})
		}
	}
	return out
}

// fdUsage is the number of open fds and the soft limit.
func fdUsage() (open int, limit uint64) {
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(ents)
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		limit = rl.Cur
	}
	return open, limit
}

// promWriter writes the Prometheus text exposition format (version 0.0.4).
type promWriter struct{ w *bufio.Writer }

func (p promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p promWriter) sample(name, labels string, v float64) {
	p.w.WriteString(name)
	if labels != "" {
		p.w.WriteByte('{')
		p.w.WriteString(labels)
		p.w.WriteByte('}')
	}
	p.w.WriteByte(' ')
	p.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	p.w.WriteByte('\n')
}

func (p promWriter) histogram(name, help string, h *histogram) {
	p.family(name, "histogram", help)
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		p.sample(name+"_bucket", labels("le", strconv.FormatFloat(b, 'g', -1, 64)), float64(cum))
	}
	cum += h.counts[len(h.bounds)].Load()
	p.sample(name+"_bucket", labels("le", "+Inf"), float64(cum))
	p.sample(name+"_sum", "", math.Float64frombits(h.sum.Load()))
	// The count is the +Inf bucket, read once, so the two always agree.
	p.sample(name+"_count", "", float64(cum))
}

// labels renders name="value" pairs, values escaped as the format wants.
func labels(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		for _, c := range kv[i+1] {
			switch c {
			case '\\':
				b.WriteString(`\\`)
			case '"':
				b.WriteString(`\"`)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}
