package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/configs"
)

// testCA is a certificate authority made up by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "sluice test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf writes a certificate for names (DNS names, or IP addresses) and
// its key into dir as base.pem and base.key and returns both paths and
// the certificate's serial number.
func (ca *testCA) leaf(t testing.TB, dir, base string, names ...string) (certPath, keyPath string, sn *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn = nextSerial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	writeFile(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	return certPath, keyPath, sn
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	// Write then rename, as a certificate renewal tool does, so a reload
	// never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsSetup is a CA, two site certificates and a proxy terminating TLS
// with them in front of a plaintext echo backend.
type tlsSetup struct {
	ca     *testCA
	dir    string
	aCert  string
	aKey   string
	aSN    *big.Int
	bSN    *big.Int
	be     *backend
	p      *proxy
	config string
}

func startTLSProxy(t *testing.T, extra string) *tlsSetup {
	t.Helper()
	s := &tlsSetup{ca: newCA(t), dir: t.TempDir()}
	s.aCert, s.aKey, s.aSN = s.ca.leaf(t, s.dir, "a", "a.test")
	bCert, bKey, bSN := s.ca.leaf(t, s.dir, "b", "b.test", "*.b.test")
	s.bSN = bSN
	s.be = startBackend(t, backendOpts{})
	s.config = fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
client_header_timeout = "300ms"
  [server.tls]
  certificates = [
    { cert = %q, key = %q },
    { cert = %q, key = %q },
  ]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  connect_timeout = "1s"
  handshake_timeout = "1s"
%s`, s.aCert, s.aKey, bCert, bKey, s.be.addr, extra)
	s.p = startProxy(t, s.config)
	return s
}

func (s *tlsSetup) dialer(serverName string) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: 3 * time.Second,
		TLSClientConfig:  &tls.Config{RootCAs: s.ca.pool, ServerName: serverName},
	}
}

func (s *tlsSetup) dialWSS(t *testing.T, serverName string) *websocket.Conn {
	t.Helper()
	c, resp, err := s.dialer(serverName).Dial("wss://"+s.p.addr+"/ws/", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial wss: %v (status %d)", err, status)
	}
	return c
}

func echoOnce(t *testing.T, c *websocket.Conn, typ int, msg []byte) {
	t.Helper()
	if err := c.WriteMessage(typ, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	gt, got, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if gt != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo: type %d len %d, want type %d len %d", gt, len(got), typ, len(msg))
	}
}

func closeWS(t *testing.T, c *websocket.Conn) {
	t.Helper()
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("close: %v", err)
			}
			break
		}
	}
	c.Close()
}

func TestTLSEcho(t *testing.T) {
	s := startTLSProxy(t, "")
	base := openFDs(t)
	c := s.dialWSS(t, "a.test")
	c.SetReadLimit(4 << 20)
	echoOnce(t, c, websocket.TextMessage, []byte("hello over TLS"))
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	echoOnce(t, c, websocket.BinaryMessage, big)
	closeWS(t, c)

	h, _, _ := s.be.lastHeader(t)
	if got := h.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
	expectFDs(t, base)
	waitPending(t, s.p.e)
}

func waitPending(t *testing.T, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for e.Pending() != 0 || e.Tunnels() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending = %d, tunnels = %d after every client left", e.Pending(), e.Tunnels())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peer makes a bare TLS handshake and returns the connection state.
func peer(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func TestTLSCertificateBySNI(t *testing.T) {
	s := startTLSProxy(t, "")
	base := openFDs(t)
	tests := []struct {
		sni    string
		want   string
		verify bool
	}{
		{"a.test", "a.test", true},
		{"b.test", "b.test", true},
		{"x.b.test", "b.test", true},      // wildcard
		{"A.TEST", "a.test", true},        // case-insensitive
		{"unknown.test", "a.test", false}, // none matches: the first
		{"", "a.test", false},             // no SNI: the first
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: s.ca.pool, ServerName: tt.sni, InsecureSkipVerify: !tt.verify}
			st, err := peer(t, s.p.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.PeerCertificates[0].DNSNames; !slices.Contains(got, tt.want) {
				t.Fatalf("certificate names %v, want %s", got, tt.want)
			}
		})
	}
	t.Run("ALPN", func(t *testing.T) {
		st, err := peer(t, s.p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1", st.NegotiatedProtocol)
		}
		if st.Version < tls.VersionTLS12 {
			t.Fatalf("version %x", st.Version)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := peer(t, s.p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})
	expectFDs(t, base)
}

func TestTLSReloadCertificates(t *testing.T) {
	s := startTLSProxy(t, "")
	old := s.dialWSS(t, "a.test")
	defer old.Close()
	echoOnce(t, old, websocket.TextMessage, []byte("before"))

	serialOf := func() *big.Int { return servedSerial(t, s.p.addr, s.ca, "a.test") }
	if got := serialOf(); got.Cmp(s.aSN) != 0 {
		t.Fatalf("serial %v, want %v", got, s.aSN)
	}
	_, _, newSN := s.ca.leaf(t, s.dir, "a", "a.test") // replaces a.pem and a.key
	if err := s.p.e.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(); got.Cmp(newSN) != 0 {
		t.Fatalf("after reload: serial %v, want the new %v", got, newSN)
	}
	echoOnce(t, old, websocket.TextMessage, []byte("after")) // untouched by the reload

	// A key that does not match: the reload fails and the current pair stays.
	other := t.TempDir()
	_, otherKey, _ := s.ca.leaf(t, other, "x", "a.test")
	b, _ := os.ReadFile(otherKey)
	writeFile(t, s.aKey, b)
	if err := s.p.e.ReloadCertificates(); err == nil || !strings.Contains(err.Error(), "a.pem") {
		t.Fatalf("reload with a mismatched key: %v, want an error naming a.pem", err)
	}
	if got := serialOf(); got.Cmp(newSN) != 0 {
		t.Fatalf("after a failed reload: serial %v, want %v kept", got, newSN)
	}
	echoOnce(t, s.dialWSS(t, "a.test"), websocket.TextMessage, []byte("new"))
}

func TestTLSHandshakeTimeout(t *testing.T) {
	s := startTLSProxy(t, "")
	base := openFDs(t)
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		// A handshake record header promising 512 bytes, then 5 of them.
		{"half ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03}},
		// A completed handshake, then no request head.
		{"no head", []byte("tls")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			var c net.Conn
			var err error
			if string(tt.send) == "tls" {
				c, err = tls.Dial("tcp", s.p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"})
			} else {
				c, err = net.Dial("tcp", s.p.addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.send != nil && string(tt.send) != "tls" {
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			got, _ := io.ReadAll(c)
			took := time.Since(start)
			if took < 250*time.Millisecond || took > 2*time.Second {
				t.Fatalf("closed after %v, want about 300ms", took)
			}
			if string(tt.send) == "tls" && statusOf(string(got)) != 408 {
				t.Fatalf("answer %q, want 408", got)
			}
		})
	}
	expectFDs(t, base)
}

// startTLSBackend is an echo WebSocket server on TLS with a certificate of
// ca for 127.0.0.1; it records X-Forwarded-Proto.
func startTLSBackend(t *testing.T, ca *testCA) (addr string, protos *[]string) {
	t.Helper()
	dir := t.TempDir()
	cp, kp, _ := ca.leaf(t, dir, "backend", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := []string{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Forwarded-Proto"))
		mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	}), ErrorLog: nil}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &seen
}

func TestTLSUpstream(t *testing.T) {
	ca := newCA(t)
	beAddr, protos := startTLSBackend(t, ca)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.pem)
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "wss://%[1]s"
  upstream_tls = { ca_file = %[2]q }
  connect_timeout = "1s"
  handshake_timeout = "1s"
  [[server.location]]
  path = "/untrusted/"
  proxy_pass = "wss://%[1]s"
  connect_timeout = "1s"
  handshake_timeout = "1s"
  [[server.location]]
  path = "/noverify/"
  proxy_pass = "https://%[1]s"
  upstream_tls = { verify = false }
  connect_timeout = "1s"
  handshake_timeout = "1s"
`, beAddr, caFile))
	base := openFDs(t)

	for _, path := range []string{"/ws/", "/noverify/"} {
		c := dialWS(t, p, path, nil, nil)
		echoOnce(t, c, websocket.TextMessage, []byte("to a TLS backend"))
		big := make([]byte, 1<<20)
		_, _ = rand.Read(big)
		c.SetReadLimit(4 << 20)
		echoOnce(t, c, websocket.BinaryMessage, big)
		closeWS(t, c)
	}
	if len(*protos) == 0 || (*protos)[0] != "http" {
		t.Errorf("X-Forwarded-Proto seen by the backend: %v, want http", *protos)
	}

	resp := rawExchange(t, p.addr, strings.Replace(upgradeHead, "/ws/chat", "/untrusted/chat", 1)+"\r\n", 3*time.Second)
	if statusOf(resp) != 502 {
		t.Fatalf("untrusted backend certificate: %q, want 502", resp)
	}
	expectFDs(t, base)
	waitPending(t, p.e)
}

// TestTLSBothSides terminates TLS and speaks TLS to the backend.
func TestTLSBothSides(t *testing.T) {
	ca := newCA(t)
	beAddr, protos := startTLSBackend(t, ca)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.pem)
	cp, kp, _ := ca.leaf(t, dir, "site", "a.test")
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [server.tls]
  certificates = [{ cert = %q, key = %q }]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "wss://%s"
  upstream_tls = { ca_file = %q }
`, cp, kp, beAddr, caFile))
	d := &websocket.Dialer{HandshakeTimeout: 3 * time.Second, TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}}
	c, _, err := d.Dial("wss://"+p.addr+"/ws/", nil)
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c, websocket.TextMessage, []byte("TLS both ways"))
	closeWS(t, c)
	if len(*protos) != 1 || (*protos)[0] != "https" {
		t.Errorf("X-Forwarded-Proto %v, want https", *protos)
	}
}

// TestTLSStopLeavesNothing stops an engine with an open wss tunnel and a
// client stalled in its handshake: no goroutine of the TLS path survives.
func TestTLSStopLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	ca := newCA(t)
	dir := t.TempDir()
	cp, kp, _ := ca.leaf(t, dir, "site", "a.test")
	be := startBackend(t, backendOpts{})
	addr := freeAddr(t)
	cfgText := strings.ReplaceAll(fmt.Sprintf(`
[log]
access_log = "off"
[[server]]
listen = ["{{listen}}"]
  [server.tls]
  certificates = [{ cert = %q, key = %q }]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, cp, kp, be.addr), "{{listen}}", addr)
	e := mustEngine(t, cfgText)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, addr)
	d := &websocket.Dialer{HandshakeTimeout: 3 * time.Second, TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}}
	c, _, err := d.Dial("wss://"+addr+"/ws/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("tunnel still open after Stop")
	}
	c.Close()
	stalled.Close()
	be.stop()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustEngine(t *testing.T, text string) *Engine {
	t.Helper()
	cfg, err := configs.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	cfg.Workers = 2
	e, err := New(cfg, Logs{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestTLSAdmission: the admission rules (guard.go) judge TLS clients too.
func TestTLSAdmission(t *testing.T) {
	s := startTLSProxy(t, `  deny = ["all"]`)
	base := openFDs(t)
	_, resp, err := s.dialer("a.test").Dial("wss://"+s.p.addr+"/ws/", nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("denied client: err %v, response %+v, want 403", err, resp)
	}
	if n := s.p.e.Refusals()[RuleAccess]; n != 1 {
		t.Errorf("Refusals()[access] = %d, want 1", n)
	}
	expectFDs(t, base)
}

// TestTLSHeadLimits: a TLS client is held to max_header_bytes and gets the
// same answers as a plaintext one for a bad or unroutable head.
func TestTLSHeadLimits(t *testing.T) {
	s := startTLSProxy(t, "")
	base := openFDs(t)
	for _, tt := range []struct {
		name, head string
		want       int
	}{
		{"too large", upgradeHead + "X-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431},
		{"no location", strings.Replace(upgradeHead, "/ws/chat", "/nope", 1) + "\r\n", 404},
		{"bad upgrade", strings.Replace(upgradeHead, "Version: 13", "Version: 8", 1) + "\r\n", 426},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", s.p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			_, _ = c.Write([]byte(tt.head))
			got, _ := io.ReadAll(c)
			if statusOf(string(got)) != tt.want {
				t.Fatalf("answer %q, want %d", got, tt.want)
			}
		})
	}
	expectFDs(t, base)
}

// servedSerial is the serial number of the certificate addr serves for
// the server name.
func servedSerial(t *testing.T, addr string, ca *testCA, name string) *big.Int {
	t.Helper()
	st, err := peer(t, addr, &tls.Config{RootCAs: ca.pool, ServerName: name})
	if err != nil {
		t.Fatal(err)
	}
	return st.PeerCertificates[0].SerialNumber
}

// TestTLSReloadOnSIGHUP: the real binary, not the method. A sluice child
// process serves wss://; the certificate files are replaced on disk and the
// process gets SIGHUP: a new connection sees the new certificate, and a
// tunnel opened before still echoes.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	sluiceBin, _ := buildBinaries(t)
	s := &tlsSetup{ca: newCA(t), dir: t.TempDir()}
	s.aCert, s.aKey, s.aSN = s.ca.leaf(t, s.dir, "a", "a.test")
	be := startBackend(t, backendOpts{})
	addr := freeAddr(t)
	cmd := startSluiceTLS(t, sluiceBin, s.dir, "a", addr, be.addr)

	d := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"}, HandshakeTimeout: 3 * time.Second}
	old, _, err := d.Dial("wss://"+addr+"/ws/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	echoOnce(t, old, websocket.TextMessage, []byte("before"))
	serialOf := func() *big.Int { return servedSerial(t, addr, s.ca, "a.test") }
	if got := serialOf(); got.Cmp(s.aSN) != 0 {
		t.Fatalf("serial %v, want %v", got, s.aSN)
	}
	_, _, newSN := s.ca.leaf(t, s.dir, "a", "a.test") // replaces a.pem and a.key
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for serialOf().Cmp(newSN) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the old certificate is still served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	echoOnce(t, old, websocket.TextMessage, []byte("after")) // untouched by the reload
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("sluice exited on SIGHUP: %v", err)
	}
}

// TestTLSProxyProtocol: on a TLS listener with proxy_protocol = true the
// PROXY header comes first, in plaintext, then the TLS handshake. A trusted
// balancer's header sets the client address the backend is told; an
// untrusted peer's is consumed but not believed; a connection without a
// header is closed without an answer, and the refusal is counted.
func TestTLSProxyProtocol(t *testing.T) {
	s := startTLSProxy(t, "")
	cfg := strings.Replace(s.config, "client_header_timeout = \"300ms\"",
		"client_header_timeout = \"1s\"\nproxy_protocol = true\nreal_ip_header = \"proxy_protocol\"\nreal_ip_from = [\"127.0.0.2/32\"]", 1)
	p := startProxy(t, cfg)
	for _, tc := range []struct {
		name, source, header, want string
	}{
		{"trusted", "127.0.0.2", "PROXY TCP4 203.0.113.7 127.0.0.1 5000 443\r\n", "203.0.113.7"},
		{"untrusted", "127.0.0.3", "PROXY TCP4 198.51.100.9 127.0.0.1 5000 443\r\n", "127.0.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &websocket.Dialer{
				NetDial: func(network, addr string) (net.Conn, error) {
					nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.source)}}
					c, err := nd.Dial(network, addr)
					if err == nil {
						_, err = c.Write([]byte(tc.header))
					}
					return c, err
				},
				TLSClientConfig:  &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"},
				HandshakeTimeout: 3 * time.Second,
			}
			c, _, err := d.Dial("wss://"+p.addr+"/ws/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoOnce(t, c, websocket.TextMessage, []byte("via a balancer"))
			s.be.mu.Lock()
			got := s.be.headers[len(s.be.headers)-1].Get("X-Real-IP")
			s.be.mu.Unlock()
			if got != tc.want {
				t.Fatalf("backend saw X-Real-IP %q, want %q", got, tc.want)
			}
		})
	}
	before := p.e.Refusals()[RuleProxyProtocol]
	c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"})
	if err == nil {
		c.Close()
		t.Fatal("a TLS handshake without a PROXY header succeeded")
	}
	if after := p.e.Refusals()[RuleProxyProtocol]; after != before+1 {
		t.Fatalf("proxy_protocol refusals %d -> %d, want one more", before, after)
	}
}

// TestBenchOverWSS: the load generator speaks wss:// (the TLS handshake
// benchmark depends on it): a closed-loop and a handshake run through a
// TLS-terminating sluice add up, with no errors.
func TestBenchOverWSS(t *testing.T) {
	s := startTLSProxy(t, "")
	for _, mode := range []bench.Mode{bench.ModeClosed, bench.ModeHandshake} {
		res, err := bench.Run(context.Background(), bench.Options{
			Mode: mode, URL: "wss://" + s.p.addr + "/ws/", Conns: 4, Payload: 64, Duration: 500 * time.Millisecond,
			TLS: &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) > 0 || res.Echoed == 0 || res.Sent != res.Echoed {
			t.Fatalf("%s over wss://: sent %d echoed %d errors %v", mode, res.Sent, res.Echoed, res.Errors)
		}
		if mode == bench.ModeHandshake && res.Handshakes == 0 {
			t.Fatalf("no handshake completed")
		}
	}
	// Verification is on: a client that does not trust the CA fails the
	// TLS handshake and says so.
	res, err := bench.Run(context.Background(), bench.Options{
		Mode: bench.ModeClosed, URL: "wss://" + s.p.addr + "/ws/", Conns: 1, Duration: 200 * time.Millisecond,
		TLS: &tls.Config{ServerName: "a.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["handshake"] == 0 || res.Echoed != 0 {
		t.Fatalf("untrusted certificate: errors %v, echoed %d", res.Errors, res.Echoed)
	}
}

// TestTLSMaxConnectionsBackpressure: a TLS listener at max_connections
// stops accepting: the next client's TCP connection waits in the
// kernel's backlog (its TLS handshake does not start, and it is not
// closed), and is served as soon as a connection ends.
func TestTLSMaxConnectionsBackpressure(t *testing.T) {
	s := startTLSProxy(t, "")
	_ = s.p.e.Stop(context.Background()) // restarted below with a cap
	cfg := strings.Replace(s.config, "[log]", "max_connections = 2\n[log]", 1)
	p := startProxy(t, cfg)
	// waitListening's probe connections are gone once Pending is 0.
	waitFor(t, "probes to end", func() bool { return p.e.Pending() == 0 })
	d := s.dialer("a.test")
	var held []*websocket.Conn
	for i := 0; i < 2; i++ {
		c, _, err := d.Dial("wss://"+p.addr+"/ws/", nil)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	raw, err := net.Dial("tcp", p.addr) // completes in the kernel: the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc := tls.Client(raw, &tls.Config{RootCAs: s.ca.pool, ServerName: "a.test"})
	_ = tc.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if err := tc.Handshake(); err == nil || !os.IsTimeout(err) {
		t.Fatalf("third connection at the cap: handshake %v, want a timeout (waiting, not closed)", err)
	}
	if n := p.e.Refusals()[RuleMaxConnections]; n != 0 {
		t.Fatalf("%d connections shed, want 0", n)
	}
	held[0].Close()
	c, _, err := d.Dial("wss://"+p.addr+"/ws/", nil)
	if err != nil {
		t.Fatalf("after a tunnel ended: %v", err)
	}
	echoOnce(t, c, websocket.TextMessage, []byte("served"))
	c.Close()
	held[1].Close()
}
