package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every *.toml shipped in this directory is a real config: it must parse
// and validate, so that the examples never rot.
func TestExampleFilesParse(t *testing.T) {
	files, err := filepath.Glob("*.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default.toml", "socket.toml", "chat.toml", "loadbalanced.toml"} {
		found := false
		for _, f := range files {
			found = found || f == want
		}
		if !found {
			t.Errorf("%s is missing from configs/", want)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if c.Source != f {
				t.Errorf("Source = %q, want %q", c.Source, f)
			}
			for _, s := range c.Servers {
				for _, l := range s.Locations {
					if l.IsStatic() {
						continue
					}
					if l.Upstream == nil || len(l.Upstream.Servers) == 0 || l.Upstream.Name == "" {
						t.Errorf("location %s: unresolved upstream %+v", l.Path, l.Upstream)
					}
				}
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Source != DefaultSource {
		t.Errorf("Source = %q", c.Source)
	}
	if got := c.Servers[0].Listen; !reflect.DeepEqual(got, []string{DefaultListen}) {
		t.Errorf("listen = %v", got)
	}
	locs := c.Servers[0].Locations
	if len(locs) != 3 || locs[0].Path != "/" || locs[0].Root != "examples/chat/public" || !locs[0].IsStatic() {
		t.Fatalf("locations = %+v", locs)
	}
	if l := locs[1]; l.Path != "/ws/" || !reflect.DeepEqual(l.Upstream.Servers, []string{"127.0.0.1:9001"}) {
		t.Errorf("location = %+v, upstream %+v", l, l.Upstream)
	}
	if l := locs[2]; l.Path != "/echo/" || !reflect.DeepEqual(l.Upstream.Servers, []string{"127.0.0.1:9000"}) {
		t.Errorf("location = %+v, upstream %+v", l, l.Upstream)
	}
	if !reflect.DeepEqual(DefaultTOML(), defaultTOML) {
		t.Error("DefaultTOML differs from the embedded file")
	}
	// Each call is independent.
	c.Servers[0].Listen[0] = "changed:1"
	if Default().Servers[0].Listen[0] != DefaultListen {
		t.Error("Default shares state between calls")
	}
}

// default.toml spells out every default; it must agree with SetDefaults,
// or the "template" it claims to be would lie.
func TestDefaultFileMatchesSetDefaults(t *testing.T) {
	minimal := `
[[server]]
listen = ["127.0.0.1:8080"]
server_name = []
  [[server.location]]
  path = "/"
  root = "examples/chat/public"
  try_files = ["$uri", "$uri/", "/index.html"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "127.0.0.1:9001"
  [[server.location]]
  path = "/echo/"
  proxy_pass = "127.0.0.1:9000"
`
	got, err := Parse([]byte(minimal), "minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	for _, c := range []*Config{got, want} {
		c.Source, c.file, c.pos = "", "", nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults differ:\nSetDefaults: %+v %+v %+v %+v\ndefault.toml: %+v %+v %+v %+v",
			got, got.Servers[0], got.Servers[0].Locations[0], got.Servers[0].Locations[1],
			want, want.Servers[0], want.Servers[0].Locations[0], want.Servers[0].Locations[1])
	}
}

func TestParseFields(t *testing.T) {
	src := `
workers = 4
[log]
level = "debug"
format = "json"
error_log = "/var/log/sluice/error.log"
access_log = "off"

[upstream.chat]
servers = ["127.0.0.1:9001", "[::1]:9002"]
max_tries = 1

[[server]]
listen = ["127.0.0.1:8080", ":8081"]
server_name = ["Example.com", "*.example.com"]
client_header_timeout = 30
max_header_bytes = 4096

  [[server.location]]
  path = "/ws/"
  proxy_pass = "chat"
  connect_timeout = "1s"
  handshake_timeout = "500ms"
  read_timeout = "1h 30m"
  send_timeout = "60"
  buffer_size = "32K"
  host = "backend.internal:9000"

  [[server.location]]
  path = "/a/"
  proxy_pass = "127.0.0.1:7001, 127.0.0.1:7002"

  [[server.location]]
  path = "/b/"
  proxy_pass = "127.0.0.1:7001,127.0.0.1:7002"
`
	c, err := Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 4 || c.Log != (Log{"debug", "json", "/var/log/sluice/error.log", "off"}) {
		t.Errorf("workers %d, log %+v", c.Workers, c.Log)
	}
	u := c.Upstreams["chat"]
	if u.Name != "chat" || u.Method != "round_robin" || u.MaxTries != 1 || len(u.Servers) != 2 {
		t.Errorf("upstream %+v", u)
	}
	s := c.Servers[0]
	if !reflect.DeepEqual(s.ServerName, []string{"example.com", "*.example.com"}) {
		t.Errorf("server_name %v (want lowercased)", s.ServerName)
	}
	if s.ClientHeaderTimeout.D() != 30*time.Second || s.MaxHeaderBytes != 4096 {
		t.Errorf("server %+v", s)
	}
	l := s.Locations[0]
	want := Location{Path: "/ws/", ProxyPass: "chat", ConnectTimeout: Duration(time.Second),
		HandshakeTimeout: Duration(500 * time.Millisecond), ReadTimeout: Duration(90 * time.Minute),
		SendTimeout: Duration(time.Minute), BufferSize: 32 << 10, Host: "backend.internal:9000", Upstream: u,
		OriginMissing: DefaultOriginMissing}
	if !reflect.DeepEqual(*l, want) {
		t.Errorf("location\n got %+v\nwant %+v", *l, want)
	}
	a, b := s.Locations[1].Upstream, s.Locations[2].Upstream
	if a != b || a.Name != "127.0.0.1:7001,127.0.0.1:7002" || a.Method != DefaultMethod {
		t.Errorf("anonymous groups not shared or misnamed: %+v %+v", a, b)
	}
	if _, ok := c.Upstreams[a.Name]; ok {
		t.Error("anonymous group listed in Upstreams")
	}
	if err := c.Validate(); err != nil || s.Locations[0].Upstream != u {
		t.Errorf("Validate is not idempotent: %v", err)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "3600s", want: time.Hour},
		{in: "1h", want: time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1h 30m", want: 90 * time.Minute},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "60", want: time.Minute},
		{in: " 10s ", want: 10 * time.Second},
		{in: "0", want: 0},
		{in: "", bad: true},
		{in: "36xx", bad: true},
		{in: "-5s", bad: true},
		{in: "1d", bad: true},
		{in: "s", bad: true},
		{in: "99999999999999999999", bad: true},
		{in: "9999999999999", bad: true},
	} {
		got, err := ParseDuration(tc.in)
		if tc.bad != (err != nil) || got.D() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		bad  bool
	}{
		{in: "16k", want: 16 << 10},
		{in: "8K", want: 8 << 10},
		{in: "1m", want: 1 << 20},
		{in: "1M", want: 1 << 20},
		{in: "2g", want: 2 << 30},
		{in: "4096", want: 4096},
		{in: "0", want: 0},
		{in: "", bad: true},
		{in: "k", bad: true},
		{in: "16kb", bad: true},
		{in: "-1k", bad: true},
		{in: "1.5k", bad: true},
		{in: "8q", bad: true},
		{in: "99999999999g", bad: true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, s := range []Size{0, 1000, 1 << 10, 1536, 16 << 10, 1 << 20, 3 << 30} {
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Errorf("%d → %q → %d, %v", int64(s), s, back, err)
		}
	}
}

// Sizes and durations also come as TOML integers (nginx: "proxy_read_timeout
// 60;", "proxy_buffer_size 4096;").
func TestIntegerValues(t *testing.T) {
	c, err := Parse([]byte(`[[server]]
listen = [":1"]
[[server.location]]
path = "/"
proxy_pass = "a:1"
read_timeout = 90
buffer_size = 2048
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Servers[0].Locations[0]; l.ReadTimeout.D() != 90*time.Second || l.BufferSize != 2048 {
		t.Errorf("%+v", l)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("err = %v", err)
	}
}
