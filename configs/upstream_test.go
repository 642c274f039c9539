package configs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/upstream"
)

func TestUpstreamKeys(t *testing.T) {
	src := `
[upstream.chat]
servers = [
  "10.0.0.11:9000 weight=3 max_fails=2 fail_timeout=30s",
  "10.0.0.12:9000 max_conns=100",
  "10.0.0.13:9000   backup",
  "Backend.Internal:9000 down max_fails=0",
]
method = "least_conn"
max_tries = 2
next_upstream_timeout = "5s"
resolve = "10s"

[upstream.chat.health_check]
path = "/ws/health"
interval = "1s"
fall = 1

[upstream.sticky]
servers = ["10.0.0.21:9000", "10.0.0.22:9000"]
method = "hash"
hash_key = "$cookie_session"
consistent = true
resolve = "0"

[upstream.sticky.health_check]
type = "http"
host = "health.internal"

[[server]]
listen = ["127.0.0.1:8080"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "chat"
  [[server.location]]
  path = "/s/"
  proxy_pass = "sticky"
  [[server.location]]
  path = "/anon/"
  proxy_pass = "127.0.0.1:7001,127.0.0.1:7002"
`
	c, err := Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["chat"]
	wantSpecs := []ServerSpec{
		{Address: "10.0.0.11:9000", Weight: 3, MaxFails: 2, FailTimeout: Duration(30 * time.Second)},
		{Address: "10.0.0.12:9000", Weight: 1, MaxConns: 100, MaxFails: 1, FailTimeout: DefaultFailTimeout},
		{Address: "10.0.0.13:9000", Weight: 1, MaxFails: 1, FailTimeout: DefaultFailTimeout, Backup: true},
		{Address: "backend.internal:9000", Weight: 1, MaxFails: 0, FailTimeout: DefaultFailTimeout, Down: true},
	}
	if !reflect.DeepEqual(u.ServerSpecs, wantSpecs) {
		t.Errorf("specs\n got %+v\nwant %+v", u.ServerSpecs, wantSpecs)
	}
	if u.Method != "least_conn" || u.MaxTries != 2 || u.NextUpstreamTimeout.D() != 5*time.Second || u.ResolveEvery().D() != 10*time.Second {
		t.Errorf("upstream %+v", u)
	}
	on := true
	wantHC := &HealthCheck{Type: "websocket", Path: "/ws/health", Interval: Duration(time.Second), Timeout: DefaultCheckTimeout,
		Rise: DefaultRise, Fall: 1, Ping: &on}
	if !reflect.DeepEqual(u.HealthCheck, wantHC) {
		t.Errorf("health check\n got %+v\nwant %+v", u.HealthCheck, wantHC)
	}

	s := c.Upstreams["sticky"]
	if s.Method != "hash" || s.HashKey != "$cookie_session" || !s.Consistent || s.ResolveEvery() != 0 {
		t.Errorf("sticky %+v", s)
	}
	h := s.HealthCheck
	if h.Type != "http" || h.Host != "health.internal" || h.Path != "/" || h.Ping != nil ||
		h.ExpectStatus != "200-399" || !reflect.DeepEqual(h.Expect, []StatusRange{{200, 399}}) {
		t.Errorf("http check %+v", h)
	}

	anon := c.Servers[0].Locations[2].Upstream
	if anon.ResolveEvery() != DefaultResolve || anon.HealthCheck != nil || len(anon.Specs()) != 2 ||
		anon.Specs()[1] != (ServerSpec{Address: "127.0.0.1:7002", Weight: 1, MaxFails: 1, FailTimeout: DefaultFailTimeout}) {
		t.Errorf("anonymous group %+v specs %+v", anon, anon.Specs())
	}

	// Validate is idempotent and Apply's clone keeps everything.
	if err := c.Validate(); err != nil || !reflect.DeepEqual(c.Upstreams["chat"].ServerSpecs, wantSpecs) {
		t.Errorf("second Validate: %v %+v", err, c.Upstreams["chat"].ServerSpecs)
	}
	cl := c.clone()
	if !reflect.DeepEqual(cl.Upstreams, c.Upstreams) || cl.Upstreams["chat"].HealthCheck == c.Upstreams["chat"].HealthCheck {
		t.Error("clone differs or shares the health check")
	}
}

func TestUpstreamErrors(t *testing.T) {
	const head = "[upstream.chat]\n"
	const tail = "\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"chat\"\n"
	for _, tc := range []struct {
		name, body, want string
	}{
		{
			name: "misspelt parameter",
			body: `servers = ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000 wieght=2"]`,
			want: `sluice.toml:2:46: upstream.chat.servers[2]: unknown parameter "wieght" (want weight=, max_conns=, max_fails=, fail_timeout=, backup or down)`,
		},
		{
			name: "weight zero",
			body: `servers = ["10.0.0.1:9000 weight=0"]`,
			want: `sluice.toml:2:12: upstream.chat.servers[0]: invalid weight "weight=0": want weight=N with N from 1 to 1000`,
		},
		{
			name: "weight without value",
			body: `servers = ["10.0.0.1:9000 weight"]`,
			want: `sluice.toml:2:12: upstream.chat.servers[0]: invalid weight "weight": want weight=N with N from 1 to 1000`,
		},
		{
			name: "bad fail_timeout",
			body: `servers = ["10.0.0.1:9000 fail_timeout=10x"]`,
			want: `sluice.toml:2:12: upstream.chat.servers[0]: fail_timeout: invalid duration "10x" (want e.g. "60s", "1h")`,
		},
		{
			name: "backup with a value",
			body: `servers = ["10.0.0.1:9000", "10.0.0.2:9000 backup=1"]`,
			want: `sluice.toml:2:29: upstream.chat.servers[1]: "backup=1" takes no value: write "backup"`,
		},
		{
			name: "parameter twice",
			body: `servers = ["10.0.0.1:9000 down down"]`,
			want: `sluice.toml:2:12: upstream.chat.servers[0]: parameter "down" given twice`,
		},
		{
			name: "backup with ip_hash",
			body: "method = \"ip_hash\"\nservers = [\"10.0.0.1:9000\", \"10.0.0.2:9000 backup\"]",
			want: `sluice.toml:3:29: upstream.chat.servers[1]: backup cannot be used with method "ip_hash" (nginx refuses it too); use round_robin, least_conn or random`,
		},
		{
			name: "only backups",
			body: `servers = ["10.0.0.1:9000 backup"]`,
			want: `sluice.toml:2:1: upstream.chat.servers: every server is a backup: at least one must not be`,
		},
		{
			name: "hash without key",
			body: "servers = [\"10.0.0.1:9000\"]\nmethod = \"hash\"",
			want: `sluice.toml:3:1: upstream.chat.method: method "hash" needs a hash_key, e.g. hash_key = "$cookie_session" or "$remote_addr"`,
		},
		{
			name: "bad hash key",
			body: "servers = [\"10.0.0.1:9000\"]\nmethod = \"hash\"\nhash_key = \"$host\"",
			want: `sluice.toml:4:1: upstream.chat.hash_key: invalid hash_key "$host": want one of $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME, $uri`,
		},
		{
			name: "hash key without hash",
			body: "servers = [\"10.0.0.1:9000\"]\nhash_key = \"$uri\"",
			want: `sluice.toml:3:1: upstream.chat.hash_key: only method "hash" uses a hash_key (method is "round_robin")`,
		},
		{
			name: "consistent without hash",
			body: "servers = [\"10.0.0.1:9000\"]\nconsistent = true",
			want: `sluice.toml:3:1: upstream.chat.consistent: only method "hash" can be consistent (method is "round_robin")`,
		},
		{
			name: "consistent not a bool",
			body: "servers = [\"10.0.0.1:9000\"]\nconsistent = \"yes\"",
			want: `sluice.toml:3:1: upstream.chat.consistent: expected true or false`,
		},
		{
			name: "bad resolve",
			body: "servers = [\"10.0.0.1:9000\"]\nresolve = \"often\"",
			want: `sluice.toml:3:1: upstream.chat.resolve: invalid duration "often" (want e.g. "60s", "1h")`,
		},
		{
			name: "unknown health check type",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\ntype = \"tcp\"",
			want: `sluice.toml:4:1: upstream.chat.health_check.type: unknown type "tcp" (want "websocket" or "http")`,
		},
		{
			name: "expect_status on a websocket check",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\nexpect_status = \"200\"",
			want: `sluice.toml:4:1: upstream.chat.health_check.expect_status: expect_status applies to type = "http" only (a websocket check requires a 101)`,
		},
		{
			name: "ping on an http check",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\ntype = \"http\"\nping = true",
			want: `sluice.toml:5:1: upstream.chat.health_check.ping: ping applies to type = "websocket" only`,
		},
		{
			name: "bad expect_status",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\ntype = \"http\"\nexpect_status = \"2xx\"",
			want: `sluice.toml:5:1: upstream.chat.health_check.expect_status: invalid expect_status "2xx": want codes or ranges from 100 to 599, e.g. "200-399" or "200,204"`,
		},
		{
			name: "negative fall",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\nfall = -1",
			want: `sluice.toml:4:1: upstream.chat.health_check.fall: must be 1 or more, got -1`,
		},
		{
			name: "health path with a space",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\npath = \"/a b\"",
			want: `sluice.toml:4:1: upstream.chat.health_check.path: "/a b": a request target cannot contain spaces, control characters or "#"`,
		},
		{
			name: "unknown health check key",
			body: "servers = [\"10.0.0.1:9000\"]\n[upstream.chat.health_check]\nurl = \"/\"",
			want: `sluice.toml:4:1: upstream.chat.health_check.url: unknown key`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head+tc.body+tail), "sluice.toml")
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("%T is not a *ConfigError", err)
			}
		})
	}
}

// Every method parses; the example file shows each new key.
func TestMethodsAccepted(t *testing.T) {
	for _, m := range []string{"round_robin", "least_conn", "ip_hash", "random", "hash\"\nhash_key = \"$remote_addr"} {
		src := "[upstream.u]\nservers = [\"10.0.0.1:9000\"]\nmethod = \"" + m + "\"\n[[server]]\nlisten = [\":8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n"
		if _, err := Parse([]byte(src), "m.toml"); err != nil {
			t.Errorf("method %s: %v", m, err)
		}
	}
	data, err := Load("loadbalanced.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"weight=", "max_fails=", "fail_timeout=", "max_conns=", "backup", "health_check"} {
		found := false
		for _, u := range data.Upstreams {
			found = found || strings.Contains(strings.Join(u.Servers, " "), key) || (key == "health_check" && u.HealthCheck != nil)
		}
		if !found {
			t.Errorf("loadbalanced.toml does not show %q", key)
		}
	}
}

// TestHashKeyGrammarAgrees: configs checks hash_key with its own copy of
// the grammar (configs imports no sluice package), and the engine parses it
// with upstream.ParseHashKey. A key one accepts and the other refuses would
// pass `sluice check` and then fail at start, or the reverse.
func TestHashKeyGrammarAgrees(t *testing.T) {
	for _, k := range []string{
		"$remote_addr", "$uri", "$request_uri", "$document_uri",
		"$http_x_user", "$http_X-User", "$cookie_session", "$cookie_a.b", "$arg_room", "$arg_",
		"$http_", "$cookie_", "$http_a b", "$cookie_é", "remote_addr", "$host", "", "$", "$arg_r;m", "$http_x\x00",
	} {
		_, perr := upstream.ParseHashKey(k)
		if cfgOK, upOK := checkHashKey(k) == "", perr == nil; cfgOK != upOK {
			t.Errorf("hash_key %q: configs accepts=%v, upstream.ParseHashKey accepts=%v (%v)", k, cfgOK, upOK, perr)
		}
	}
}
