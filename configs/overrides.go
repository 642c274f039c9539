package configs

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FlagsSource is Config.Source for a config built from --listen/--proxy.
const FlagsSource = "flags"

// Overrides are the command-line settings that Apply lays over a config.
// A nil pointer or empty slice means "flag not given". RegisterFlags
// defines the matching flags.
type Overrides struct {
	// Listen (--listen, repeatable) replaces the listen list of every
	// server. Without a config file it defaults to DefaultListen.
	Listen []string
	// Proxies (--proxy, repeatable) each add a location to the server
	// built from flags: "PATH=HOST:PORT[,HOST:PORT...]", e.g.
	// "/ws/=127.0.0.1:9000" or "/chat/=127.0.0.1:9001,127.0.0.1:9002".
	// Only without a config file.
	Proxies []string
	// Statics (--static, repeatable) each add a static location to the
	// server built from flags: "PATH=DIR", e.g. "/=./public": root DIR,
	// index.html, and try_files $uri $uri/ PATH/index.html, so a
	// single-page app's routes fall back to its index. Only without a
	// config file.
	Statics []string
	// Admin (--admin) sets admin.listen: "127.0.0.1:9901".
	Admin string
	// PIDFile (--pid-file) sets pid_file.
	PIDFile string
	// LogLevel (--log-level) sets log.level.
	LogLevel string
	// Workers (--workers) sets workers.
	Workers *int
	// ConnectTimeout, ReadTimeout and SendTimeout (--connect-timeout,
	// --read-timeout, --send-timeout) set that timeout on every location.
	ConnectTimeout, ReadTimeout, SendTimeout *Duration
	// HeaderTimeout (--header-timeout) sets client_header_timeout on
	// every server.
	HeaderTimeout *Duration
	// MaxHeaderBytes (--max-header-bytes) sets max_header_bytes on every
	// server.
	MaxHeaderBytes *Size
}

// Help texts for the override flags; RegisterFlags uses them, and they
// state the rule Apply follows.
const (
	ListenHelp = "address to listen on, host:port (repeatable). With --config or the built-in default it replaces the listen addresses of every [[server]]; alone with --proxy it defaults to " + DefaultListen
	ProxyHelp  = "proxy a path prefix to backends: PATH=HOST:PORT[,HOST:PORT...], e.g. /ws/=127.0.0.1:9000 (`PREFIX=ADDR`, repeatable; several backends are balanced round robin). " +
		"Builds a config from flags alone, like caddy reverse-proxy: cannot be combined with --config (put the location in the file instead)"
	StaticHelp = "serve files under a path prefix: PATH=DIR, e.g. /=./public (`PREFIX=DIR`, repeatable). DIR is the document root, as nginx's root: /app/x.js is DIR/app/x.js. index.html for directories, and unknown paths fall back to PREFIX/index.html (a single-page app). " +
		"Builds a config from flags alone, with --proxy: cannot be combined with --config"
	PIDFileHelp        = "write the process ID to this `FILE` (overrides pid_file; `sluice reload` reads it)"
	AdminHelp          = "serve /metrics, /status and /healthz on this `ADDR`ess, e.g. 127.0.0.1:9901 (overrides [admin] listen; keep it on loopback)"
	LogLevelHelp       = "log level: debug, info, warn or error (overrides [log] level)"
	WorkersHelp        = "number of event loops, 0 = one per CPU (overrides workers)"
	ConnectTimeoutHelp = "backend connect timeout for every location, e.g. 60s (overrides connect_timeout)"
	ReadTimeoutHelp    = "max idle time between two reads from a backend, for every location, e.g. 3600s (overrides read_timeout)"
	SendTimeoutHelp    = "max time a write to either peer may stay blocked, for every location (overrides send_timeout)"
	HeaderTimeoutHelp  = "time a client has to send its request head, for every server, e.g. 10s (overrides client_header_timeout)"
	MaxHeaderBytesHelp = "max request head size for every server, e.g. 8k (overrides max_header_bytes)"
)

// RegisterFlags defines --listen, --proxy, --log-level, --workers,
// --connect-timeout, --read-timeout, --send-timeout, --header-timeout and
// --max-header-bytes on fs, storing into o. --config itself is the
// caller's: it decides between Load and passing nil to Apply.
func (o *Overrides) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("listen", ListenHelp, func(s string) error {
		o.Listen = append(o.Listen, s)
		return nil
	})
	fs.Func("proxy", ProxyHelp, func(s string) error {
		o.Proxies = append(o.Proxies, s)
		return nil
	})
	fs.Func("static", StaticHelp, func(s string) error {
		o.Statics = append(o.Statics, s)
		return nil
	})
	fs.StringVar(&o.Admin, "admin", "", AdminHelp)
	fs.StringVar(&o.PIDFile, "pid-file", "", PIDFileHelp)
	fs.StringVar(&o.LogLevel, "log-level", "", LogLevelHelp)
	fs.Func("workers", WorkersHelp, func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		o.Workers = &n
		return nil
	})
	durationFlag(fs, "connect-timeout", ConnectTimeoutHelp, &o.ConnectTimeout)
	durationFlag(fs, "read-timeout", ReadTimeoutHelp, &o.ReadTimeout)
	durationFlag(fs, "send-timeout", SendTimeoutHelp, &o.SendTimeout)
	durationFlag(fs, "header-timeout", HeaderTimeoutHelp, &o.HeaderTimeout)
	fs.Func("max-header-bytes", MaxHeaderBytesHelp, func(s string) error {
		n, err := ParseSize(s)
		if err != nil {
			return err
		}
		o.MaxHeaderBytes = &n
		return nil
	})
}

func durationFlag(fs *flag.FlagSet, name, help string, dst **Duration) {
	fs.Func(name, help, func(s string) error {
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		*dst = &d
		return nil
	})
}

// Apply lays command-line overrides over cfg and validates the result. It
// never modifies cfg; it returns a new Config.
//
// The rule, chosen to match what nginx and Caddy users expect:
//
//   - cfg == nil and --proxy given: the config is built from flags alone,
//     like `caddy reverse-proxy --from ... --to ...`: one server listening
//     on --listen (default 127.0.0.1:8080), one location per --proxy, every
//     other key at its default. Source is "flags".
//   - cfg == nil and no --proxy: the embedded default (as `nginx` without
//     -c runs its built-in conf path), with the overrides below.
//   - cfg != nil and --proxy given: an error. Mixing a file's locations with
//     flag ones would leave the reader of the file unable to tell what runs.
//   - --listen with a config (file or default): replaces the listen
//     addresses of every [[server]], the common "same config, other port"
//     case. Servers then share the address and must differ by server_name,
//     as Validate checks.
//   - --log-level, --workers: set that key; timeouts and sizes: set that
//     key on every server or location.
//
// Errors about a flag's own value name the flag ("--proxy: ..."); errors
// about values a flag replaced no longer point into the file.
func Apply(cfg *Config, o Overrides) (*Config, error) {
	l := &errorList{}
	switch {
	case cfg == nil && len(o.Proxies)+len(o.Statics) > 0:
		cfg = fromFlags(l, o)
	case cfg == nil:
		cfg = Default()
	case len(o.Proxies) > 0:
		return nil, &ConfigError{Path: "--proxy", Msg: "cannot be combined with --config " + strconv.Quote(cfg.Source) + ": use either --config or --listen/--proxy (or add the location to the file)"}
	case len(o.Statics) > 0:
		return nil, &ConfigError{Path: "--static", Msg: "cannot be combined with --config " + strconv.Quote(cfg.Source) + ": use either --config or --listen/--static (or add the location to the file)"}
	default:
		cfg = cfg.clone()
	}
	for _, a := range o.Listen {
		if _, msg := checkHostPort(a, false); msg != "" {
			l.add("--listen", "%s", msg)
		}
	}
	checkDurationFlag(l, "--connect-timeout", o.ConnectTimeout)
	checkDurationFlag(l, "--read-timeout", o.ReadTimeout)
	checkDurationFlag(l, "--send-timeout", o.SendTimeout)
	checkDurationFlag(l, "--header-timeout", o.HeaderTimeout)
	if o.MaxHeaderBytes != nil {
		checkSize(l, "--max-header-bytes", *o.MaxHeaderBytes)
	}
	if o.Admin != "" {
		if _, msg := checkHostPort(o.Admin, false); msg != "" {
			l.add("--admin", "%s", msg)
		}
	}
	switch o.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		l.add("--log-level", "unknown level %q (want debug, info, warn or error)", o.LogLevel)
	}
	if o.Workers != nil && *o.Workers < 0 {
		l.add("--workers", "must be 0 (one per CPU) or more, got %d", *o.Workers)
	}
	if err := l.err(); err != nil {
		return nil, err
	}

	if o.Admin != "" {
		cfg.Admin.Listen = o.Admin
		cfg.pos.forget("admin.listen")
	}
	if o.PIDFile != "" {
		cfg.PIDFile = o.PIDFile
		cfg.pos.forget("pid_file")
	}
	if o.LogLevel != "" {
		cfg.Log.Level = o.LogLevel
		cfg.pos.forget("log.level")
	}
	if o.Workers != nil {
		cfg.Workers = *o.Workers
		cfg.pos.forget("workers")
	}
	for i, s := range cfg.Servers {
		if s == nil {
			continue
		}
		sp := "server[" + strconv.Itoa(i) + "]"
		if len(o.Listen) > 0 {
			s.Listen = append([]string(nil), o.Listen...)
			cfg.pos.forget(sp + ".listen")
		}
		set(&s.ClientHeaderTimeout, o.HeaderTimeout, cfg.pos, sp+".client_header_timeout")
		set(&s.MaxHeaderBytes, o.MaxHeaderBytes, cfg.pos, sp+".max_header_bytes")
		for j, loc := range s.Locations {
			if loc == nil {
				continue
			}
			lp := sp + ".location[" + strconv.Itoa(j) + "]"
			set(&loc.ConnectTimeout, o.ConnectTimeout, cfg.pos, lp+".connect_timeout")
			set(&loc.ReadTimeout, o.ReadTimeout, cfg.pos, lp+".read_timeout")
			set(&loc.SendTimeout, o.SendTimeout, cfg.pos, lp+".send_timeout")
		}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func set[T Duration | Size](dst *T, v *T, p positions, path string) {
	if v != nil {
		*dst = *v
		p.forget(path)
	}
}

func checkDurationFlag(l *errorList, name string, d *Duration) {
	if d != nil && *d <= 0 {
		l.add(name, "must be > 0")
	}
}

// fromFlags builds the one-server config of the --proxy/--static quick
// path.
func fromFlags(l *errorList, o Overrides) *Config {
	s := &Server{Listen: o.Listen}
	if len(s.Listen) == 0 {
		s.Listen = []string{DefaultListen}
	}
	seen := map[string]bool{}
	for _, p := range o.Proxies {
		path, backends, ok := pathFlag(l, "--proxy", p, "HOST:PORT[,HOST:PORT...], e.g. \"/ws/=127.0.0.1:9000\"", seen)
		if !ok {
			continue
		}
		bad := false
		for _, b := range strings.Split(backends, ",") {
			if _, msg := checkHostPort(strings.TrimSpace(b), true); msg != "" {
				l.add("--proxy", "%s", msg)
				bad = true
			}
		}
		if !bad {
			s.Locations = append(s.Locations, &Location{Path: path, ProxyPass: backends})
		}
	}
	for _, p := range o.Statics {
		path, dir, ok := pathFlag(l, "--static", p, "DIR, e.g. \"/=./public\"", seen)
		if !ok {
			continue
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			l.add("--static", "%q: %s is not a directory", p, dir)
			continue
		}
		s.Locations = append(s.Locations, &Location{Path: path, Root: dir,
			TryFiles: []string{"$uri", "$uri/", strings.TrimSuffix(path, "/") + "/index.html"}})
	}
	return &Config{Source: FlagsSource, Servers: []*Server{s}}
}

// pathFlag splits a PATH=VALUE flag value and checks the path, once per
// path across every such flag (seen). want describes VALUE for the error.
func pathFlag(l *errorList, flag, p, want string, seen map[string]bool) (path, value string, ok bool) {
	path, value, ok = strings.Cut(p, "=")
	if !ok || path == "" || value == "" {
		l.add(flag, "%q: want PATH=%s", p, want)
		return "", "", false
	}
	if msg := checkLocationPath(path); msg != "" {
		l.add(flag, "%s", msg)
		return "", "", false
	}
	if seen[path] {
		l.add(flag, "path %q is given twice", path)
		return "", "", false
	}
	seen[path] = true
	return path, value, true
}
