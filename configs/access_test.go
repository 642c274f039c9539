package configs

import (
	"strings"
	"testing"
)

func TestAccessKeys(t *testing.T) {
	src := `
max_connections = 5000
[[server]]
listen = ["127.0.0.1:8080"]
allow = ["10.0.0.0/8", "2001:db8::/32"]
deny = ["all"]
real_ip_from = ["127.0.0.1"]
limit_conn = 10
limit_conn_status = 429
limit_req = { rate = "10r/s", burst = 20 }
  [[server.location]]
  path = "/ws/"
  proxy_pass = "127.0.0.1:9000"
  origins = ["https://example.com", "https://*.example.com", "null"]
  same_origin = true
  origin_missing = "deny"
  limit_conn = 0
  limit_req = { rate = "30r/m", nodelay = true }
`
	c, err := Parse([]byte(src), "a.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Servers[0]
	if c.MaxConnections != 5000 || s.LimitConn != 10 || s.LimitConnStatus != 429 || s.LimitReqStatus != 429 ||
		s.LimitReq.Rate != "10r/s" || s.LimitReq.Burst != 20 || s.RealIPHeader != "X-Forwarded-For" {
		t.Errorf("server %+v", s)
	}
	l := s.Locations[0]
	if *l.LimitConn != 0 || l.LimitReq.Rate != "30r/m" || !l.SameOrigin || l.OriginMissing != "deny" || len(l.Origins) != 3 {
		t.Errorf("location %+v", l)
	}
	cl := c.clone()
	*cl.Servers[0].Locations[0].LimitConn = 5
	cl.Servers[0].Allow[0] = "x"
	if *l.LimitConn != 0 || s.Allow[0] != "10.0.0.0/8" {
		t.Error("clone shares state")
	}
}

func TestAccessErrors(t *testing.T) {
	base := "[[server]]\nlisten = [\"127.0.0.1:8080\"]\n%s\n  [[server.location]]\n  path = \"/ws/\"\n  proxy_pass = \"127.0.0.1:9000\"\n%s\n"
	tests := []struct{ server, loc, want string }{
		{`allow = ["10.0.0.0/33"]`, "", "a.toml:3:10: server[0].allow[0]: invalid CIDR"},
		{`deny = ["10.0.0.x"]`, "", "server[0].deny[0]: invalid address"},
		{`real_ip_from = ["fe80::1%eth0"]`, "", "real_ip_from[0]: invalid address"},
		{`real_ip_header = "X-Real-IP"`, "", "unknown real_ip_header"},
		{`real_ip_header = "proxy_protocol"`, "", "needs proxy_protocol = true"},
		{`limit_conn = -1`, "", "limit_conn: must be 0"},
		{`limit_conn_status = 500`, "", "want 503 or 429"},
		{`limit_req_status = 404`, "", "want 429 or 503"},
		{`limit_req = { rate = "10/s" }`, "", "invalid rate"},
		{`limit_req = { rate = "10r/s", burst = -1 }`, "", "burst: must be 0"},
		{`limit_req = { rate = "10r/s", nodelay = false }`, "", "not supported yet"},
		{`limit_req = { rate = "10r/s", delay = 5 }`, "", "unknown key"},
		{"", `  origins = ["https://example.com/"]`, "a.toml:7:14: server[0].location[0].origins[0]: invalid origin"},
		{"", `  origins = ["example.com"]`, "invalid origin"},
		{"", `  origins = ["https://a.*.com"]`, "invalid origin"},
		{"", `  origins = ["https://example.com:0"]`, "invalid origin"},
		{"", `  origin_missing = "maybe"`, "want \"allow\" or \"deny\""},
		{"", `  allow = ["bogus"]`, "location[0].allow[0]"},
		{"", `  limit_conn = -2`, "location[0].limit_conn"},
		{"", `  limit_req = { rate = "0r/s" }`, "location[0].limit_req.rate"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(strings.Replace(strings.Replace(base, "%s", tt.server, 1), "%s", tt.loc, 1)), "a.toml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s%s: err %v, want %q", tt.server, tt.loc, err, tt.want)
		}
	}
	_, err := Parse([]byte("max_connections = -1\n"+strings.Replace(strings.Replace(base, "%s", "", 1), "%s", "", 1)), "a.toml")
	if err == nil || !strings.Contains(err.Error(), "max_connections") {
		t.Errorf("max_connections: %v", err)
	}
	shared := `
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["a"]
proxy_protocol = true
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["b"]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
`
	if _, err := Parse([]byte(shared), "a.toml"); err == nil || !strings.Contains(err.Error(), "disagrees on proxy_protocol") {
		t.Errorf("shared listener: %v", err)
	}
}
