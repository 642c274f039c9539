package upstream

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// dnsServer is a tiny authoritative DNS server on UDP loopback, written
// for these tests: it answers A queries from a table the test changes,
// AAAA queries with no records, and everything else with NXDOMAIN. The
// group reaches it through a real net.Resolver (the pure Go one), so the
// whole lookup path runs: no /etc/hosts, no mock of the resolver.
type dnsServer struct {
	conn *net.UDPConn

	mu      sync.Mutex
	records map[string][]netip.Addr // lower-case name with the final dot
	queries int
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{conn: c, records: map[string][]netip.Addr{}}
	t.Cleanup(func() { c.Close() })
	go d.serve()
	return d
}

func (d *dnsServer) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var list []netip.Addr
	for _, a := range addrs {
		list = append(list, netip.MustParseAddr(a))
	}
	d.records[strings.ToLower(name)+"."] = list
}

// resolver returns a pure-Go resolver whose every query goes to d.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", d.conn.LocalAddr().String())
		},
	}
}

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.conn.WriteToUDP(resp, from)
		}
	}
}

// answer builds the response to one query (RFC 1035 §4.1): the header
// with QR, the question echoed, and A records pointing back at the
// question's name (a compression pointer to offset 12).
func (d *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// Read the question name.
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++ // the root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, ".")) + "."

	d.mu.Lock()
	addrs, known := d.records[name]
	d.queries++
	d.mu.Unlock()

	var answers [][]byte
	rcode := uint16(0)
	switch {
	case !known:
		rcode = 3 // NXDOMAIN
	case qtype == 1: // A
		for _, a := range addrs {
			rr := []byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4}
			b := a.As4()
			answers = append(answers, append(rr, b[:]...))
		}
	}
	out := make([]byte, 12, 512)
	copy(out[0:2], q[0:2])                                     // ID
	binary.BigEndian.PutUint16(out[2:4], 0x8180|rcode)         // QR, RD, RA
	binary.BigEndian.PutUint16(out[4:6], 1)                    // QDCOUNT
	binary.BigEndian.PutUint16(out[6:8], uint16(len(answers))) // ANCOUNT
	out = append(out, question...)
	for _, a := range answers {
		out = append(out, a...)
	}
	return out
}

func TestLookup(t *testing.T) {
	dns := startDNS(t)
	dns.set("backend.test", "10.0.0.3", "10.0.0.1", "10.0.0.2")
	dns.set("empty.test")
	g := &Group{opts: Options{Resolver: dns.resolver()}}
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"127.0.0.1:9000", []string{"127.0.0.1:9000"}, false},
		{"[::1]:80", []string{"[::1]:80"}, false},
		{"[::ffff:10.0.0.1]:80", []string{"10.0.0.1:80"}, false},
		{"backend.test:9000", []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}, false},
		{"BACKEND.test:9000", []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}, false},
		{"empty.test:80", nil, true},
		{"missing.test:80", nil, true},
		{"backend.test:notaport", nil, true},
		{"backend.test", nil, true},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := g.lookup(ctx, tt.in)
		cancel()
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("lookup(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestReresolve: a name's addresses are looked up again every interval;
// new tunnels use the new list at once, servers whose address stays keep
// their counters, tunnels to a removed address end normally, and a failed
// lookup keeps the old list.
func TestReresolve(t *testing.T) {
	dns := startDNS(t)
	dns.set("chat.test", "10.0.0.1", "10.0.0.2")
	var mu sync.Mutex
	var events []Event
	g, err := New(Config{
		Name:         "chat",
		Servers:      []ServerConfig{{Address: "chat.test:9000"}, {Address: "127.0.0.1:9001"}},
		ResolveEvery: 30 * time.Millisecond,
	}, Options{Resolver: dns.resolver(), OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	addrs := func() []string {
		var out []string
		for _, s := range g.Servers() {
			out = append(out, s.Addr.String())
		}
		return out
	}
	if got := addrs(); !slices.Equal(got, []string{"10.0.0.1:9000", "10.0.0.2:9000", "127.0.0.1:9001"}) {
		t.Fatalf("at start: %v", got)
	}
	kept := g.Servers()[1] // 10.0.0.2 stays
	gone := g.Servers()[0] // 10.0.0.1 goes
	gone.conns.Add(1)
	gone.Opened() // a tunnel open across the change
	kept.conns.Add(1)
	kept.Failed()

	g.Start()
	defer g.Stop()
	dns.set("chat.test", "10.0.0.3", "10.0.0.2")
	waitFor(t, 2*time.Second, "the new address", func() bool {
		return slices.Equal(addrs(), []string{"10.0.0.2:9000", "10.0.0.3:9000", "127.0.0.1:9001"})
	})
	if g.Servers()[0] != kept || kept.Failures() != 1 {
		t.Fatal("the server whose address stayed lost its counters")
	}
	for i := 0; i < 30; i++ {
		var sel Selection
		s, err := g.Next(&sel)
		if err != nil {
			t.Fatal(err)
		}
		if s == gone {
			t.Fatal("a new tunnel went to the removed address")
		}
		s.Answered()
	}
	gone.Closed()
	if gone.Conns() != 0 || gone.Live() != 0 || gone.Handshakes() != 1 {
		t.Fatalf("removed server: conns %d live %d", gone.Conns(), gone.Live())
	}

	// A failing lookup keeps what was there.
	dns.mu.Lock()
	delete(dns.records, "chat.test.")
	q := dns.queries
	dns.mu.Unlock()
	waitFor(t, 2*time.Second, "more lookups", func() bool {
		dns.mu.Lock()
		defer dns.mu.Unlock()
		return dns.queries > q+2
	})
	if got := addrs(); !slices.Equal(got, []string{"10.0.0.2:9000", "10.0.0.3:9000", "127.0.0.1:9001"}) {
		t.Fatalf("after failed lookups: %v", got)
	}
	mu.Lock()
	var resolved, failed int
	for _, e := range events {
		switch e.Kind {
		case EventResolved:
			resolved++
		case EventResolveFailed:
			failed++
		}
	}
	mu.Unlock()
	if resolved != 1 || failed == 0 {
		t.Fatalf("events: %d resolved, %d failed", resolved, failed)
	}
}

// TestResolveOnceByDefault: ResolveEvery 0 starts no resolver goroutine.
func TestResolveOnceByDefault(t *testing.T) {
	dns := startDNS(t)
	dns.set("once.test", "10.0.0.1")
	g, err := New(Config{Servers: []ServerConfig{{Address: "once.test:80"}}}, Options{Resolver: dns.resolver()})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	defer g.Stop()
	dns.mu.Lock()
	q := dns.queries
	dns.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	dns.mu.Lock()
	defer dns.mu.Unlock()
	if dns.queries != q {
		t.Fatalf("%d lookups after start without resolve", dns.queries-q)
	}
}
