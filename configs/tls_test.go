package configs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes base.pem and base.key (a self-signed certificate for
// name) into dir.
func selfSigned(t *testing.T, dir, base, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	must(t, os.WriteFile(filepath.Join(dir, base+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, base+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	selfSigned(t, dir, "a", "a.test")
	selfSigned(t, dir, "b", "b.test")
	must(t, os.WriteFile(filepath.Join(dir, "ca.pem"), mustRead(t, filepath.Join(dir, "a.pem")), 0o600))
	path := filepath.Join(dir, "sluice.toml")
	must(t, os.WriteFile(path, []byte(`
[[server]]
listen = ["127.0.0.1:8443"]
  [server.tls]
  certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "b.pem", key = "b.key" }]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "wss://10.0.0.1:9443"
  [[server.location]]
  path = "/api/"
  proxy_pass = "https://10.0.0.2:9443"
  upstream_tls = { server_name = "api.internal", ca_file = "ca.pem", verify = false }
`), 0o600))
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Servers[0]
	if s.TLS.MinVersion != "1.2" || len(s.TLS.Certificates) != 2 {
		t.Errorf("tls = %+v", s.TLS)
	}
	if got := c.ResolvePath("a.pem"); got != filepath.Join(dir, "a.pem") {
		t.Errorf("ResolvePath = %q", got)
	}
	ws, api := s.Locations[0], s.Locations[1]
	if !ws.TLSUpstream() || !ws.UpstreamTLS.VerifyUpstream() || ws.Upstream.Servers[0] != "10.0.0.1:9443" {
		t.Errorf("/ws/: %+v %+v %+v", ws, ws.UpstreamTLS, ws.Upstream)
	}
	if !api.TLSUpstream() || api.UpstreamTLS.VerifyUpstream() || api.UpstreamTLS.ServerName != "api.internal" {
		t.Errorf("/api/: %+v", api.UpstreamTLS)
	}
	// Apply clones deeply: the copy's TLS tables are its own.
	c2, err := Apply(c, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Servers[0].TLS == s.TLS || c2.Servers[0].Locations[1].UpstreamTLS == api.UpstreamTLS {
		t.Error("Apply shares TLS tables with its argument")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	selfSigned(t, dir, "a", "a.test")
	selfSigned(t, dir, "b", "b.test")
	tests := []struct {
		name, toml, want string
		line             int
	}{
		{"key of another certificate", `
[[server]]
listen = ["127.0.0.1:8443"]
  [server.tls]
  certificates = [
    { cert = "a.pem", key = "b.key" },
  ]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
`, "server[0].tls.certificates[0].key: cannot load", 6},
		{"missing file", `
[[server]]
listen = ["127.0.0.1:8443"]
  [server.tls]
  certificates = [{ cert = "nope.pem", key = "a.key" }]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
`, "nope.pem", 5},
		{"unknown min_version and no certificates", `
[[server]]
listen = ["127.0.0.1:8443"]
  [server.tls]
  min_version = "1.1"
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
`, "unknown TLS version \"1.1\"", 5},
		{"TLS and plaintext on one address", `
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["a.test"]
  [server.tls]
  certificates = [{ cert = "a.pem", key = "a.key" }]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["b.test"]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
`, "must all be TLS or all plaintext", 11},
		{"upstream_tls without wss", `
[[server]]
listen = ["127.0.0.1:8080"]
  [[server.location]]
  path = "/"
  proxy_pass = "127.0.0.1:9000"
  upstream_tls = { verify = false }
`, "needs a TLS proxy_pass", 7},
		{"ca_file missing", `
[[server]]
listen = ["127.0.0.1:8080"]
  [[server.location]]
  path = "/"
  proxy_pass = "wss://127.0.0.1:9000"
  upstream_tls = { ca_file = "none.pem" }
`, "none.pem", 7},
		{"ws scheme still refused", `
[[server]]
listen = ["127.0.0.1:8080"]
  [[server.location]]
  path = "/"
  proxy_pass = "ws://127.0.0.1:9000"
`, "drop the", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "sluice.toml")
			must(t, os.WriteFile(path, []byte(tt.toml), 0o600))
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Line != tt.line {
				t.Fatalf("err = %v, want line %d", err, tt.line)
			}
		})
	}
}
