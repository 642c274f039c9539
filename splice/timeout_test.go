package splice

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullBacklog returns the address of a listener that never accepts and whose
// accept queue is full, so further SYNs are dropped and a connect to it hangs
// until its timeout: how a dead or overloaded upstream looks on loopback.
func fullBacklog(t *testing.T) netip.AddrPort {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("backlog never filled")
	return addr
}

// Guards the connect deadline: Failed(timedOut=true) within ConnectTimeout
// plus slack, Reason ConnectTimeout; a timed-out attempt also moves on.
func TestConnectTimeout(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	hole := fullBacklog(t)
	c, fd := clientPair(t)
	h := newHandler(hole)
	j := job(fd, h)
	j.ConnectTimeout = 300 * time.Millisecond
	start := time.Now()
	submit(t, p, j)
	readN(t, c, len(h.failMsg), 2*time.Second)
	r := h.wait(t, 2*time.Second)
	if d := time.Since(start); d < 300*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("failed after %v, want ~300ms", d)
	}
	if r.Reason != ConnectTimeout || !errors.Is(r.Err, ErrConnectTimeout) {
		t.Fatalf("report %+v", r)
	}
	h.mu.Lock()
	if len(h.timeout) != 1 || !h.timeout[0] {
		t.Fatalf("timedOut flags %v", h.timeout)
	}
	h.mu.Unlock()

	// Timeout on the first address, success on the second.
	u := startUpstream(t, serveEcho(""))
	c2, fd2 := clientPair(t)
	h2 := newHandler(hole, u.addr)
	j2 := job(fd2, h2)
	j2.ConnectTimeout = 200 * time.Millisecond
	submit(t, p, j2)
	readN(t, c2, len(testReply), 2*time.Second)
	c2.Close()
	if r := h2.wait(t, 2*time.Second); !r.Tunnelled || r.Attempts != 2 {
		t.Fatalf("report %+v", r)
	}
	h2.mu.Lock()
	defer h2.mu.Unlock()
	if !errors.Is(h2.nexts[1].err, ErrConnectTimeout) {
		t.Fatalf("attempt 1 saw %v", h2.nexts[1].err)
	}
}

// Guards the handshake deadline: an upstream that accepts and never answers
// → Failed(timedOut=true), Reason HandshakeTimeout.
func TestHandshakeTimeout(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, func(c *net.TCPConn) { readHead(c); drain(c) })
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	j := job(fd, h)
	j.HandshakeTimeout = 300 * time.Millisecond
	start := time.Now()
	submit(t, p, j)
	readN(t, c, len(h.failMsg), 2*time.Second)
	r := h.wait(t, 2*time.Second)
	if d := time.Since(start); d < 300*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("failed after %v", d)
	}
	if r.Reason != HandshakeTimeout || !errors.Is(r.Err, ErrHandshakeTimeout) || r.Connected.IsZero() {
		t.Fatalf("report %+v", r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.timeout[0] {
		t.Fatal("timedOut = false")
	}
}

// Guards ReadTimeout semantics: an idle tunnel closes after ~ReadTimeout;
// client traffic does not keep it alive; upstream traffic every
// ReadTimeout/2 does.
func TestReadTimeout(t *testing.T) {
	const rt = 300 * time.Millisecond
	t.Run("idle", func(t *testing.T) {
		checkFDs(t)
		p := newTestPool(t, 1)
		u := startUpstream(t, serveEcho(""))
		c, fd := clientPair(t)
		h := newHandler(u.addr)
		j := job(fd, h)
		j.ReadTimeout = rt
		submit(t, p, j)
		readN(t, c, len(testReply), 2*time.Second)
		start := time.Now()
		expectEOF(t, c, 2*time.Second)
		if d := time.Since(start); d < rt-50*time.Millisecond || d > 700*time.Millisecond {
			t.Errorf("closed after %v, want ~%v", d, rt)
		}
		if r := h.wait(t, time.Second); r.Reason != ReadTimeout || !errors.Is(r.Err, ErrReadTimeout) {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("client traffic does not count", func(t *testing.T) {
		checkFDs(t)
		p := newTestPool(t, 1)
		u := startUpstream(t, func(c *net.TCPConn) {
			readHead(c)
			c.Write([]byte(testReply))
			b := make([]byte, 100)
			for {
				if _, err := c.Read(b); err != nil { // swallow, never answer
					return
				}
			}
		})
		c, fd := clientPair(t)
		h := newHandler(u.addr)
		j := job(fd, h)
		j.ReadTimeout = rt
		submit(t, p, j)
		readN(t, c, len(testReply), 2*time.Second)
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					c.Write([]byte("x"))
				}
			}
		}()
		r := h.wait(t, 2*time.Second)
		if d := time.Since(start); r.Reason != ReadTimeout || d > 700*time.Millisecond {
			t.Fatalf("report %+v after %v", r, d)
		}
	})
	t.Run("upstream traffic keeps alive", func(t *testing.T) {
		checkFDs(t)
		p := newTestPool(t, 1)
		u := startUpstream(t, func(c *net.TCPConn) {
			readHead(c)
			c.Write([]byte(testReply))
			for i := 0; i < 8; i++ { // 8 × rt/2 = 4 × rt
				time.Sleep(rt / 2)
				if _, err := c.Write([]byte("k")); err != nil {
					return
				}
			}
			drain(c)
		})
		c, fd := clientPair(t)
		h := newHandler(u.addr)
		j := job(fd, h)
		j.ReadTimeout = rt
		submit(t, p, j)
		start := time.Now()
		readN(t, c, len(testReply)+8, 3*time.Second)
		if d := time.Since(start); d < 3*rt {
			t.Fatalf("keep-alive bytes done after %v", d)
		}
		select {
		case r := <-h.done:
			t.Fatalf("ended while the upstream was talking: %+v", r)
		default:
		}
		if r := h.wait(t, 2*time.Second); r.Reason != ReadTimeout {
			t.Fatalf("report %+v", r)
		}
	})
}

// Guards SendTimeout: a client that stops reading while the upstream talks
// ends the tunnel after SendTimeout, not ReadTimeout (the read clock stops
// while the down flow is blocked).
func TestSendTimeout(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, func(c *net.TCPConn) {
		readHead(c)
		c.Write([]byte(testReply))
		b := make([]byte, 64<<10)
		for {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	})
	c, fd := clientPair(t)
	c.SetReadBuffer(4096)
	h := newHandler(u.addr)
	j := job(fd, h)
	j.ReadTimeout = 200 * time.Millisecond
	j.SendTimeout = 600 * time.Millisecond
	start := time.Now()
	submit(t, p, j)
	r := h.wait(t, 3*time.Second)
	if d := time.Since(start); r.Reason != SendTimeout || !errors.Is(r.Err, ErrSendTimeout) || d < 600*time.Millisecond || d > 1500*time.Millisecond {
		t.Fatalf("report %+v after %v", r, d)
	}
}
