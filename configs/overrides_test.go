package configs

import (
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestApplyQuickPath(t *testing.T) {
	c, err := Apply(nil, Overrides{
		Listen:  []string{"127.0.0.1:8080"},
		Proxies: []string{"/ws/=127.0.0.1:9000", "/chat/=127.0.0.1:9001,127.0.0.1:9002"},
	})
	if err != nil {
		t.Fatal(err)
	}
	loc := func(path, pass string, servers ...string) *Location {
		return &Location{
			Path: path, ProxyPass: pass,
			ConnectTimeout: DefaultConnectTimeout, HandshakeTimeout: DefaultHandshakeTimeout,
			ReadTimeout: DefaultReadTimeout, SendTimeout: DefaultSendTimeout, BufferSize: DefaultBufferSize,
			OriginMissing: DefaultOriginMissing,
			Upstream:      &Upstream{Name: strings.Join(servers, ","), Servers: servers, Method: DefaultMethod},
		}
	}
	want := &Config{
		Log:          Log{Level: "info", Format: "console", ErrorLog: "stderr", AccessLog: "stdout"},
		DrainTimeout: DefaultDrainTimeout,
		Source:       FlagsSource,
		Servers: []*Server{{
			Listen:              []string{"127.0.0.1:8080"},
			ClientHeaderTimeout: DefaultClientHeaderTimeout,
			MaxHeaderBytes:      DefaultMaxHeaderBytes,
			RealIPHeader:        DefaultRealIPHeader,
			LimitConnStatus:     DefaultLimitConnStatus,
			LimitReqStatus:      DefaultLimitReqStatus,
			Locations: []*Location{
				loc("/ws/", "127.0.0.1:9000", "127.0.0.1:9000"),
				loc("/chat/", "127.0.0.1:9001,127.0.0.1:9002", "127.0.0.1:9001", "127.0.0.1:9002"),
			},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c.Servers[0], want.Servers[0])
		for i := range c.Servers[0].Locations {
			t.Errorf("location %d: %+v %+v", i, c.Servers[0].Locations[i], c.Servers[0].Locations[i].Upstream)
		}
	}

	// --listen defaults.
	c, err = Apply(nil, Overrides{Proxies: []string{"/=a:1"}})
	if err != nil || !reflect.DeepEqual(c.Servers[0].Listen, []string{DefaultListen}) {
		t.Errorf("default listen: %v, %v", c, err)
	}
}

func TestApplyNoConfigNoProxyUsesDefault(t *testing.T) {
	c, err := Apply(nil, Overrides{Listen: []string{":9999"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != DefaultSource || !reflect.DeepEqual(c.Servers[0].Listen, []string{":9999"}) || c.Servers[0].Locations[1].Path != "/ws/" {
		t.Errorf("got %+v", c.Servers[0])
	}
}

func TestApplyOverridesEveryLocation(t *testing.T) {
	file, err := Load("chat.toml")
	if err != nil {
		t.Fatal(err)
	}
	src := base + "\n  [[server.location]]\n  path = \"/b/\"\n  proxy_pass = \"chat\"\n  read_timeout = \"5s\"\n" +
		"\n[[server]]\nlisten = [\"127.0.0.1:8081\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"chat\"\n"
	cfg, err := Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) *Duration { v, _ := ParseDuration(s); return &v }
	size := Size(4 << 10)
	workers := 3
	o := Overrides{
		LogLevel: "debug", Workers: &workers,
		ConnectTimeout: d("1s"), ReadTimeout: d("2s"), SendTimeout: d("3s"), HeaderTimeout: d("4s"),
		MaxHeaderBytes: &size,
	}
	for _, in := range []*Config{cfg, file} {
		before := in.Servers[0].Locations[0].ReadTimeout
		c, err := Apply(in, o)
		if err != nil {
			t.Fatal(err)
		}
		if in.Servers[0].Locations[0].ReadTimeout != before {
			t.Error("Apply modified its argument")
		}
		if c.Log.Level != "debug" || c.Workers != 3 || c.Source != in.Source {
			t.Errorf("log %+v workers %d source %q", c.Log, c.Workers, c.Source)
		}
		n := 0
		for i, s := range c.Servers {
			if s.ClientHeaderTimeout.D() != 4*time.Second || s.MaxHeaderBytes != size {
				t.Errorf("server %+v", s)
			}
			for j, l := range s.Locations {
				n++
				if l.ConnectTimeout.D() != time.Second || l.ReadTimeout.D() != 2*time.Second || l.SendTimeout.D() != 3*time.Second {
					t.Errorf("location %s: %+v", l.Path, l)
				}
				if l.HandshakeTimeout != in.Servers[i].Locations[j].HandshakeTimeout {
					t.Errorf("handshake_timeout changed: %v", l.HandshakeTimeout)
				}
				if l.Upstream == nil && !l.IsStatic() {
					t.Errorf("location %s unresolved", l.Path)
				}
			}
		}
		if n < 1 {
			t.Error("no locations")
		}
	}
	// The clone keeps named groups shared between locations.
	c, _ := Apply(cfg, o)
	if c.Servers[0].Locations[0].Upstream != c.Upstreams["chat"] || c.Upstreams["chat"] == cfg.Upstreams["chat"] {
		t.Error("clone did not re-point upstreams")
	}
}

func TestApplyListenReplacesEveryServer(t *testing.T) {
	cfg, err := Load("loadbalanced.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Apply(cfg, Overrides{Listen: []string{"127.0.0.1:7000", "[::1]:7000"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Servers[0].Listen, []string{"127.0.0.1:7000", "[::1]:7000"}) {
		t.Errorf("listen %v", c.Servers[0].Listen)
	}
	// Two catch-all servers moved to one address clash; the error points
	// at the second [[server]] header, not at the listen line the flag
	// replaced.
	src := base + "\n[[server]]\nlisten = [\"127.0.0.1:8081\"]\n  [[server.location]]\n  path = \"/\"\n  proxy_pass = \"chat\"\n"
	cfg, err = Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Apply(cfg, Overrides{Listen: []string{":7000"}})
	want := `t.toml:11:3: server[1].listen[0]: ":7000" is also a listen address of server[0] and neither has a server_name: a request could not tell them apart`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestApplyErrors(t *testing.T) {
	file := Default()
	zero := Duration(0)
	neg := -1
	big := Size(2 << 20)
	for _, tc := range []struct {
		name string
		cfg  *Config
		o    Overrides
		want string
	}{
		{"no equals", nil, Overrides{Proxies: []string{"/ws/"}},
			`--proxy: "/ws/": want PATH=HOST:PORT[,HOST:PORT...], e.g. "/ws/=127.0.0.1:9000"`},
		{"empty backends", nil, Overrides{Proxies: []string{"/ws/="}},
			`--proxy: "/ws/=": want PATH=HOST:PORT[,HOST:PORT...], e.g. "/ws/=127.0.0.1:9000"`},
		{"path without slash", nil, Overrides{Proxies: []string{"ws=127.0.0.1:9000"}},
			`--proxy: "ws" must start with "/"`},
		{"scheme", nil, Overrides{Proxies: []string{"/ws/=http://127.0.0.1:9000"}},
			`--proxy: "http://127.0.0.1:9000": drop the "http://" scheme: write "127.0.0.1:9000"`},
		{"no port", nil, Overrides{Proxies: []string{"/ws/=127.0.0.1:9000,localhost"}},
			`--proxy: invalid address "localhost": want "host:port", e.g. "127.0.0.1:8080"`},
		{"duplicate path", nil, Overrides{Proxies: []string{"/ws/=a:1", "/ws/=b:2"}},
			`--proxy: path "/ws/" is given twice`},
		{"bad listen", nil, Overrides{Listen: []string{"8080"}, Proxies: []string{"/=a:1"}},
			`--listen: invalid address "8080": want "host:port", e.g. "127.0.0.1:8080" (or ":8080" for every interface)`},
		{"config and proxy", file, Overrides{Proxies: []string{"/=a:1"}},
			`--proxy: cannot be combined with --config "embedded default": use either --config or --listen/--proxy (or add the location to the file)`},
		{"zero timeout", file, Overrides{ReadTimeout: &zero},
			`--read-timeout: must be > 0`},
		{"negative workers", file, Overrides{Workers: &neg},
			`--workers: must be 0 (one per CPU) or more, got -1`},
		{"header bytes", file, Overrides{MaxHeaderBytes: &big},
			`--max-header-bytes: 2m is out of range (want 1k to 1m)`},
		{"log level", file, Overrides{LogLevel: "loud"},
			`--log-level: unknown level "loud" (want debug, info, warn or error)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(tc.cfg, tc.o)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	var o Overrides
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	o.RegisterFlags(fs)
	err := fs.Parse([]string{
		"--listen", ":1", "--listen", ":2", "--proxy", "/a/=x:1", "--log-level", "warn", "--workers", "2",
		"--connect-timeout", "5", "--read-timeout", "1m", "--send-timeout", "2m", "--header-timeout", "3s",
		"--max-header-bytes", "4k",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Listen, []string{":1", ":2"}) || o.Proxies[0] != "/a/=x:1" || o.LogLevel != "warn" || *o.Workers != 2 ||
		o.ConnectTimeout.D() != 5*time.Second || o.ReadTimeout.D() != time.Minute || o.SendTimeout.D() != 2*time.Minute ||
		o.HeaderTimeout.D() != 3*time.Second || *o.MaxHeaderBytes != 4<<10 {
		t.Errorf("%+v", o)
	}
	fs = flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--read-timeout", "36xx"}); err == nil || !strings.Contains(err.Error(), `invalid duration "36xx"`) {
		t.Errorf("err = %v", err)
	}
}
