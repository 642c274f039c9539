package configs

import (
	"net/netip"
	"strconv"
	"strings"
)

// validateAccess checks a server's admission keys (allow/deny, real IP,
// PROXY protocol, limit_conn, limit_req) and those of its locations. The
// engine parses the same values again with package guard; configs keeps its
// own small copy of the grammar because it imports no sluice package.
func validateAccess(l *errorList, path string, s *Server) {
	checkCIDRs(l, path+".allow", s.Allow)
	checkCIDRs(l, path+".deny", s.Deny)
	checkCIDRs(l, path+".real_ip_from", s.RealIPFrom)
	switch s.RealIPHeader {
	case "X-Forwarded-For":
	case "proxy_protocol":
		if !s.ProxyProtocol {
			l.add(path+".real_ip_header", "real_ip_header = \"proxy_protocol\" needs proxy_protocol = true on this server")
		}
	default:
		l.add(path+".real_ip_header", "unknown real_ip_header %q (want \"X-Forwarded-For\" or \"proxy_protocol\")", s.RealIPHeader)
	}
	if s.LimitConn < 0 {
		l.add(path+".limit_conn", "must be 0 (no limit) or more, got %d", s.LimitConn)
	}
	if s.LimitConnStatus != 503 && s.LimitConnStatus != 429 {
		l.add(path+".limit_conn_status", "want 503 or 429, got %d", s.LimitConnStatus)
	}
	if s.LimitReqStatus != 429 && s.LimitReqStatus != 503 {
		l.add(path+".limit_req_status", "want 429 or 503, got %d", s.LimitReqStatus)
	}
	checkLimitReq(l, path+".limit_req", s.LimitReq)
	for j, loc := range s.Locations {
		if loc == nil {
			continue
		}
		lp := path + ".location[" + strconv.Itoa(j) + "]"
		checkCIDRs(l, lp+".allow", loc.Allow)
		checkCIDRs(l, lp+".deny", loc.Deny)
		for k, o := range loc.Origins {
			if msg := checkOrigin(o); msg != "" {
				l.add(lp+".origins["+strconv.Itoa(k)+"]", "%s", msg)
			}
		}
		switch loc.OriginMissing {
		case "allow", "deny":
		default:
			l.add(lp+".origin_missing", "want \"allow\" or \"deny\", got %q", loc.OriginMissing)
		}
		if loc.LimitConn != nil && *loc.LimitConn < 0 {
			l.add(lp+".limit_conn", "must be 0 (no limit) or more, got %d", *loc.LimitConn)
		}
		checkLimitReq(l, lp+".limit_req", loc.LimitReq)
	}
}

func checkCIDRs(l *errorList, path string, list []string) {
	for i, s := range list {
		if msg := checkCIDR(s); msg != "" {
			l.add(path+"["+strconv.Itoa(i)+"]", "%s", msg)
		}
	}
}

// checkCIDR accepts what guard.ParsePrefix accepts: an address, a CIDR or
// "all".
func checkCIDR(s string) string {
	if s == "all" {
		return ""
	}
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err != nil {
			return "invalid CIDR " + strconv.Quote(s) + ": want e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""
		}
		return ""
	}
	if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
		return "invalid address " + strconv.Quote(s) + ": want an IP address, a CIDR such as \"10.0.0.0/8\", or \"all\""
	}
	return ""
}

// checkOrigin accepts "null", "scheme://host[:port]" and
// "scheme://*.domain[:port]": the forms guard.NewOriginPolicy reads.
func checkOrigin(o string) string {
	if o == "null" {
		return ""
	}
	bad := "invalid origin " + strconv.Quote(o) + ": want \"https://host[:port]\", \"https://*.domain\" or \"null\" (no path, no trailing slash)"
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return bad
	}
	host := rest
	if !strings.HasPrefix(rest, "[") {
		if h, port, found := strings.Cut(rest, ":"); found {
			n, err := strconv.Atoi(port)
			if !isDigits(port) || err != nil || n < 1 || n > 65535 {
				return bad
			}
			host = h
		}
	}
	if strings.Contains(strings.TrimPrefix(host, "*."), "*") || host == "*." || !isHostChars(strings.TrimPrefix(host, "*.")) && !strings.HasPrefix(host, "[") {
		return bad
	}
	return ""
}

// checkLimitReq checks a limit_req table.
func checkLimitReq(l *errorList, path string, r *LimitReq) {
	if r == nil {
		return
	}
	n, unit, ok := strings.Cut(r.Rate, "r/")
	if v, err := strconv.Atoi(n); !ok || !isDigits(n) || err != nil || v <= 0 || (unit != "s" && unit != "m") {
		l.add(path+".rate", "invalid rate %q: want e.g. \"10r/s\" or \"30r/m\"", r.Rate)
	}
	if r.Burst < 0 {
		l.add(path+".burst", "must be 0 or more, got %d", r.Burst)
	}
	if r.NoDelay != nil && !*r.NoDelay {
		l.add(path+".nodelay", "nodelay = false (nginx's delaying mode) is not supported yet: handshakes over the rate are refused, never delayed; remove the key or set it to true")
	}
}

// validateProxyProtocol: the PROXY header is a property of a listening
// socket (it comes before any Host), so every server on one address must
// agree on it.
func (c *Config) validateProxyProtocol(l *errorList) {
	first := map[string]int{}
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		for j, a := range s.Listen {
			norm, msg := checkHostPort(a, false)
			if msg != "" {
				continue
			}
			k, seen := first[norm]
			if !seen {
				first[norm] = i
				continue
			}
			if k != i && c.Servers[k].ProxyProtocol != s.ProxyProtocol {
				l.add("server["+strconv.Itoa(i)+"].listen["+strconv.Itoa(j)+"]", "%q is shared with server[%d], which disagrees on proxy_protocol: servers on one address must agree", a, k)
			}
		}
	}
}
