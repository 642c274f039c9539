package configs

import (
	"errors"
	"strings"
	"testing"
)

// base is a valid config the error cases below break in one place each.
// Line numbers in the expected errors count from its first line.
const base = `[upstream.chat]
servers = ["127.0.0.1:9001"]

[[server]]
listen = ["127.0.0.1:8080"]

  [[server.location]]
  path = "/ws/"
  proxy_pass = "chat"
`

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{
			name: "unknown top-level key",
			src:  "worker = 4\n" + base,
			want: `sluice.toml:1:1: worker: unknown key`,
		},
		{
			name: "unknown server key",
			src: `[[server]]
listen = ["127.0.0.1:8080"]
lisen = ["127.0.0.1:8081"]
`,
			want: `sluice.toml:3:1: server[0].lisen: unknown key`,
		},
		{
			name: "unknown key in server[1].location[0]",
			src: base + `
[[server]]
listen = ["127.0.0.1:8081"]

  [[server.location]]
  path = "/"
  proxy_pass = "chat"
  proxy_read_timeout = "60s"
`,
			want: `sluice.toml:17:3: server[1].location[0].proxy_read_timeout: unknown key`,
		},
		{
			name: "bad duration",
			src:  base + "  read_timeout = \"36xx\"\n",
			want: `sluice.toml:10:3: server[0].location[0].read_timeout: invalid duration "36xx" (want e.g. "60s", "1h")`,
		},
		{
			name: "duration of the wrong type",
			src:  base + "  read_timeout = true\n",
			want: `sluice.toml:10:3: server[0].location[0].read_timeout: expected a duration string such as "60s"`,
		},
		{
			name: "bad size",
			src:  base + "  buffer_size = \"16kb\"\n",
			want: `sluice.toml:10:3: server[0].location[0].buffer_size: invalid size "16kb" (want e.g. "16k", "1m", 4096)`,
		},
		{
			name: "size out of range",
			src:  base + "  buffer_size = \"2m\"\n",
			want: `sluice.toml:10:3: server[0].location[0].buffer_size: 2m is out of range (want 1k to 1m)`,
		},
		{
			name: "wrong type",
			src: `[[server]]
listen = "127.0.0.1:8080"
`,
			want: `sluice.toml:2:1: server[0].listen: expected an array of strings`,
		},
		{
			name: "wrong element type",
			src: `[[server]]
listen = ["127.0.0.1:8080", 8081]
`,
			want: `sluice.toml:2:29: server[0].listen[1]: expected a string`,
		},
		{
			name: "server as a table instead of an array of tables",
			src: `[server]
listen = ["127.0.0.1:8080"]
`,
			want: `sluice.toml:1:2: server: expected an array of tables ([[server]])`,
		},
		{
			name: "TOML syntax error",
			src:  "[[server]]\nlisten = [\"127.0.0.1:8080\"\n",
			want: `sluice.toml:2:27: toml: array is incomplete`,
		},
		{
			name: "TOML duplicate key",
			src:  base + "  path = \"/x/\"\n",
			want: `sluice.toml:10:3: toml: key path is already defined`,
		},
		{
			name: "unknown upstream",
			src:  strings.Replace(base, `proxy_pass = "chat"`, `proxy_pass = "nochat"`, 1),
			want: `sluice.toml:9:3: server[0].location[0].proxy_pass: no upstream named "nochat" (defined: chat)`,
		},
		{
			name: "scheme in proxy_pass",
			src:  strings.Replace(base, `proxy_pass = "chat"`, `proxy_pass = "http://127.0.0.1:3000/"`, 1),
			want: `sluice.toml:9:3: server[0].location[0].proxy_pass: "http://127.0.0.1:3000/": drop the "http://" scheme: write "127.0.0.1:3000"`,
		},
		{
			name: "duplicate location",
			src:  base + "\n  [[server.location]]\n  path = \"/ws/\"\n  proxy_pass = \"chat\"\n",
			want: `sluice.toml:12:3: server[0].location[1].path: duplicate location path "/ws/" (first defined at line 8)`,
		},
		{
			name: "bad listen address",
			src:  strings.Replace(base, `listen = ["127.0.0.1:8080"]`, `listen = ["127.0.0.1:8080", "8080"]`, 1),
			want: `sluice.toml:5:29: server[0].listen[1]: invalid address "8080": want "host:port", e.g. "127.0.0.1:8080" (or ":8080" for every interface)`,
		},
		{
			name: "bad listen port",
			src:  strings.Replace(base, `"127.0.0.1:8080"`, `"127.0.0.1:80800"`, 1),
			want: `sluice.toml:5:11: server[0].listen[0]: invalid port in "127.0.0.1:80800": want a number from 1 to 65535`,
		},
		{
			name: "empty servers",
			src:  "workers = 2\n",
			want: `sluice.toml: server: no [[server]] defined: at least one is required`,
		},
		{
			name: "missing listen points at the server header",
			src:  strings.Replace(base, `listen = ["127.0.0.1:8080"]`, ``, 1),
			want: `sluice.toml:4:3: server[0].listen: at least one listen address is required, e.g. listen = ["127.0.0.1:8080"]`,
		},
		{
			name: "unknown method",
			src:  strings.Replace(base, "servers =", "method = \"fastest\"\nservers =", 1),
			want: `sluice.toml:2:1: upstream.chat.method: unknown method "fastest" (want round_robin, least_conn, ip_hash, hash or random)`,
		},
		{
			name: "bad upstream server",
			src:  strings.Replace(base, `servers = ["127.0.0.1:9001"]`, `servers = ["127.0.0.1:9001", ":9002"]`, 1),
			want: `sluice.toml:2:30: upstream.chat.servers[1]: missing host in ":9002"`,
		},
		{
			name: "empty upstream",
			src:  strings.Replace(base, `servers = ["127.0.0.1:9001"]`, `servers = []`, 1),
			want: `sluice.toml:2:1: upstream.chat.servers: no servers: an upstream needs at least one "host:port"`,
		},
		{
			name: "negative max_tries",
			src:  strings.Replace(base, "servers =", "max_tries = -1\nservers =", 1),
			want: `sluice.toml:2:1: upstream.chat.max_tries: must be 0 (every server once) or more, got -1`,
		},
		{
			name: "bad log level",
			src:  "[log]\nlevel = \"verbose\"\n" + base,
			want: `sluice.toml:2:1: log.level: unknown level "verbose" (want debug, info, warn or error)`,
		},
		{
			name: "path without slash",
			src:  strings.Replace(base, `path = "/ws/"`, `path = "ws/"`, 1),
			want: `sluice.toml:8:3: server[0].location[0].path: "ws/" must start with "/"`,
		},
		{
			name: "header injection through host",
			src:  base + "  host = \"a\\r\\nX-Evil: 1\"\n",
			want: `sluice.toml:10:3: server[0].location[0].host: invalid host "a\r\nX-Evil: 1": want a name or "name:port" (no scheme, spaces or control characters)`,
		},
		{
			name: "server_name with a port",
			src:  strings.Replace(base, "listen =", "server_name = [\"example.com:8080\"]\nlisten =", 1),
			want: `sluice.toml:5:16: server[0].server_name[0]: "example.com:8080": server names have no port (the port is matched by listen)`,
		},
		{
			name: "two catch-all servers on one address",
			src:  base + "\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"chat\"\n",
			want: `sluice.toml:12:11: server[1].listen[0]: "127.0.0.1:8080" is also a listen address of server[0] and neither has a server_name: a request could not tell them apart`,
		},
		{
			name: "overlapping server names on one address",
			src: strings.Replace(base, "listen =", "server_name = [\"a.com\"]\nlisten =", 1) +
				"\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\nserver_name = [\"b.com\", \"A.com\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"chat\"\n",
			want: `sluice.toml:13:11: server[1].listen[0]: "127.0.0.1:8080" is also a listen address of server[0] and both claim server_name "a.com": a request could not tell them apart`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "sluice.toml")
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

// Two servers on one address are fine when server_name tells them apart,
// including a catch-all next to a named one.
func TestSharedListenAllowed(t *testing.T) {
	src := base + `
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["b.example.com"]
  [[server.location]]
  path = "/"
  proxy_pass = "chat"
`
	if _, err := Parse([]byte(src), "t.toml"); err != nil {
		t.Fatal(err)
	}
}

// Several problems are all reported, in file order, up to a cap.
func TestErrorsCollected(t *testing.T) {
	src := `[[server]]
listen = ["x"]
  [[server.location]]
  path = "ws"
  proxy_pass = "nope"
  buffer_size = 1
`
	_, err := Parse([]byte(src), "s.toml")
	want := `s.toml:2:11: server[0].listen[0]: invalid address "x": want "host:port", e.g. "127.0.0.1:8080"
s.toml:4:3: server[0].location[0].path: "ws" must start with "/"
s.toml:5:3: server[0].location[0].proxy_pass: no upstream named "nope" (no [upstream.NAME] is defined; for a single backend write "host:port")
s.toml:6:3: server[0].location[0].buffer_size: 1 is out of range (want 1k to 1m)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	var b strings.Builder
	for i := range 50 {
		b.WriteString("bad" + string(rune('a'+i%26)) + strings.Repeat("x", i) + " = 1\n")
	}
	_, err = Parse([]byte(b.String()), "many.toml")
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "and 30 more errors" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
