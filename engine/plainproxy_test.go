package engine

import (
	"bufio"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/configs"
)

// parseResponseHead reads a raw answer head the way the plain proxy's
// client does (header names as the backend spelled them).
func parseResponseHead(tb testing.TB, raw string) *fasthttp.ResponseHeader {
	tb.Helper()
	var h fasthttp.ResponseHeader
	h.DisableNormalizing()
	h.SetNoDefaultContentType(true) // as the plain server's answers have it
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	return &h
}

// TestStripResponseHopByHop: what describes the backend's connection to
// sluice never reaches the client, however the backend spells it; what
// is end to end always does.
func TestStripResponseHopByHop(t *testing.T) {
	for _, tc := range []struct {
		name       string
		head       string
		gone, kept []string // header names, matched without case
	}{
		{"nginx keep-alive", "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
			[]string{"Connection"}, []string{"Server", "Content-Length"}},
		{"lower case connection names a header", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, X-Hop\r\nx-hop: 1\r\nx-end: 2\r\n\r\n",
			[]string{"Connection", "X-Hop"}, []string{"X-End", "Content-Length"}},
		{"every standard hop-by-hop header", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKEEP-ALIVE: timeout=5\r\nproxy-connection: keep-alive\r\nUpgrade: h2c\r\nte: trailers\r\nX-End: 1\r\n\r\n",
			[]string{"Keep-Alive", "Proxy-Connection", "Upgrade", "TE"}, []string{"X-End"}},
		{"two Connection headers", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-A\r\nConnection: x-b\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n",
			[]string{"Connection", "X-A", "X-B"}, []string{"X-C"}},
		{"close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-End: 1\r\n\r\n",
			[]string{"Connection"}, []string{"X-End"}},
		{"nothing to strip", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\n",
			nil, []string{"Content-Type", "Content-Length", "Set-Cookie"}},
		{"a listed end-to-end name is the backend's call", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Type\r\nContent-Type: text/plain\r\n\r\n",
			[]string{"Content-Type"}, []string{"Content-Length"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := parseResponseHead(t, tc.head)
			stripResponseHopByHop(h)
			out := strings.ToLower(h.String())
			for _, n := range tc.gone {
				if strings.Contains(out, "\n"+strings.ToLower(n)+":") {
					t.Errorf("%s still there:\n%s", n, out)
				}
			}
			for _, n := range tc.kept {
				if !strings.Contains(out, "\n"+strings.ToLower(n)+":") {
					t.Errorf("%s lost:\n%s", n, out)
				}
			}
			if h.ConnectionClose() {
				t.Error("the backend's Connection: close would close the client's connection")
			}
		})
	}
}

// BenchmarkStripResponseHopByHop: the common answer (a keep-alive backend
// such as nginx) costs no allocation.
func BenchmarkStripResponseHopByHop(b *testing.B) {
	const head = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 12:45:50 GMT\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: keep-alive\r\n\r\n"
	var parsed, h fasthttp.ResponseHeader
	parsed.DisableNormalizing()
	if err := parsed.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		parsed.CopyTo(&h)
		stripResponseHopByHop(&h)
	}
	if strings.Contains(strings.ToLower(h.String()), "connection:") {
		b.Fatalf("Connection left in\n%s", h.String())
	}
}

// TestPlainRequestHopByHopAnySpelling: a client's hop-by-hop headers stay
// on its own hop however it spells them: fasthttp keeps names as sent.
func TestPlainRequestHopByHopAnySpelling(t *testing.T) {
	be := startHTTPBackend(t)
	p := startProxy(t, plainConfig(be.addr, ""))
	c, r := dialProxy(t, p.addr)
	resp, _ := exchange(t, c, r, "GET /api/spell HTTP/1.1\r\nhost: site.test\r\n"+
		"connection: keep-alive, x-secret\r\nx-secret: s\r\nUPGRADE: h2c\r\nkeep-alive: 300\r\n"+
		"proxy-authorization: Basic eA==\r\nte: trailers\r\nx-end-to-end: yes\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("answer %d", resp.StatusCode)
	}
	got := be.last(t)
	for _, h := range []string{"Upgrade", "X-Secret", "Keep-Alive", "Proxy-Authorization", "Te"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("backend got %s: %q", h, v)
		}
	}
	if v := got.Header.Values("Connection"); len(v) > 0 {
		t.Errorf("backend got Connection: %q", v)
	}
	if got.Header.Get("X-End-To-End") != "yes" {
		t.Errorf("end-to-end header lost: %v", got.Header)
	}
}

// bareProxyServer is a plainServer and a location with no listener or
// config behind them: enough for its backend pools.
func bareProxyServer() (*plainServer, *location) {
	return newPlainServer(&Engine{goFront: &goFront{}, log: zap.NewNop()}, &listener{}, false), &location{cfg: &configs.Location{}}
}

// TestHostClientOnePoolPerBackend: requests that race to a backend nobody
// has used yet all get the same keep-alive pool, and no pool is lost when
// pools for other backends are added meanwhile.
func TestHostClientOnePoolPerBackend(t *testing.T) {
	p, loc := bareProxyServer()
	const backends, racers = 16, 8
	got := make([][racers]*fasthttp.HostClient, backends)
	var wg sync.WaitGroup
	for r := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range backends {
				a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(8000+i))
				got[i][r] = p.hostClient(loc, a)
			}
		}()
	}
	wg.Wait()
	for i := range backends {
		for r := 1; r < racers; r++ {
			if got[i][r] != got[i][0] {
				t.Fatalf("backend %d: two pools", i)
			}
		}
	}
	if n := len(*p.clients.Load()); n != backends {
		t.Fatalf("%d pools kept, want %d", n, backends)
	}
}

// BenchmarkHostClientLookup: finding a backend's keep-alive pool, which
// every proxied request does, from all CPUs at once: no lock, no
// allocation.
func BenchmarkHostClientLookup(b *testing.B) {
	p, loc := bareProxyServer()
	addrs := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8001"), netip.MustParseAddrPort("127.0.0.1:8002")}
	for _, a := range addrs {
		p.hostClient(loc, a)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if p.hostClient(loc, addrs[i&1]) == nil {
				b.Fatal("no pool")
			}
			i++
		}
	})
}
