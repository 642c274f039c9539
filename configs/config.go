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

	// MaxConnections caps the client connections the process holds at
	// once: heads being read plus live tunnels (each tunnel holds two file
	// descriptors). At the cap, every listener stops accepting: new
	// connections wait in the kernel's backlog (as with nginx and HAProxy)
	// and are taken as held ones end, so accept() never meets EMFILE and
	// the proxy keeps serving what it holds. 0, the default, derives it
	// from the soft RLIMIT_NOFILE: (limit - max(limit/10, 100)) / 2. A
	// value above that derived budget is lowered to it at start.
	// nginx: worker_connections (which counts upstream connections too)
	MaxConnections int `toml:"max_connections"`

	// DrainTimeout bounds a graceful shutdown (SIGTERM, SIGQUIT): new
	// connections are refused at once, handshakes in progress may finish,
	// and each tunnel is closed with a WebSocket close frame 1001 (Going
	// Away) to both sides as soon as it stands between two frames; past
	// DrainTimeout the rest are closed. Default "10s".
	// nginx: worker_shutdown_timeout
	DrainTimeout Duration `toml:"drain_timeout"`

	// ReloadDrainRemoved makes a reload close the tunnels whose upstream
	// server the new config no longer has (in the same group), each with a
	// WebSocket close 1001 (Going Away) between two frames, within
	// DrainTimeout; clients then reconnect to a server that is in the
	// config. Default false: such tunnels run on until they end.
	// nginx: (none; old workers keep their connections until
	// worker_shutdown_timeout)
	ReloadDrainRemoved bool `toml:"reload_drain_removed"`

	// PIDFile, when set, is where sluice writes its process ID once it
	// runs (removed at exit), for `sluice reload` and for init systems.
	// Default: none.
	// nginx: pid /run/nginx.pid;
	PIDFile string `toml:"pid_file"`

	// Admin is the operator's listener ([admin] table): metrics, status and
	// health. Off unless admin.listen is set.
	Admin Admin `toml:"admin"`

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

	// AccessLog is where one line per finished tunnel, refused handshake
	// and plain HTTP request goes: "stdout", "stderr", "off" or a file
	// path. Default "stdout". A line is written when the exchange ends;
	// bytes_in and bytes_out count what crossed the client's connection,
	// heads included (nginx's $request_length and $bytes_sent).
	// nginx: access_log (access_log off; disables it)
	AccessLog string `toml:"access_log"`
}

// Admin is the [admin] table.
type Admin struct {
	// Listen is the admin listener's "host:port", serving /metrics
	// (Prometheus text format), /status (JSON) and /healthz. Empty, the
	// default, means no admin listener. Keep it on loopback or a private
	// network: it needs no credentials and tells how the proxy is doing.
	// nginx: stub_status in a server listening on 127.0.0.1;
	// HAProxy: stats socket / a frontend with http-request use-service prometheus-exporter
	Listen string `toml:"listen"`
}

// Upstream is a named group of backends, the [upstream.NAME] table.
//
// A WebSocket tunnel lives for hours, so where it lands matters more than
// for a short request, and a backend that dies must stop getting new
// tunnels at once: hence the balancing methods, the per-server limits and
// the two kinds of health below. Balancing is per tunnel; a tunnel never
// moves once its 101 has reached the client.
type Upstream struct {
	// Name is the group's name: the NAME of [upstream.NAME], or, for an
	// anonymous group written inline in proxy_pass, the proxy_pass value
	// itself (e.g. "127.0.0.1:9001,127.0.0.1:9002"). Filled by Validate;
	// not a TOML key.
	Name string `toml:"-"`

	// Servers are the backends, each "host:port" (host may be a name, an
	// IPv4 address or a bracketed IPv6 address) followed, as in nginx, by
	// optional parameters separated by spaces:
	//
	//	weight=N        share relative to the others, 1 to 1000; default 1
	//	max_conns=N     at most N tunnels (live plus being set up); default 0, no cap
	//	max_fails=N     N failed attempts within fail_timeout make the server
	//	                unavailable for fail_timeout; default 1; 0 disables
	//	fail_timeout=T  that window and that pause; default 10s
	//	backup          gets tunnels only when no other server can take one
	//	                (not with ip_hash or hash, as in nginx)
	//	down            never gets tunnels
	//
	// e.g. "10.0.0.11:9000 weight=3 max_fails=2 fail_timeout=30s". A failed
	// attempt is a refused or timed-out connect, or an upgrade answer that
	// is not valid HTTP or a 101 with a wrong Sec-WebSocket-Accept; an
	// answer such as 403 or 503 is relayed to the client and is not a
	// failure (nginx's default, proxy_next_upstream error timeout
	// invalid_header). A name is resolved when sluice starts (every address
	// becomes a server; a name with IPv4 addresses uses only those) and
	// again every Resolve. At least one server is required, and at least
	// one that is not a backup.
	// nginx: server 10.0.0.11:9000 weight=3 max_fails=2 fail_timeout=30s;
	Servers []string `toml:"servers"`

	// Method chooses the backend of each new tunnel:
	//
	//	"round_robin"  nginx's smooth weighted round robin (the default)
	//	"least_conn"   fewest tunnels per unit of weight; ties in weighted
	//	               round-robin order (nginx: least_conn)
	//	"ip_hash"      a client network keeps its backend: the first three
	//	               octets of an IPv4 address, all of an IPv6 one, hashed
	//	               exactly as nginx does, so a mixed fleet agrees (nginx: ip_hash)
	//	"hash"         hash of HashKey, nginx's algorithm; with Consistent,
	//	               a ketama ring (nginx: hash $key [consistent])
	//	"random"       two backends drawn by weight, the less loaded wins
	//	               (nginx: random two least_conn)
	//
	// When the chosen backend is unavailable, ip_hash and hash move on as
	// nginx does (rehash, or the next point on the ring). Default
	// "round_robin".
	Method string `toml:"method"`

	// HashKey is what method "hash" hashes, in nginx variable syntax:
	// "$remote_addr" (client address), "$http_NAME" (a request header,
	// "_" for "-"), "$cookie_NAME", "$arg_NAME" (a query argument, raw),
	// or "$uri" (the path as sent, without the query). One variable only.
	// A request without the key (no such cookie) is balanced round robin.
	// Required with method "hash", refused with the others.
	// nginx: hash $cookie_session;
	HashKey string `toml:"hash_key"`

	// Consistent makes method "hash" use a consistent-hash ring (nginx's
	// ketama continuum: 160 points per unit of weight, crc32 of the server
	// address): adding or removing one of N backends moves about 1/N of
	// the keys instead of nearly all. The ring depends only on the server
	// list, so every sluice instance behind one L4 balancer, and every
	// restart, sends a key to the same backend. Default false.
	// nginx: hash $key consistent;
	Consistent bool `toml:"consistent"`

	// MaxTries is how many backends one handshake may try, moving to the
	// next one when a connect fails or times out, before the client gets
	// a 502 (or 504). 0, the default, means every server once. Nothing is
	// retried once the backend's 101 has reached the client.
	// nginx: proxy_next_upstream_tries (0 there means unlimited)
	MaxTries int `toml:"max_tries"`

	// NextUpstreamTimeout bounds the time, from the first connect attempt
	// of a handshake, after which no other backend is tried. It is checked
	// between attempts; each attempt is still bounded by connect_timeout.
	// "0", the default, means no bound beyond MaxTries.
	// nginx: proxy_next_upstream_timeout
	NextUpstreamTimeout Duration `toml:"next_upstream_timeout"`

	// Resolve is how often server names are looked up again; a change of
	// addresses applies to new tunnels at once, without a restart, and
	// tunnels already open are left alone. A failed lookup keeps the
	// previous addresses. Default "30s"; "0" resolves names once, at
	// start. No effect when every server is an IP address.
	// nginx: server backend:9000 resolve; with resolver ... valid=30s;
	Resolve *Duration `toml:"resolve"`

	// HealthCheck enables active health checks, the
	// [upstream.NAME.health_check] table. Without it only passive health
	// (max_fails, fail_timeout) applies.
	// nginx: health_check (nginx Plus only)
	HealthCheck *HealthCheck `toml:"health_check"`

	// ServerSpecs are Servers parsed: address and parameters, with every
	// default filled in. Filled by Validate; not a TOML key.
	ServerSpecs []ServerSpec `toml:"-"`
}

// Specs returns the servers parsed, every default filled in:
// ServerSpecs, or for an anonymous group (built by Validate from a
// proxy_pass list, which has no parameters) one default spec per server.
func (u *Upstream) Specs() []ServerSpec {
	if u.ServerSpecs != nil {
		return u.ServerSpecs
	}
	out := make([]ServerSpec, 0, len(u.Servers))
	for _, s := range u.Servers {
		if spec, msg := parseServerSpec(s); msg == "" {
			out = append(out, spec)
		}
	}
	return out
}

// ResolveEvery returns Resolve, or DefaultResolve when it is unset (an
// anonymous group).
func (u *Upstream) ResolveEvery() Duration {
	if u.Resolve == nil {
		return DefaultResolve
	}
	return *u.Resolve
}

// ServerSpec is one entry of Upstream.Servers, parsed. See Servers for
// what each field means.
type ServerSpec struct {
	Address     string // "host:port", host lowercased
	Weight      int
	MaxConns    int
	MaxFails    int
	FailTimeout Duration
	Backup      bool
	Down        bool
}

// HealthCheck is the [upstream.NAME.health_check] table: every server of
// the group (except those marked down) is checked on an interval from a
// goroutine of the group, never from a tunnel's path. A server that fails
// Fall checks in a row gets no new tunnels, and its open tunnels are left
// alone; after Rise passing checks in a row it gets tunnels again.
// Servers start healthy. If every server of a group is unhealthy, new
// tunnels get 502 "no live upstreams".
type HealthCheck struct {
	// Type is "websocket" (the default) or "http". A websocket check is a
	// real client: it connects, sends an upgrade to Path with a fresh
	// key, requires a 101 whose Sec-WebSocket-Accept matches, exchanges a
	// ping (see Ping), sends a close 1000 and waits for the server's
	// close. An http check sends GET Path and requires a status in
	// ExpectStatus.
	// nginx: health_check type=... (nginx Plus; it has no WebSocket type)
	Type string `toml:"type"`

	// Path is the request target of each check, e.g. "/ws/health".
	// Default "/".
	// nginx: health_check uri=/ws/health;
	Path string `toml:"path"`

	// Host is the Host header of each check. Default "": the server's
	// "ip:port".
	// nginx: proxy_set_header Host, as applied to health checks
	Host string `toml:"host"`

	// Interval between two checks of a server. Default "5s".
	// nginx: health_check interval=5s;
	Interval Duration `toml:"interval"`

	// Timeout bounds a whole check, connect to close. Default "2s".
	// nginx: health_check's use of proxy_connect_timeout/proxy_read_timeout
	Timeout Duration `toml:"timeout"`

	// Rise is the passing checks in a row that make an unhealthy server
	// healthy. Default 2.
	// nginx: health_check passes=2;
	Rise int `toml:"rise"`

	// Fall is the failed checks in a row that make a server unhealthy.
	// Default 3.
	// nginx: health_check fails=3;
	Fall int `toml:"fall"`

	// Ping makes a websocket check send a ping and require the pong with
	// the same payload before it closes. Default true; websocket checks
	// only.
	// nginx: (none)
	Ping *bool `toml:"ping"`

	// ExpectStatus are the statuses an http check accepts: codes and
	// ranges separated by commas, e.g. "200", "200-299,304". Default
	// "200-399" (any 2xx or 3xx); http checks only.
	// nginx: match { status 200-399; }
	ExpectStatus string `toml:"expect_status"`

	// Expect is ExpectStatus parsed. Filled by Validate; not a TOML key.
	Expect []StatusRange `toml:"-"`
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

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

	// Allow and Deny are client addresses ("10.0.0.1"), CIDRs
	// ("10.0.0.0/8", "2001:db8::/32") or "all". An address no entry matches
	// is allowed; otherwise the most specific entry decides, deny winning a
	// tie, which gives the verdicts of the nginx list written in its usual
	// order (specific exceptions first, "deny all" last). A refused client
	// gets 403 before any upstream is dialed. Checked against the real
	// client address (see RealIPFrom). IPv4-mapped IPv6 addresses match
	// IPv4 entries. Default: empty, everyone allowed.
	// nginx: allow 10.0.0.0/8; deny all;
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`

	// RealIPFrom are the addresses or CIDRs of trusted proxies (load
	// balancers) in front of sluice. Only from them is RealIPHeader
	// believed; anyone else's X-Forwarded-For or PROXY header is ignored,
	// since a client could otherwise choose the address every allow/deny
	// and limit sees. Default: empty, nobody trusted.
	// nginx: set_real_ip_from 10.0.0.0/8;
	RealIPFrom []string `toml:"real_ip_from"`

	// RealIPHeader says where a trusted proxy puts the client address:
	// "X-Forwarded-For" (the default; read from the right, skipping
	// trusted addresses, nginx's real_ip_recursive on) or "proxy_protocol"
	// (the PROXY header's source; needs ProxyProtocol).
	// nginx: real_ip_header X-Forwarded-For; real_ip_recursive on;
	RealIPHeader string `toml:"real_ip_header"`

	// ProxyProtocol makes every listen address of this server require a
	// PROXY protocol header (v1 or v2) before the request; a connection
	// without one gets 400. Servers sharing an address must agree. Its
	// address is believed only from RealIPFrom peers with real_ip_header =
	// "proxy_protocol". Default false.
	// nginx: listen 8080 proxy_protocol;
	ProxyProtocol bool `toml:"proxy_protocol"`

	// LimitConn is the most connections one client address may hold at
	// once: live tunnels plus handshakes in progress. 0, the default, is no
	// limit. The next one gets LimitConnStatus.
	// nginx: limit_conn_zone $binary_remote_addr zone=addr:10m; limit_conn addr 10;
	LimitConn int `toml:"limit_conn"`

	// LimitConnStatus is the status a client over LimitConn gets: 503 (the
	// default, as nginx) or 429.
	// nginx: limit_conn_status
	LimitConnStatus int `toml:"limit_conn_status"`

	// LimitReq limits handshakes per client address, the table
	// { rate = "10r/s", burst = 20 }. Default: none.
	// nginx: limit_req_zone $binary_remote_addr zone=req:10m rate=10r/s;
	// limit_req zone=req burst=20 nodelay;
	LimitReq *LimitReq `toml:"limit_req"`

	// LimitReqStatus is the status a client over LimitReq gets, with a
	// Retry-After header: 429 (the default) or 503 (nginx's default).
	// nginx: limit_req_status 429;
	LimitReqStatus int `toml:"limit_req_status"`

	// TLS makes every listen address of this server a TLS listener, the
	// [server.tls] table (see ServerTLS). Default: none, plaintext.
	// nginx: listen 443 ssl; ssl_certificate ...; ssl_certificate_key ...;
	TLS *ServerTLS `toml:"tls"`

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

	// ProxyPass says where to send requests: the name of an
	// [upstream.NAME] group, or "host:port", or "host:port,host:port"
	// (an anonymous round-robin group with every default of Upstream).
	// No scheme for plaintext backends: "http://" or "ws://" prefixes are
	// rejected with a hint. "wss://" or "https://" (the two mean the same)
	// before any of these forms makes every backend of the group TLS; see
	// UpstreamTLS. Required unless Root is set.
	//
	// WebSocket upgrades become verified tunnels; any other request is
	// proxied as plain HTTP/1.1 over a keep-alive pool per backend, with
	// the same forwarding headers, hop-by-hop headers (and any Upgrade)
	// removed, bodies streamed both ways, and the same timeouts
	// (connect_timeout; read_timeout between two reads of the answer;
	// send_timeout between two writes).
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

	// Root makes this a static location: files are served from the
	// directory Root (relative to the config file's directory), the request
	// path appended to it as nginx's root does ("/app/x.js" with root
	// "/srv/www" is "/srv/www/app/x.js"). A location either serves files
	// (Root) or proxies (ProxyPass). Paths are percent-decoded and resolved
	// first; nothing outside Root is ever served: a ".." above it, a NUL or a
	// backslash is 403, and a symlink leading out of it is 403 (symlinks
	// that stay inside are followed). Directory listings are never served.
	// A missing directory is logged at start and answered 404, as nginx.
	// nginx: root /srv/www;
	Root string `toml:"root"`

	// Index are the files served for a request that names a directory, the
	// first one that exists. Default ["index.html"].
	// nginx: index index.html;
	Index []string `toml:"index"`

	// TryFiles is nginx's try_files: each entry is tried in order, the
	// first that exists is served. "$uri" is the file at the request path,
	// "$uri/" the directory there (its index file; without a trailing slash
	// in the request, a 301 that adds it), "/path" a file of Root served
	// instead (the single-page-app fallback, "/index.html"), and "=NNN",
	// last only, answers that status. Default ["$uri", "$uri/"] (then 404).
	// nginx: try_files $uri $uri/ /index.html;
	TryFiles []string `toml:"try_files"`

	// Compress sends text files (HTML, CSS, JavaScript, JSON, SVG, XML,
	// plain text; 256 bytes or more) brotli- or gzip-compressed to clients
	// that accept it, brotli preferred. Compressed copies are kept in
	// memory (bounded), never written next to the files. Default true.
	// nginx: gzip on; gzip_types ...; (brotli needs a third-party module)
	Compress *bool `toml:"compress"`

	// Origins are the browser origins allowed to open a WebSocket here:
	// "https://chat.example.com", "https://*.example.com" (one or more
	// labels), "http://localhost:8080", or "null" (opaque origins; refused
	// unless listed). Compared as RFC 6454 origins: scheme and host
	// case-insensitively, default ports elided, nothing else forgiven ("a
	// trailing dot is another host"). A refused Origin gets 403 before any
	// upstream is dialed: the defence against cross-site WebSocket
	// hijacking (RFC 6455 section 10.2). Default: empty, any Origin.
	// nginx: (none; a map on $http_origin and an if)
	Origins []string `toml:"origins"`

	// SameOrigin also allows an Origin whose host and port are the
	// request's Host header. Default false.
	// nginx: (none)
	SameOrigin bool `toml:"same_origin"`

	// OriginMissing is what happens to a handshake without an Origin
	// header, once Origins or SameOrigin restrict origins: "allow" (the
	// default; non-browser clients send none) or "deny". Browsers always
	// send Origin on a WebSocket handshake.
	// nginx: (none)
	OriginMissing string `toml:"origin_missing"`

	// Allow and Deny replace the server's lists for this location (see
	// Server.Allow); the server's lists are checked first.
	// nginx: allow/deny inside location { }
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`

	// LimitConn, when set, replaces the server's limit_conn for this
	// location, with its own count per client address; 0 turns it off.
	// nginx: limit_conn inside location { }
	LimitConn *int `toml:"limit_conn"`

	// LimitReq, when set, replaces the server's limit_req for this
	// location, with its own buckets.
	// nginx: limit_req inside location { }
	LimitReq *LimitReq `toml:"limit_req"`

	// UpstreamTLS configures TLS to the backends (see UpstreamTLS). It
	// needs a "wss://" or "https://" proxy_pass; with such a proxy_pass
	// and no table, every default of UpstreamTLS applies.
	// nginx: proxy_ssl_* directives
	UpstreamTLS *UpstreamTLS `toml:"upstream_tls"`

	// Upstream is the group ProxyPass resolves to: the named group, or an
	// anonymous one built from the host:port list. Locations with the same
	// inline list share one anonymous group (and so one round-robin
	// position). Filled by Validate; not a TOML key.
	Upstream *Upstream `toml:"-"`
}

// LimitReq is a limit_req table: nginx's leaky bucket per client address.
type LimitReq struct {
	// Rate is the sustained rate, "Nr/s" or "Nr/m". Required.
	// nginx: limit_req_zone ... rate=10r/s;
	Rate string `toml:"rate"`

	// Burst is how many handshakes beyond the rate are served at once
	// before refusals start (burst = 20 admits 21 at once). Default 0.
	// nginx: limit_req ... burst=20;
	Burst int `toml:"burst"`

	// NoDelay must be true or left out: excess handshakes within the burst
	// are served at once. nginx's delaying mode (nodelay off) would hold a
	// connection inside an event loop and is not supported yet.
	// nginx: limit_req ... nodelay;
	NoDelay *bool `toml:"nodelay"`
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
	DefaultRealIPHeader        = "X-Forwarded-For"
	DefaultLimitConnStatus     = 503
	DefaultLimitReqStatus      = 429
	DefaultOriginMissing       = "allow"
	DefaultIndex               = "index.html"
	DefaultDrainTimeout        = Duration(10 * time.Second)

	DefaultWeight        = 1
	DefaultMaxFails      = 1
	DefaultFailTimeout   = Duration(10 * time.Second)
	DefaultResolve       = Duration(30 * time.Second)
	DefaultCheckType     = "websocket"
	DefaultCheckPath     = "/"
	DefaultCheckInterval = Duration(5 * time.Second)
	DefaultCheckTimeout  = Duration(2 * time.Second)
	DefaultRise          = 2
	DefaultFall          = 3
	DefaultExpectStatus  = "200-399"
)

// SetDefaults fills every unset (zero) field with its documented default.
// Parse and Apply call it; call it yourself only when building a Config by
// hand, before Validate.
func (c *Config) SetDefaults() {
	setString(&c.Log.Level, DefaultLogLevel)
	setString(&c.Log.Format, DefaultLogFormat)
	setString(&c.Log.ErrorLog, DefaultErrorLog)
	setString(&c.Log.AccessLog, DefaultAccessLog)
	setZero(&c.DrainTimeout, DefaultDrainTimeout)
	for _, u := range c.Upstreams {
		if u != nil {
			u.setDefaults()
		}
	}
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		setZero(&s.ClientHeaderTimeout, DefaultClientHeaderTimeout)
		setZero(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
		setString(&s.RealIPHeader, DefaultRealIPHeader)
		if s.LimitConnStatus == 0 {
			s.LimitConnStatus = DefaultLimitConnStatus
		}
		if s.LimitReqStatus == 0 {
			s.LimitReqStatus = DefaultLimitReqStatus
		}
		for _, l := range s.Locations {
			if l == nil {
				continue
			}
			setZero(&l.ConnectTimeout, DefaultConnectTimeout)
			setZero(&l.HandshakeTimeout, DefaultHandshakeTimeout)
			setZero(&l.ReadTimeout, DefaultReadTimeout)
			setZero(&l.SendTimeout, DefaultSendTimeout)
			setZero(&l.BufferSize, DefaultBufferSize)
			setString(&l.OriginMissing, DefaultOriginMissing)
			if l.Root != "" {
				if len(l.Index) == 0 {
					l.Index = []string{DefaultIndex}
				}
				if l.Compress == nil {
					on := true
					l.Compress = &on
				}
			}
		}
	}
}

func (u *Upstream) setDefaults() {
	setString(&u.Method, DefaultMethod)
	if u.Resolve == nil {
		d := DefaultResolve
		u.Resolve = &d
	}
	if h := u.HealthCheck; h != nil {
		setString(&h.Type, DefaultCheckType)
		setString(&h.Path, DefaultCheckPath)
		setZero(&h.Interval, DefaultCheckInterval)
		setZero(&h.Timeout, DefaultCheckTimeout)
		if h.Rise == 0 {
			h.Rise = DefaultRise
		}
		if h.Fall == 0 {
			h.Fall = DefaultFall
		}
		switch h.Type {
		case "websocket":
			if h.Ping == nil {
				on := true
				h.Ping = &on
			}
		case "http":
			setString(&h.ExpectStatus, DefaultExpectStatus)
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
		v.ServerSpecs = append([]ServerSpec(nil), u.ServerSpecs...)
		if u.Resolve != nil {
			r := *u.Resolve
			v.Resolve = &r
		}
		if h := u.HealthCheck; h != nil {
			nh := *h
			if h.Ping != nil {
				p := *h.Ping
				nh.Ping = &p
			}
			nh.Expect = append([]StatusRange(nil), h.Expect...)
			v.HealthCheck = &nh
		}
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
		ns.Allow = append([]string(nil), s.Allow...)
		ns.Deny = append([]string(nil), s.Deny...)
		ns.RealIPFrom = append([]string(nil), s.RealIPFrom...)
		ns.LimitReq = s.LimitReq.clone()
		ns.TLS = s.TLS.clone()
		ns.Locations = make([]*Location, len(s.Locations))
		for j, l := range s.Locations {
			if l == nil {
				continue
			}
			nl := *l
			nl.Upstream = cp(l.Upstream)
			nl.Origins = append([]string(nil), l.Origins...)
			nl.Allow = append([]string(nil), l.Allow...)
			nl.Deny = append([]string(nil), l.Deny...)
			nl.LimitReq = l.LimitReq.clone()
			if l.LimitConn != nil {
				n := *l.LimitConn
				nl.LimitConn = &n
			}
			nl.UpstreamTLS = l.UpstreamTLS.clone()
			nl.Index = append([]string(nil), l.Index...)
			nl.TryFiles = append([]string(nil), l.TryFiles...)
			if l.Compress != nil {
				b := *l.Compress
				nl.Compress = &b
			}
			ns.Locations[j] = &nl
		}
		n.Servers[i] = &ns
	}
	return &n
}

func (r *LimitReq) clone() *LimitReq {
	if r == nil {
		return nil
	}
	n := *r
	if r.NoDelay != nil {
		b := *r.NoDelay
		n.NoDelay = &b
	}
	return &n
}
