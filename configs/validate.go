package configs

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Limits on sizes. Below 1k a WebSocket upgrade request (with cookies and
// an Authorization header) does not fit, and a relay buffer that small
// turns every frame into several syscalls; above 1m a single tunnel or a
// single slow request head pins more memory than a proxy meant to hold
// tens of thousands of them should give it.
const (
	MinSize Size = 1 << 10
	MaxSize Size = 1 << 20
)

// Validate checks the rules that span keys and values, and resolves every
// Location.Upstream (filling Upstream.Name on the way). It assumes
// SetDefaults has run: a zero timeout or size is an error here.
//
// It reports every problem it finds, up to a cap, each located at the key to
// blame when the config came from a file. It lowercases server_name entries
// (matching is case-insensitive, and the engine then compares bytes).
// Validate is idempotent; Parse and Apply call it.
func (c *Config) Validate() error {
	l := &errorList{file: c.file, pos: c.pos}
	c.validateLog(l)
	c.validateAdmin(l)
	if c.DrainTimeout < 0 {
		l.add("drain_timeout", "must be > 0")
	}
	if c.Workers < 0 {
		l.add("workers", "must be 0 (one per CPU) or more, got %d", c.Workers)
	}
	c.validateUpstreams(l)
	if len(c.Servers) == 0 {
		l.add("server", "no [[server]] defined: at least one is required")
	}
	anon := map[string]*Upstream{} // shared anonymous groups, by normalized list
	for i, s := range c.Servers {
		path := "server[" + strconv.Itoa(i) + "]"
		if s == nil {
			l.add(path, "empty server")
			continue
		}
		c.validateServer(l, path, s, anon)
	}
	c.validateSharedListen(l)
	c.validateProxyProtocol(l)
	if c.MaxConnections < 0 {
		l.add("max_connections", "must be 0 (derived from the fd limit) or more, got %d", c.MaxConnections)
	}
	c.validateTLS(l)
	return l.err()
}

func (c *Config) validateLog(l *errorList) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		l.add("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		l.add("log.format", "unknown format %q (want console or json)", c.Log.Format)
	}
	if c.Log.ErrorLog == "" || c.Log.ErrorLog == "off" {
		// nginx has no "error_log off" either; there must be somewhere
		// to say why sluice stopped.
		l.add("log.error_log", "want \"stderr\", \"stdout\" or a file path")
	}
	if c.Log.AccessLog == "" {
		l.add("log.access_log", "want \"stdout\", \"stderr\", \"off\" or a file path")
	}
}

func (c *Config) validateUpstreams(l *errorList) {
	for _, name := range c.upstreamNames() {
		u := c.Upstreams[name]
		path := "upstream." + name
		if u == nil {
			l.add(path, "empty upstream")
			continue
		}
		u.Name = name
		// A name that could be read as an address would make proxy_pass
		// ambiguous, so names are plain words.
		if !isWord(name) {
			l.add(path, "invalid upstream name %q: use letters, digits, \"-\", \"_\" and \".\"", name)
		}
		if len(u.Servers) == 0 {
			l.add(path+".servers", "no servers: an upstream needs at least one \"host:port\"")
		}
		hashing := u.Method == "ip_hash" || u.Method == "hash"
		u.ServerSpecs = u.ServerSpecs[:0]
		primary := false
		for j, s := range u.Servers {
			sp := path + ".servers[" + strconv.Itoa(j) + "]"
			spec, msg := parseServerSpec(s)
			if msg != "" {
				l.add(sp, "%s", msg)
				continue
			}
			if spec.Backup && hashing {
				// nginx refuses it too: a backup has no place in the
				// key space of a hash.
				l.add(sp, "backup cannot be used with method %q (nginx refuses it too); use round_robin, least_conn or random", u.Method)
			}
			primary = primary || !spec.Backup
			u.ServerSpecs = append(u.ServerSpecs, spec)
		}
		if len(u.ServerSpecs) == len(u.Servers) && len(u.Servers) > 0 && !primary {
			l.add(path+".servers", "every server is a backup: at least one must not be")
		}
		if len(u.ServerSpecs) == 0 {
			u.ServerSpecs = nil
		}
		switch u.Method {
		case "round_robin", "least_conn", "ip_hash", "random":
			if u.HashKey != "" {
				l.add(path+".hash_key", "only method \"hash\" uses a hash_key (method is %q)", u.Method)
			}
		case "hash":
			if u.HashKey == "" {
				l.add(path+".method", "method \"hash\" needs a hash_key, e.g. hash_key = \"$cookie_session\" or \"$remote_addr\"")
			} else if msg := checkHashKey(u.HashKey); msg != "" {
				l.add(path+".hash_key", "%s", msg)
			}
		default:
			l.add(path+".method", "unknown method %q (want round_robin, least_conn, ip_hash, hash or random)", u.Method)
		}
		if u.Consistent && u.Method != "hash" {
			l.add(path+".consistent", "only method \"hash\" can be consistent (method is %q)", u.Method)
		}
		if u.MaxTries < 0 {
			l.add(path+".max_tries", "must be 0 (every server once) or more, got %d", u.MaxTries)
		}
		if u.HealthCheck != nil {
			validateHealthCheck(l, path+".health_check", u.HealthCheck)
		}
	}
}

// parseServerSpec reads one servers entry: "host:port" then nginx-style
// parameters. It returns the spec with defaults filled, or a message.
func parseServerSpec(s string) (ServerSpec, string) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return ServerSpec{}, "empty server: want \"host:port\" and optional parameters"
	}
	addr, msg := checkHostPort(fields[0], true)
	if msg != "" {
		return ServerSpec{}, msg
	}
	spec := ServerSpec{Address: addr, Weight: DefaultWeight, MaxFails: DefaultMaxFails, FailTimeout: DefaultFailTimeout}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, val, hasVal := strings.Cut(f, "=")
		if seen[key] {
			return ServerSpec{}, fmt.Sprintf("parameter %q given twice", key)
		}
		seen[key] = true
		num := func(lo, hi int) (int, string) {
			n, err := strconv.Atoi(val)
			if !hasVal || !isDigits(val) || err != nil || n < lo || n > hi {
				return 0, fmt.Sprintf("invalid %s %q: want %s=N with N from %d to %d", key, f, key, lo, hi)
			}
			return n, ""
		}
		switch key {
		case "weight":
			spec.Weight, msg = num(1, 1000)
		case "max_conns":
			spec.MaxConns, msg = num(0, 1<<30)
		case "max_fails":
			spec.MaxFails, msg = num(0, 1<<30)
		case "fail_timeout":
			d, err := ParseDuration(val)
			switch {
			case !hasVal:
				msg = fmt.Sprintf("invalid %q: want fail_timeout=T, e.g. fail_timeout=30s", f)
			case err != nil:
				msg = fmt.Sprintf("fail_timeout: %v", err)
			case d <= 0:
				msg = "fail_timeout must be > 0"
			}
			spec.FailTimeout = d
		case "backup", "down":
			if hasVal {
				msg = fmt.Sprintf("%q takes no value: write %q", f, key)
			}
			spec.Backup = spec.Backup || key == "backup"
			spec.Down = spec.Down || key == "down"
		default:
			msg = fmt.Sprintf("unknown parameter %q (want weight=, max_conns=, max_fails=, fail_timeout=, backup or down)", key)
		}
		if msg != "" {
			return ServerSpec{}, msg
		}
	}
	return spec, ""
}

// checkHashKey accepts the hash_key forms of Upstream.HashKey (the same
// grammar as upstream.ParseHashKey, which the engine uses).
func checkHashKey(k string) string {
	switch k {
	case "$remote_addr", "$uri", "$request_uri", "$document_uri":
		return ""
	}
	for _, p := range []string{"$http_", "$cookie_", "$arg_"} {
		if name, ok := strings.CutPrefix(k, p); ok {
			if !isWord(name) {
				return fmt.Sprintf("invalid hash_key %q: the name after %q must be letters, digits, \"-\", \"_\" or \".\"", k, p)
			}
			return ""
		}
	}
	return fmt.Sprintf("invalid hash_key %q: want one of $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME, $uri", k)
}

func validateHealthCheck(l *errorList, path string, h *HealthCheck) {
	switch h.Type {
	case "websocket":
		if h.ExpectStatus != "" {
			l.add(path+".expect_status", "expect_status applies to type = \"http\" only (a websocket check requires a 101)")
		}
	case "http":
		if h.Ping != nil && *h.Ping {
			l.add(path+".ping", "ping applies to type = \"websocket\" only")
		}
	default:
		l.add(path+".type", "unknown type %q (want \"websocket\" or \"http\")", h.Type)
	}
	if msg := checkTarget(h.Path); msg != "" {
		l.add(path+".path", "%s", msg)
	}
	if h.Host != "" && !isHostHeader(h.Host) {
		l.add(path+".host", "invalid host %q: want a name or \"name:port\"", h.Host)
	}
	if h.Interval <= 0 {
		l.add(path+".interval", "must be > 0")
	}
	if h.Timeout <= 0 {
		l.add(path+".timeout", "must be > 0")
	}
	if h.Rise < 1 {
		l.add(path+".rise", "must be 1 or more, got %d", h.Rise)
	}
	if h.Fall < 1 {
		l.add(path+".fall", "must be 1 or more, got %d", h.Fall)
	}
	h.Expect = nil
	if h.Type == "http" {
		rs, msg := parseStatusRanges(h.ExpectStatus)
		if msg != "" {
			l.add(path+".expect_status", "%s", msg)
		}
		h.Expect = rs
	}
}

// checkTarget accepts an origin-form request target: "/" then visible
// ASCII, a query allowed. The value goes into the check's request line
// verbatim, so a space or CR/LF in it would break or inject the request.
func checkTarget(p string) string {
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("%q must start with \"/\"", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return fmt.Sprintf("%q: a request target cannot contain spaces, control characters or \"#\"", p)
		}
	}
	return ""
}

// parseStatusRanges reads "200-399" or "200,204,300-399".
func parseStatusRanges(s string) ([]StatusRange, string) {
	var out []StatusRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
			return nil, fmt.Sprintf("invalid expect_status %q: want codes or ranges from 100 to 599, e.g. \"200-399\" or \"200,204\"", s)
		}
		out = append(out, StatusRange{a, b})
	}
	return out, ""
}

func (c *Config) upstreamNames() []string {
	names := make([]string, 0, len(c.Upstreams))
	for n := range c.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// validateAdmin checks the [admin] table.
func (c *Config) validateAdmin(l *errorList) {
	if c.Admin.Listen == "" {
		return
	}
	norm, msg := checkHostPort(c.Admin.Listen, false)
	if msg != "" {
		l.add("admin.listen", "%s", msg)
		return
	}
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		for _, a := range s.Listen {
			if n, _ := checkHostPort(a, false); n == norm {
				l.add("admin.listen", "%q is also a server's listen address: give the admin listener its own port", c.Admin.Listen)
				return
			}
		}
	}
}

func (c *Config) validateServer(l *errorList, path string, s *Server, anon map[string]*Upstream) {
	if len(s.Listen) == 0 {
		l.add(path+".listen", "at least one listen address is required, e.g. listen = [\"127.0.0.1:8080\"]")
	}
	seen := map[string]bool{}
	for j, a := range s.Listen {
		p := path + ".listen[" + strconv.Itoa(j) + "]"
		norm, msg := checkHostPort(a, false)
		switch {
		case msg != "":
			l.add(p, "%s", msg)
		case seen[norm]:
			l.add(p, "%q is listed twice", a)
		}
		seen[norm] = true
	}
	for j, n := range s.ServerName {
		s.ServerName[j] = strings.ToLower(n)
		if msg := checkServerName(s.ServerName[j]); msg != "" {
			l.add(path+".server_name["+strconv.Itoa(j)+"]", "%s", msg)
		}
	}
	if s.ClientHeaderTimeout <= 0 {
		l.add(path+".client_header_timeout", "must be > 0")
	}
	checkSize(l, path+".max_header_bytes", s.MaxHeaderBytes)
	validateAccess(l, path, s)

	if len(s.Locations) == 0 {
		l.add(path+".location", "no [[server.location]] defined: a server needs at least one")
	}
	paths := map[string]string{} // location path → key path of its first definition
	for j, loc := range s.Locations {
		lp := path + ".location[" + strconv.Itoa(j) + "]"
		if loc == nil {
			l.add(lp, "empty location")
			continue
		}
		switch msg := checkLocationPath(loc.Path); {
		case msg != "":
			l.add(lp+".path", "%s", msg)
		case paths[loc.Path] != "":
			first := paths[loc.Path]
			where := first
			if p := l.pos.find(first + ".path"); p.line > 0 {
				where = "line " + strconv.Itoa(p.line)
			}
			l.add(lp+".path", "duplicate location path %q (first defined at %s)", loc.Path, where)
		default:
			paths[loc.Path] = lp
		}
		switch {
		case loc.Root != "" && strings.TrimSpace(loc.ProxyPass) != "":
			l.add(lp+".root", "a location serves files (root) or proxies (proxy_pass), not both: split it into two locations")
		case loc.Root != "":
			validateStatic(l, lp, loc)
		default:
			c.resolve(l, lp+".proxy_pass", loc, anon)
		}
		for _, t := range []struct {
			key string
			d   Duration
		}{
			{"connect_timeout", loc.ConnectTimeout},
			{"handshake_timeout", loc.HandshakeTimeout},
			{"read_timeout", loc.ReadTimeout},
			{"send_timeout", loc.SendTimeout},
		} {
			if t.d <= 0 {
				l.add(lp+"."+t.key, "must be > 0")
			}
		}
		checkSize(l, lp+".buffer_size", loc.BufferSize)
		if loc.Host != "" && !isHostHeader(loc.Host) {
			l.add(lp+".host", "invalid host %q: want a name or \"name:port\" (no scheme, spaces or control characters)", loc.Host)
		}
	}
}

// resolve sets loc.Upstream from loc.ProxyPass: a defined group name wins;
// otherwise the value must be a host:port list, which becomes an anonymous
// round-robin group shared by every location spelling the same list.
func (c *Config) resolve(l *errorList, path string, loc *Location, anon map[string]*Upstream) {
	loc.Upstream = nil
	pp, _ := cutTLSScheme(strings.TrimSpace(loc.ProxyPass))
	if pp == "" {
		l.add(path, "missing: name an [upstream.NAME], give \"host:port\", or serve files with root = \"DIR\"")
		return
	}
	if u := c.Upstreams[pp]; u != nil {
		loc.Upstream = u
		return
	}
	if !strings.ContainsAny(pp, ":,") {
		if len(c.Upstreams) == 0 {
			l.add(path, "no upstream named %q (no [upstream.NAME] is defined; for a single backend write \"host:port\")", pp)
		} else {
			l.add(path, "no upstream named %q (defined: %s)", pp, strings.Join(c.upstreamNames(), ", "))
		}
		return
	}
	var servers []string
	for _, s := range strings.Split(pp, ",") {
		norm, msg := checkHostPort(strings.TrimSpace(s), true)
		if msg != "" {
			l.add(path, "%s", msg)
			return
		}
		servers = append(servers, norm)
	}
	name := strings.Join(servers, ",")
	u := anon[name]
	if u == nil {
		// Only what the list says: Specs and ResolveEvery supply the
		// defaults of everything else.
		u = &Upstream{Name: name, Servers: servers, Method: DefaultMethod}
		anon[name] = u
	}
	loc.Upstream = u
}

// validateSharedListen enforces what nginx calls "a duplicate default
// server": two servers on one address must be told apart by the Host
// header, so their server_name lists must not overlap. Two servers without
// server_name would both be the catch-all; one catch-all beside named
// servers is fine (it gets the requests they do not claim).
func (c *Config) validateSharedListen(l *errorList) {
	type owner struct {
		server int
		names  []string
	}
	byAddr := map[string][]owner{}
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		done := map[string]bool{}
		for j, a := range s.Listen {
			norm, msg := checkHostPort(a, false)
			if msg != "" || done[norm] {
				continue
			}
			done[norm] = true
			for _, o := range byAddr[norm] {
				if shared, ok := overlap(o.names, s.ServerName); ok {
					why := "neither has a server_name"
					if shared != "" {
						why = fmt.Sprintf("both claim server_name %q", shared)
					}
					l.add(fmt.Sprintf("server[%d].listen[%d]", i, j), "%q is also a listen address of server[%d] and %s: a request could not tell them apart", a, o.server, why)
					break
				}
			}
			byAddr[norm] = append(byAddr[norm], owner{i, s.ServerName})
		}
	}
}

// overlap reports whether two server_name lists could both claim a request:
// both empty (two catch-alls) or a name in common.
func overlap(a, b []string) (string, bool) {
	if len(a) == 0 && len(b) == 0 {
		return "", true
	}
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) {
				return x, true
			}
		}
	}
	return "", false
}

func checkSize(l *errorList, path string, s Size) {
	if s < MinSize || s > MaxSize {
		l.add(path, "%s is out of range (want 1k to 1m)", s)
	}
}

// checkHostPort checks a "host:port" address and returns it normalized
// (lowercase host, canonical port) or a message saying what is wrong.
// Nothing is resolved: DNS at load time would make a config valid or not
// depending on the network, and nginx's habit of resolving proxy_pass hosts
// once at startup is a known trap. needHost rejects ":port" (fine for
// listen, meaning every interface; meaningless for a backend).
func checkHostPort(s string, needHost bool) (string, string) {
	if i := strings.Index(s, "://"); i >= 0 {
		fix := strings.TrimSuffix(s[i+3:], "/")
		return "", fmt.Sprintf("%q: drop the %q scheme: write %q", s, s[:i+3], fix)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if isDigits(s) {
			return "", fmt.Sprintf("invalid address %q: want \"host:port\", e.g. \"127.0.0.1:%s\" (or \":%s\" for every interface)", s, s, s)
		}
		return "", fmt.Sprintf("invalid address %q: want \"host:port\", e.g. \"127.0.0.1:8080\"", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || !isDigits(port) || n < 1 || n > 65535 {
		return "", fmt.Sprintf("invalid port in %q: want a number from 1 to 65535", s)
	}
	if host == "" && needHost {
		return "", fmt.Sprintf("missing host in %q", s)
	}
	if host != "" && !isHostChars(host) {
		return "", fmt.Sprintf("invalid host in %q", s)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(n)), ""
}

// checkServerName accepts "example.com" and "*.example.com" (lowercase).
func checkServerName(n string) string {
	name := strings.TrimPrefix(n, "*.")
	switch {
	case n == "":
		return "empty server name"
	case strings.HasPrefix(n, "."):
		// nginx's ".example.com" means both forms; say so instead of
		// silently matching only one of them.
		return fmt.Sprintf("%q: write both %q and %q", n, n[1:], "*"+n)
	case strings.Contains(n, ":"):
		return fmt.Sprintf("%q: server names have no port (the port is matched by listen)", n)
	case strings.HasPrefix(n, "~"):
		return fmt.Sprintf("%q: regular expression server names are not supported", n)
	case name == "" || strings.Contains(name, "*") || !isHostChars(name):
		return fmt.Sprintf("invalid server name %q (want \"example.com\" or \"*.example.com\")", n)
	}
	return ""
}

func checkLocationPath(p string) string {
	switch {
	case p == "":
		return "missing: a location needs a path prefix such as \"/ws/\""
	case p[0] == '~' || p[0] == '=' || p[0] == '^':
		return fmt.Sprintf("%q: only prefix locations exist (no nginx \"~\", \"=\" or \"^~\" forms); write the prefix, e.g. \"/ws/\"", p)
	case p[0] != '/':
		return fmt.Sprintf("%q must start with \"/\"", p)
	}
	for i := 0; i < len(p); i++ {
		// A request target never contains these raw (RFC 3986 section 3.3;
		// "?" and "#" end the path), so a location holding one could
		// never match.
		if c := p[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return fmt.Sprintf("%q: a path prefix cannot contain spaces, control characters, \"?\" or \"#\"", p)
		}
	}
	return ""
}

// isHostChars accepts the characters of a DNS name, an IPv4 address or an
// IPv6 address (with zone): enough to refuse a typo without pretending to
// be a full RFC 3986 host parser.
func isHostChars(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':' || c == '%') {
			return false
		}
	}
	return h != ""
}

// isHostHeader accepts a Host header value: uri-host [":" port] (RFC 9110
// section 7.2). Being strict matters: the value is written into the
// upstream request verbatim, and a CR or LF in it would let the config
// inject headers or a second request (request smuggling).
func isHostHeader(h string) bool {
	if strings.HasPrefix(h, "[") { // [v6]:port
		end := strings.IndexByte(h, ']')
		if end < 0 || !isHostChars(h[1:end]) {
			return false
		}
		rest := h[end+1:]
		return rest == "" || (rest[0] == ':' && isDigits(rest[1:]))
	}
	host, port, found := strings.Cut(h, ":")
	return isHostChars(host) && (!found || isDigits(port))
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return s != ""
}
