package configs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ServerTLS is the [server.tls] table: TLS termination on every listen
// address of the server. Such connections are decrypted in user space
// (crypto/tls), so their tunnels cannot be spliced: they are relayed by two
// goroutines each, with the same handshake, routing and upstream code as
// plaintext tunnels (see ARCHITECTURE.md). ALPN offers only "http/1.1"
// (a WebSocket upgrade is HTTP/1.1; RFC 8441's HTTP/2 form is not served).
//
// The TLS handshake and the request head share one deadline,
// client_header_timeout, counted from accept, as nginx does for its SSL
// handshake.
//
// Servers sharing a listen address must all have a [server.tls] table or
// none. On a TLS address, the certificate is chosen by the client's SNI
// among the certificates of every server on that address; the Host header
// then chooses the server, as on plaintext addresses.
//
// Certificates are read again from disk on SIGHUP; a pair that no longer
// loads keeps the old certificates and is logged. Live tunnels are never
// touched by a reload.
type ServerTLS struct {
	// Certificates are the certificate chains and keys to serve, each
	// { cert = "a.pem", key = "a.key" } (PEM; the cert file may hold the
	// chain, leaf first). Paths are relative to the directory of the config
	// file. The client's SNI picks the certificate whose DNS names match
	// it, an exact name before a wildcard ("*.example.com"); the first
	// certificate answers clients without SNI or with an SNI no
	// certificate names. At least one is required.
	// nginx: ssl_certificate a.pem; ssl_certificate_key a.key; (nginx picks
	// by server_name, then the server's certificate)
	Certificates []*Certificate `toml:"certificates"`

	// MinVersion is the oldest TLS version accepted: "1.2" (the default)
	// or "1.3". TLS 1.0 and 1.1 are never offered (RFC 8996).
	// nginx: ssl_protocols TLSv1.2 TLSv1.3;
	MinVersion string `toml:"min_version"`
}

// Certificate is one certificate chain and its private key.
type Certificate struct {
	// Cert is the PEM certificate chain file, leaf first.
	// nginx: ssl_certificate
	Cert string `toml:"cert"`
	// Key is the PEM private key file of the leaf.
	// nginx: ssl_certificate_key
	Key string `toml:"key"`
}

// UpstreamTLS is a location's upstream_tls table, TLS to the backends of
// a "wss://" or "https://" proxy_pass, e.g.
//
//	upstream_tls = { server_name = "chat.internal", ca_file = "ca.pem" }
type UpstreamTLS struct {
	// ServerName is sent as SNI and is the name the backend's certificate
	// must carry. Default "": the host of each backend's address (a name,
	// or an IP address, which must then be among the certificate's IP
	// SANs).
	// nginx: proxy_ssl_server_name on; proxy_ssl_name NAME;
	ServerName string `toml:"server_name"`

	// CAFile is a PEM bundle of the certificate authorities trusted to
	// sign backends' certificates, relative to the config file's
	// directory. Default "": the system's roots.
	// nginx: proxy_ssl_trusted_certificate ca.pem;
	CAFile string `toml:"ca_file"`

	// Verify checks the backend's certificate chain and name. Default
	// true (nginx defaults to off, which lets anyone on the path between
	// proxy and backend read and change every tunnel).
	// nginx: proxy_ssl_verify on;
	Verify *bool `toml:"verify"`
}

// DefaultTLSMinVersion is ServerTLS.MinVersion's default.
const DefaultTLSMinVersion = "1.2"

// TLSVersion maps a MinVersion value to crypto/tls's constant; ok is
// false for a value Validate refuses.
func TLSVersion(v string) (uint16, bool) {
	switch v {
	case "1.2":
		return tls.VersionTLS12, true
	case "1.3":
		return tls.VersionTLS13, true
	}
	return 0, false
}

// ResolvePath returns p as it should be opened: unchanged if absolute or
// when the config has no file, else relative to the config file's
// directory (nginx resolves relative to its prefix; the file's directory
// keeps a config and its certificates movable together).
func (c *Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.file == "" || c.file == DefaultSource {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

// cutTLSScheme strips "wss://" or "https://" from a proxy_pass value
// (and a trailing "/"), reporting whether it was there.
func cutTLSScheme(pp string) (string, bool) {
	for _, s := range []string{"wss://", "https://"} {
		if len(pp) >= len(s) && strings.EqualFold(pp[:len(s)], s) {
			return strings.TrimSuffix(pp[len(s):], "/"), true
		}
	}
	return pp, false
}

// TLSUpstream reports whether the location's backends speak TLS.
func (l *Location) TLSUpstream() bool {
	_, ok := cutTLSScheme(strings.TrimSpace(l.ProxyPass))
	return ok
}

// VerifyUpstream reports whether the backends' certificates are checked.
func (u *UpstreamTLS) VerifyUpstream() bool { return u == nil || u.Verify == nil || *u.Verify }

func (t *ServerTLS) clone() *ServerTLS {
	if t == nil {
		return nil
	}
	n := *t
	n.Certificates = make([]*Certificate, len(t.Certificates))
	for i, c := range t.Certificates {
		if c != nil {
			cc := *c
			n.Certificates[i] = &cc
		}
	}
	return &n
}

func (u *UpstreamTLS) clone() *UpstreamTLS {
	if u == nil {
		return nil
	}
	n := *u
	if u.Verify != nil {
		v := *u.Verify
		n.Verify = &v
	}
	return &n
}

// validateTLS checks the TLS tables: certificate pairs load, versions are
// known, servers sharing an address agree on TLS, upstream_tls goes with a
// TLS proxy_pass. It fills the TLS defaults first (SetDefaults leaves them
// to it: they depend on the proxy_pass scheme).
func (c *Config) validateTLS(l *errorList) {
	byAddr := map[string]int{} // normalized listen → 1 plaintext, 2 TLS
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		path := "server[" + strconv.Itoa(i) + "]"
		if s.TLS != nil {
			c.validateServerTLS(l, path+".tls", s.TLS)
		}
		kind := 1
		if s.TLS != nil {
			kind = 2
		}
		for j, a := range s.Listen {
			norm, msg := checkHostPort(a, false)
			if msg != "" {
				continue
			}
			if k, ok := byAddr[norm]; ok && k != kind {
				l.add(path+".listen["+strconv.Itoa(j)+"]", "%q is shared with a server that %s [server.tls]: servers on one address must all be TLS or all plaintext", a, map[bool]string{true: "has", false: "has no"}[k == 2])
			}
			byAddr[norm] = kind
		}
		for j, loc := range s.Locations {
			if loc == nil {
				continue
			}
			c.validateUpstreamTLS(l, path+".location["+strconv.Itoa(j)+"]", loc)
		}
	}
}

func (c *Config) validateServerTLS(l *errorList, path string, t *ServerTLS) {
	setString(&t.MinVersion, DefaultTLSMinVersion)
	if _, ok := TLSVersion(t.MinVersion); !ok {
		l.add(path+".min_version", "unknown TLS version %q (want \"1.2\" or \"1.3\")", t.MinVersion)
	}
	if len(t.Certificates) == 0 {
		l.add(path+".certificates", "at least one certificate is required, e.g. certificates = [{ cert = \"site.pem\", key = \"site.key\" }]")
	}
	for k, cert := range t.Certificates {
		cp := path + ".certificates[" + strconv.Itoa(k) + "]"
		switch {
		case cert == nil:
			l.add(cp, "empty certificate")
		case cert.Cert == "":
			l.add(cp+".cert", "missing: the PEM certificate file")
		case cert.Key == "":
			l.add(cp+".key", "missing: the PEM private key file")
		default:
			if _, err := tls.LoadX509KeyPair(c.ResolvePath(cert.Cert), c.ResolvePath(cert.Key)); err != nil {
				l.add(cp+".key", "cannot load the certificate and key: %v", err)
			}
		}
	}
}

func (c *Config) validateUpstreamTLS(l *errorList, path string, loc *Location) {
	if !loc.TLSUpstream() {
		if loc.UpstreamTLS != nil {
			l.add(path+".upstream_tls", "needs a TLS proxy_pass: write proxy_pass = \"wss://%s\"", strings.TrimSpace(loc.ProxyPass))
		}
		return
	}
	if loc.UpstreamTLS == nil {
		loc.UpstreamTLS = &UpstreamTLS{}
	}
	u := loc.UpstreamTLS
	if u.Verify == nil {
		on := true
		u.Verify = &on
	}
	if u.ServerName != "" && !isHostChars(u.ServerName) {
		l.add(path+".upstream_tls.server_name", "invalid server name %q", u.ServerName)
	}
	if u.CAFile != "" {
		if _, err := LoadCAFile(c.ResolvePath(u.CAFile)); err != nil {
			l.add(path+".upstream_tls.ca_file", "%v", err)
		}
	}
}

// LoadCAFile reads a PEM bundle of CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}
