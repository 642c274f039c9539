package splice

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The harness uses real sockets on loopback and no mocks: a Go TCP server
// plays the upstream, and the client fd handed to the pool is a dup of an
// accepted socket, exactly what the engine hands over after gnet's Dup().

const (
	testRequest = "GET /chat HTTP/1.1\r\nHost: up\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	testReply   = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)

// countFDs counts this process's open fds.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own fd
}

// checkFDs records the fd count now and, at cleanup (registered first, so it
// runs last), waits briefly for it to come back: every path must release
// its fds.
func checkFDs(t testing.TB) {
	t.Helper()
	before := countFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			n := countFDs(t)
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("fd leak: %d open fds before, %d after", before, n)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func newTestPool(t testing.TB, loops int) *Pool {
	t.Helper()
	p, err := NewPool(Config{Loops: loops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// dupFD duplicates the socket under c (close-on-exec) without touching its
// blocking mode; the caller closes c afterwards.
func dupFD(t testing.TB, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	return nfd
}

// clientPair returns the test's client end and, as a non-blocking raw fd, the
// proxy's end of one loopback TCP connection.
func clientPair(t testing.TB) (*net.TCPConn, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd := dupFD(t, s)
	s.Close()
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), fd
}

// rawClientPair is clientPair with the client end as a blocking raw fd too,
// so a test or benchmark can drive it without allocating.
func rawClientPair(t testing.TB) (clientFD, jobFD int) {
	t.Helper()
	c, fd := clientPair(t)
	cfd := dupFD(t, c)
	c.Close()
	if err := unix.SetNonblock(cfd, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(cfd) })
	return cfd, fd
}

// upstream is a real TCP server on loopback; serve runs per connection.
type upstream struct {
	ln    net.Listener
	addr  netip.AddrPort
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startUpstream(t testing.TB, serve func(c *net.TCPConn)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String())}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

// readHead reads from c until the end of an HTTP head; it returns the head
// and whatever came after it in the same reads.
func readHead(c net.Conn) (head, rest []byte, err error) {
	var buf []byte
	b := make([]byte, 4096)
	for {
		n, err := c.Read(b)
		buf = append(buf, b[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], buf[i+4:], nil
		}
		if err != nil {
			return buf, nil, err
		}
	}
}

// echo copies c to itself until EOF or an error.
func echo(c net.Conn) {
	b := make([]byte, 32<<10)
	for {
		n, err := c.Read(b)
		if n > 0 {
			if _, werr := c.Write(b[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// drain reads c until EOF or an error: an upstream that stays silent until
// the proxy closes it.
func drain(c net.Conn) {
	io.Copy(io.Discard, c)
}

// serveEcho answers the head with testReply (plus extra in the same write)
// and echoes what follows.
func serveEcho(extra string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		_, rest, err := readHead(c)
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(testReply + extra)); err != nil {
			return
		}
		if len(rest) > 0 {
			c.Write(rest)
		}
		echo(c)
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

type nextCall struct {
	attempt int
	err     error
}

// testHandler is a Handler with canned behaviour that records every call.
type testHandler struct {
	addrs   []netip.AddrPort
	judge   func(reply []byte) Verdict // nil: Tunnel once a head is complete
	failMsg string

	mu      sync.Mutex
	nexts   []nextCall
	fails   []error
	timeout []bool
	judged  int

	doneN atomic.Int32
	done  chan Report
}

func newHandler(addrs ...netip.AddrPort) *testHandler {
	return &testHandler{addrs: addrs, failMsg: "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", done: make(chan Report, 4)}
}

func (h *testHandler) NextUpstream(attempt int, lastErr error) (netip.AddrPort, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nexts = append(h.nexts, nextCall{attempt, lastErr})
	if attempt >= len(h.addrs) {
		return netip.AddrPort{}, false
	}
	return h.addrs[attempt], true
}

func (h *testHandler) Judge(reply []byte) Verdict {
	h.mu.Lock()
	h.judged++
	h.mu.Unlock()
	if h.judge != nil {
		return h.judge(reply)
	}
	if bytes.Contains(reply, []byte("\r\n\r\n")) {
		return Verdict{Action: Tunnel}
	}
	return Verdict{}
}

func (h *testHandler) Failed(err error, timedOut bool) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails = append(h.fails, err)
	h.timeout = append(h.timeout, timedOut)
	return []byte(h.failMsg)
}

func (h *testHandler) Done(r *Report) {
	h.doneN.Add(1)
	h.done <- *r
}

func (h *testHandler) wait(t testing.TB, d time.Duration) Report {
	t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(d):
		t.Fatalf("Done not called within %v", d)
		return Report{}
	}
}

// job builds a Job with generous defaults for fd and h.
func job(fd int, h Handler) *Job {
	return &Job{
		ClientFD:         fd,
		Request:          []byte(testRequest),
		ConnectTimeout:   2 * time.Second,
		HandshakeTimeout: 2 * time.Second,
		ReadTimeout:      10 * time.Second,
		SendTimeout:      10 * time.Second,
		BufferSize:       16 << 10,
		MaxReplyHead:     16 << 10,
		Handler:          h,
	}
}

func submit(t testing.TB, p *Pool, j *Job) {
	t.Helper()
	if err := p.Submit(j); err != nil {
		t.Fatal(err)
	}
}

// readN reads exactly n bytes from c within d.
func readN(t testing.TB, c net.Conn, n int, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v (got %q)", n, err, b)
	}
	c.SetReadDeadline(time.Time{})
	return b
}

// expectEOF waits up to d for c to report EOF (or a reset).
func expectEOF(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, 1024)
	for {
		n, err := c.Read(b)
		if err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			return
		}
		if err != nil {
			t.Fatalf("want EOF, got %v", err)
		}
		if n > 0 {
			t.Fatalf("want EOF, got bytes %q", b[:n])
		}
	}
}

// loopStats reads loop-owned counters on the loop goroutine.
type loopStats struct {
	pendBytes int64
	bufsOut   int
	stale     int64
	parks     int64
	peaks     [][2]int
}

func stats(l *loop) loopStats {
	var s loopStats
	l.call(func() {
		s.pendBytes, s.bufsOut, s.stale, s.parks = l.pendBytes, l.bufsOut, l.stale, l.parks
		for _, t := range l.slots {
			if t != nil {
				s.peaks = append(s.peaks, [2]int{t.d[0].peak, t.d[1].peak})
			}
		}
	})
	return s
}
