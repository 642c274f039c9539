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
		for j, s := range u.Servers {
			if _, msg := checkHostPort(s, true); msg != "" {
				l.add(path+".servers["+strconv.Itoa(j)+"]", "%s", msg)
			}
		}
		if u.Method != DefaultMethod {
			l.add(path+".method", "unknown method %q (only \"round_robin\" is supported for now)", u.Method)
		}
		if u.MaxTries < 0 {
			l.add(path+".max_tries", "must be 0 (every server once) or more, got %d", u.MaxTries)
		}
	}
}

func (c *Config) upstreamNames() []string {
	names := make([]string, 0, len(c.Upstreams))
	for n := range c.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
		c.resolve(l, lp+".proxy_pass", loc, anon)
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
	pp := strings.TrimSpace(loc.ProxyPass)
	if pp == "" {
		l.add(path, "missing: name an [upstream.NAME] or give \"host:port\"")
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
