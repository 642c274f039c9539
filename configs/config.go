// Package configs is sluice's configuration: the TOML schema, its defaults,
// its validation, the embedded default file and the command-line overrides.
//
// The struct fields below are the reference manual. Each one says what the
// key does, its default, and the nginx directive it replaces, so that a
// reader coming from nginx can translate a config line by line. The example
// files next to this package (socket.toml, chat.toml, loadbalanced.toml) show
// whole configurations with the nginx block each one replaces.
//
// Reading a config is three steps, all done by Parse:
//
//  1. decode strictly: an unknown key or a value of the wrong type is an
//     error that names the file, line, column and key path;
//  2. fill defaults: every key left out takes the default documented on its
//     field (a zero value means "unset"; no key is meaningful at zero except
//     Workers and MaxTries, whose zero is itself the documented default);
//  3. Validate: cross-field rules (every proxy_pass names an upstream, no two
//     servers claim the same address and name, ...), reported with the
//     position of the key to blame.
//
// A Config returned by Parse, Load, Default or Apply is complete: the engine
// never needs to know a default, and Location.Upstream is always set.
package configs

import (
	"time"
)

// Config is one whole sluice configuration, as read from a TOML file, the
// embedded default, or command-line flags.
type Config struct {
	// Log configures sluice's own logs and the access log ([log] table).
	Log Log `toml:"log"`

	// Workers is the number of event loops accepting and relaying
	// connections. 0, the default, means one per CPU.
	// nginx: worker_processes auto;
	Workers int `toml:"workers"`

	// Upstreams are the named backend groups, one [upstream.NAME] table
	// each, that a location's proxy_pass can refer to by NAME.
	// Anonymous groups written inline in proxy_pass ("host:port,host:port")
	// are not listed here; they only appear as Location.Upstream.
	// nginx: upstream NAME { server ...; }
	Upstreams map[string]*Upstream `toml:"upstream"`

	// Servers are the virtual servers, one [[server]] table each. At least
	// one is required.
	// nginx: server { ... }
	Servers []*Server `toml:"server"`

	// Source says where this config came from: the file name given to
	// Parse or Load, "embedded default", or "flags". It is for logs
	// ("config loaded from ...") and is not a TOML key.
	Source string `toml:"-"`

	// file and pos locate keys in the source, for error messages; pos maps
	// a key path such as "server[0].location[1].read_timeout" to where the
	// key was written. Both are empty for configs built from flags.
	file string
	pos  positions
}

// Log is the [log] table.
type Log struct {
	// Level is the minimum severity written to ErrorLog: "debug", "info",
	// "warn" or "error". Default "info".
	// nginx: the level argument of error_log (error_log ... info;)
	Level string `toml:"level"`

	// Format of both logs: "console" (human-readable lines) or "json" (one
	// JSON object per line, for log shippers). Default "console".
	// nginx: log_format (json with escape=json)
	Format string `toml:"format"`

	// ErrorLog is where sluice's own diagnostics go: "stderr", "stdout" or
	// a file path (appended to, created if missing). Default "stderr".
	// nginx: error_log
	ErrorLog string `toml:"error_log"`

	// AccessLog is where one line per finished tunnel goes: "stdout",
	// "stderr", "off" or a file path. Default "stdout".
	// nginx: access_log (access_log off; disables it)
	AccessLog string `toml:"access_log"`
}

// Upstream is a named group of backends, the [upstream.NAME] table.
type Upstream struct {
	// Name is the group's name: the NAME of [upstream.NAME], or, for an
	// anonymous group written inline in proxy_pass, the proxy_pass value
	// itself (e.g. "127.0.0.1:9001,127.0.0.1:9002"). Filled by Validate;
	// not a TOML key.
	Name string `toml:"-"`

	// Servers are the backends, each "host:port" (host may be a name, an
	// IPv4 address or a bracketed IPv6 address). Nothing is resolved at
	// load time. At least one is required.
	// nginx: server 127.0.0.1:9001; inside upstream { }
	Servers []string `toml:"servers"`

	// Method chooses the backend for each new connection. Only
	// "round_robin" (the default) exists today; other values are rejected
	// rather than silently treated as round robin.
	// nginx: round robin is nginx's default too (no directive)
	Method string `toml:"method"`

	// MaxTries is how many backends one handshake may try, moving to the
	// next one when a connection fails, before the client gets a 502.
	// 0, the default, means every server once.
	// nginx: proxy_next_upstream_tries (0 there means unlimited)
	MaxTries int `toml:"max_tries"`
}

// Server is one virtual server, a [[server]] table.
type Server struct {
	// Listen are the addresses to accept connections on, each "host:port"
	// with a numeric port; ":8080" means every interface. At least one is
	// required; there is no default. Two servers may share an address only
	// if their ServerName lists differ (see Validate).
	// nginx: listen 127.0.0.1:8080;
	Listen []string `toml:"listen"`

	// ServerName limits this server to requests whose Host header (port
	// stripped, compared case-insensitively) is one of these names. A name
	// is either exact ("example.com") or a leading wildcard
	// ("*.example.com", which matches any name ending in ".example.com" but
	// not "example.com" itself). Empty, the default, matches any Host; on a
	// shared address such a server receives the requests no other server
	// claims. Validate lowercases the names.
	// nginx: server_name example.com *.example.com;
	ServerName []string `toml:"server_name"`

	// ClientHeaderTimeout is how long a client has to send its whole
	// request head, from accept to the blank line. Default "10s" (nginx
	// defaults to 60s; an idle half-open connection holding a slot for a
	// minute is cheap for an attacker, and real WebSocket clients send the
	// upgrade request at once).
	// nginx: client_header_timeout
	ClientHeaderTimeout Duration `toml:"client_header_timeout"`

	// MaxHeaderBytes caps the request head (request line plus headers).
	// A larger head gets 431 Request Header Fields Too Large (RFC 6585
	// section 5). Between "1k" and "1m"; default "8k", the size nginx
	// allows per header line by default.
	// nginx: large_client_header_buffers 4 8k;
	MaxHeaderBytes Size `toml:"max_header_bytes"`

	// Locations route requests by path prefix, one [[server.location]]
	// table each; the longest matching prefix wins. A request no location
	// matches gets 404.
	// nginx: location /ws/ { ... }
	Locations []*Location `toml:"location"`
}

// Location proxies one path prefix, a [[server.location]] table.
type Location struct {
	// Path is the prefix this location handles, starting with "/". Among
	// the locations of a server the longest prefix of the request path
	// wins, whatever their order in the file. Required.
	// nginx: location /ws/ { } (a plain prefix location; no regex, no =)
	Path string `toml:"path"`

	// ProxyPass says where to send the connection: the name of an
	// [upstream.NAME] group, or "host:port", or "host:port,host:port"
	// (an anonymous round-robin group). No scheme: "http://" or "ws://"
	// prefixes are rejected with a hint. Required.
	// nginx: proxy_pass http://chat; or proxy_pass http://127.0.0.1:9001;
	ProxyPass string `toml:"proxy_pass"`

	// ConnectTimeout bounds the TCP connect to one backend. On expiry the
	// next backend is tried (see Upstream.MaxTries), then 504. Default
	// "60s", as nginx.
	// nginx: proxy_connect_timeout
	ConnectTimeout Duration `toml:"connect_timeout"`

	// HandshakeTimeout is how long a connected backend may take to answer
	// the upgrade request with its response head. Default "10s". nginx has
	// no separate setting (proxy_read_timeout covers it), which means a
	// stuck backend holds the client for an hour once read_timeout is
	// raised for WebSockets; a separate bound gives the client a fast 504.
	// nginx: (part of proxy_read_timeout)
	HandshakeTimeout Duration `toml:"handshake_timeout"`

	// ReadTimeout is the longest the tunnel may stay idle: the maximum time
	// between two successive reads from the backend, not a lifetime limit.
	// On expiry the tunnel is closed. Default "3600s": nginx's own default
	// is 60s, which closes every quiet WebSocket after a minute, and every
	// nginx WebSocket guide raises it to 3600s. Applications that need
	// longer idle tunnels should send pings.
	// nginx: proxy_read_timeout 3600s;
	ReadTimeout Duration `toml:"read_timeout"`

	// SendTimeout is the longest a write to either peer may stay blocked
	// without progress (the peer is not reading). On expiry the tunnel is
	// closed. Default "3600s", matching ReadTimeout.
	// nginx: proxy_send_timeout 3600s; (nginx applies it to the upstream
	// side only; sluice to both)
	SendTimeout Duration `toml:"send_timeout"`

	// BufferSize is the relay buffer for each direction of a tunnel, so a
	// tunnel in flight holds at most two of them. Between "1k" and "1m";
	// default "16k".
	// nginx: proxy_buffer_size (and proxy_buffers, which sluice does not need)
	BufferSize Size `toml:"buffer_size"`

	// Host is the Host header sent to the backend. Empty, the default,
	// forwards the client's Host unchanged; any other value is sent
	// literally (e.g. "backend.internal" or "127.0.0.1:9000").
	// nginx: proxy_set_header Host $host; (empty) or proxy_set_header Host value;
	Host string `toml:"host"`

	// Upstream is the group ProxyPass resolves to: the named group, or an
	// anonymous one built from the host:port list. Locations with the same
	// inline list share one anonymous group (and so one round-robin
	// position). Filled by Validate; not a TOML key.
	Upstream *Upstream `toml:"-"`
}

// Defaults, as documented on the fields above and spelled out in
// default.toml (a test keeps the two in agreement).
const (
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "console"
	DefaultErrorLog            = "stderr"
	DefaultAccessLog           = "stdout"
	DefaultMethod              = "round_robin"
	DefaultListen              = "127.0.0.1:8080"
	DefaultClientHeaderTimeout = Duration(10 * time.Second)
	DefaultMaxHeaderBytes      = Size(8 << 10)
	DefaultConnectTimeout      = Duration(60 * time.Second)
	DefaultHandshakeTimeout    = Duration(10 * time.Second)
	DefaultReadTimeout         = Duration(3600 * time.Second)
	DefaultSendTimeout         = Duration(3600 * time.Second)
	DefaultBufferSize          = Size(16 << 10)
)

// SetDefaults fills every unset (zero) field with its documented default.
// Parse and Apply call it; call it yourself only when building a Config by
// hand, before Validate.
func (c *Config) SetDefaults() {
	setString(&c.Log.Level, DefaultLogLevel)
	setString(&c.Log.Format, DefaultLogFormat)
	setString(&c.Log.ErrorLog, DefaultErrorLog)
	setString(&c.Log.AccessLog, DefaultAccessLog)
	for _, u := range c.Upstreams {
		if u != nil {
			setString(&u.Method, DefaultMethod)
		}
	}
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		setZero(&s.ClientHeaderTimeout, DefaultClientHeaderTimeout)
		setZero(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
		for _, l := range s.Locations {
			if l == nil {
				continue
			}
			setZero(&l.ConnectTimeout, DefaultConnectTimeout)
			setZero(&l.HandshakeTimeout, DefaultHandshakeTimeout)
			setZero(&l.ReadTimeout, DefaultReadTimeout)
			setZero(&l.SendTimeout, DefaultSendTimeout)
			setZero(&l.BufferSize, DefaultBufferSize)
		}
	}
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setZero[T Duration | Size](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}

// clone returns a deep copy of c, so that Apply never changes its argument.
// Upstream pointers in locations are re-pointed at the copies.
func (c *Config) clone() *Config {
	n := *c
	n.pos = c.pos.clone()
	copied := map[*Upstream]*Upstream{}
	cp := func(u *Upstream) *Upstream {
		if u == nil {
			return nil
		}
		if v, ok := copied[u]; ok {
			return v
		}
		v := *u
		v.Servers = append([]string(nil), u.Servers...)
		copied[u] = &v
		return &v
	}
	if c.Upstreams != nil {
		n.Upstreams = make(map[string]*Upstream, len(c.Upstreams))
		for k, u := range c.Upstreams {
			n.Upstreams[k] = cp(u)
		}
	}
	n.Servers = make([]*Server, len(c.Servers))
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		ns := *s
		ns.Listen = append([]string(nil), s.Listen...)
		ns.ServerName = append([]string(nil), s.ServerName...)
		ns.Locations = make([]*Location, len(s.Locations))
		for j, l := range s.Locations {
			if l == nil {
				continue
			}
			nl := *l
			nl.Upstream = cp(l.Upstream)
			ns.Locations[j] = &nl
		}
		n.Servers[i] = &ns
	}
	return &n
}
