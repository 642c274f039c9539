package splice

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Guards: the whole reply (head plus bytes sent with it) reaches the client,
// Held reaches the upstream only after the verdict, then echo both ways;
// Report counts bytes; fds are released.
func TestTunnel(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	beforeReply := make(chan []byte, 1)
	u := startUpstream(t, func(c *net.TCPConn) {
		head, rest, err := readHead(c)
		if err != nil {
			return
		}
		// Anything that arrives now, before our reply, arrived too early.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		c.SetReadDeadline(time.Time{})
		beforeReply <- append(append(head, rest...), b[:n]...)
		c.Write([]byte(testReply + "EXTRA"))
		echo(c)
	})
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	j := job(fd, h)
	j.Held = []byte("HELD")
	submit(t, p, j)

	if got := string(<-beforeReply); got != testRequest {
		t.Fatalf("upstream got before replying %q, want exactly the request", got)
	}
	if got := string(readN(t, c, len(testReply)+5, 2*time.Second)); got != testReply+"EXTRA" {
		t.Fatalf("client got %q", got)
	}
	if got := string(readN(t, c, 4, 2*time.Second)); got != "HELD" {
		t.Fatalf("held bytes echoed as %q", got)
	}
	for _, msg := range []string{"ping", strings.Repeat("x", 100<<10)} {
		c.Write([]byte(msg))
		if got := string(readN(t, c, len(msg), 2*time.Second)); got != msg {
			t.Fatalf("echo of %d bytes differs", len(msg))
		}
	}
	if p.Live() != 1 {
		t.Fatalf("Live = %d, want 1", p.Live())
	}
	c.Close()
	r := h.wait(t, 2*time.Second)
	if !r.Tunnelled || r.Reason != ClientClosed || r.Err != nil {
		t.Fatalf("report %+v", r)
	}
	if want := int64(4 + 4 + 100<<10); r.BytesUp != want {
		t.Errorf("BytesUp = %d, want %d", r.BytesUp, want)
	}
	if want := int64(len(testReply) + 5 + 4 + 4 + 100<<10); r.BytesDown != want {
		t.Errorf("BytesDown = %d, want %d", r.BytesDown, want)
	}
	if r.Attempts != 1 || r.Upstream != u.addr || r.Connected.IsZero() || r.End.Before(r.Start) {
		t.Errorf("report %+v", r)
	}
	if p.Live() != 0 {
		t.Errorf("Live = %d after Done", p.Live())
	}
}

// Guards: a reply that arrives in pieces is judged again on each arrival.
func TestTunnelReplyInPieces(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, func(c *net.TCPConn) {
		if _, _, err := readHead(c); err != nil {
			return
		}
		for i := 0; i < len(testReply); i += 20 {
			c.Write([]byte(testReply[i:min(i+20, len(testReply))]))
			time.Sleep(10 * time.Millisecond)
		}
		echo(c)
	})
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	submit(t, p, job(fd, h))
	if got := string(readN(t, c, len(testReply), 2*time.Second)); got != testReply {
		t.Fatalf("client got %q", got)
	}
	h.mu.Lock()
	judged := h.judged
	h.mu.Unlock()
	if judged < 2 {
		t.Errorf("Judge called %d times, want one per arrival", judged)
	}
	c.Close()
	h.wait(t, 2*time.Second)
}

// Guards Refuse: the client gets Reply then exactly Forward body bytes; Held
// and the client's later bytes never reach the upstream; the tunnel is never
// opened.
func TestRefuseForward(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	upGot := make(chan []byte, 1)
	const head = "HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n"
	u := startUpstream(t, func(c *net.TCPConn) {
		h, rest, err := readHead(c)
		if err != nil {
			return
		}
		c.Write([]byte(head + "0123"))
		time.Sleep(50 * time.Millisecond)
		c.Write([]byte("456789JUNKJUNK"))
		// Record all the proxy ever sends us until it closes.
		c.SetReadDeadline(time.Now().Add(time.Second))
		more := make([]byte, 1024)
		n, _ := c.Read(more)
		upGot <- append(append(h, rest...), more[:n]...)
	})
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	const reply = "HTTP/1.1 403 Forbidden\r\nX-Refused-By: sluice\r\n\r\n"
	h.judge = func(b []byte) Verdict {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return Verdict{}
		}
		return Verdict{Action: Refuse, Reply: []byte(reply), Skip: i + 4, Forward: 10}
	}
	j := job(fd, h)
	j.Held = []byte("HELD")
	c.Write([]byte("LATER"))
	submit(t, p, j)
	got := readN(t, c, len(reply)+10, 2*time.Second)
	if string(got) != reply+"0123456789" {
		t.Fatalf("client got %q", got)
	}
	c.Write([]byte("EVENLATER"))
	expectEOF(t, c, 2*time.Second)
	r := h.wait(t, 2*time.Second)
	if r.Reason != Refused || r.Tunnelled || r.Err != nil || r.BytesUp != 0 || r.BytesDown != int64(len(reply)+10) {
		t.Fatalf("report %+v", r)
	}
	if got := string(<-upGot); got != testRequest {
		t.Fatalf("upstream received %q, want only the request", got)
	}
}

// Guards Refuse with Forward -1: everything after Skip until the upstream
// closes; and Skip larger than the buffered reply.
func TestRefuseUntilClose(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, func(c *net.TCPConn) {
		if _, _, err := readHead(c); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		time.Sleep(30 * time.Millisecond)
		c.Write([]byte("skipme" + "body-until-close"))
	})
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	h.judge = func(b []byte) Verdict {
		if !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
			return Verdict{}
		}
		return Verdict{Action: Refuse, Reply: []byte("R:"), Skip: len(b) + 6, Forward: -1}
	}
	submit(t, p, job(fd, h))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var all bytes.Buffer
	if _, err := all.ReadFrom(c); err != nil {
		t.Fatal(err)
	}
	if all.String() != "R:body-until-close" {
		t.Fatalf("client got %q", all.String())
	}
	if r := h.wait(t, 2*time.Second); r.Reason != Refused || r.Err != nil {
		t.Fatalf("report %+v", r)
	}
}

// Guards: a refused connect moves on to the next address, and NextUpstream
// sees the attempt number and the error.
func TestConnectRefusedThenNext(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, serveEcho(""))
	dead := closedPort(t)
	c, fd := clientPair(t)
	h := newHandler(dead, u.addr)
	submit(t, p, job(fd, h))
	readN(t, c, len(testReply), 2*time.Second)
	c.Close()
	r := h.wait(t, 2*time.Second)
	if !r.Tunnelled || r.Attempts != 2 || r.Upstream != u.addr {
		t.Fatalf("report %+v", r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.nexts) != 2 || h.nexts[0].attempt != 0 || h.nexts[0].err != nil || h.nexts[1].attempt != 1 ||
		!errors.Is(h.nexts[1].err, unix.ECONNREFUSED) || !strings.Contains(h.nexts[1].err.Error(), dead.String()) {
		t.Fatalf("NextUpstream calls %+v", h.nexts)
	}
}

// Guards: every address refused → Failed(timedOut=false), its bytes reach
// the client, Done says ConnectFailed.
func TestConnectAllRefused(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	c, fd := clientPair(t)
	h := newHandler(closedPort(t), closedPort(t))
	j := job(fd, h)
	j.Held = []byte("pipelined")
	c.Write([]byte("unread by the proxy"))
	submit(t, p, j)
	got := readN(t, c, len(h.failMsg), 2*time.Second)
	if string(got) != h.failMsg {
		t.Fatalf("client got %q", got)
	}
	expectEOF(t, c, 2*time.Second)
	r := h.wait(t, 2*time.Second)
	if r.Reason != ConnectFailed || r.Attempts != 2 || !errors.Is(r.Err, unix.ECONNREFUSED) || r.Tunnelled || !r.Connected.IsZero() {
		t.Fatalf("report %+v", r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fails) != 1 || h.timeout[0] || !errors.Is(h.fails[0], unix.ECONNREFUSED) {
		t.Fatalf("Failed calls %v %v", h.fails, h.timeout)
	}
}

// Guards: no upstream at all is a 502-class failure too.
func TestNoUpstream(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	c, fd := clientPair(t)
	h := newHandler()
	submit(t, p, job(fd, h))
	readN(t, c, len(h.failMsg), 2*time.Second)
	if r := h.wait(t, 2*time.Second); r.Reason != ConnectFailed || !errors.Is(r.Err, ErrNoUpstream) || r.Attempts != 0 {
		t.Fatalf("report %+v", r)
	}
}

// Guards: the upstream closing before a verdict, or a reply over
// MaxReplyHead, is HandshakeFailed with a 502-class Failed.
func TestHandshakeFailed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(c *net.TCPConn)
		err   error
	}{
		{"closed", func(c *net.TCPConn) { readHead(c); c.Write([]byte("HTTP/1.1 10")) }, ErrUpstreamClosed},
		{"too big", func(c *net.TCPConn) {
			readHead(c)
			c.Write([]byte("HTTP/1.1 101 OK\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 200)))
			drain(c)
		}, ErrReplyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFDs(t)
			p := newTestPool(t, 1)
			u := startUpstream(t, tc.serve)
			c, fd := clientPair(t)
			h := newHandler(u.addr)
			j := job(fd, h)
			j.MaxReplyHead = 1024
			submit(t, p, j)
			readN(t, c, len(h.failMsg), 2*time.Second)
			r := h.wait(t, 2*time.Second)
			if r.Reason != HandshakeFailed || !errors.Is(r.Err, tc.err) || r.Tunnelled {
				t.Fatalf("report %+v", r)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.timeout[0] {
				t.Fatal("timedOut = true")
			}
		})
	}
}

// Guards: a client that closes while the upstream is being reached aborts
// the job without an answer and without waiting for the upstream.
func TestClientAbortBeforeVerdict(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	u := startUpstream(t, func(c *net.TCPConn) { readHead(c); drain(c) })
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	submit(t, p, job(fd, h))
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	c.Close()
	r := h.wait(t, 2*time.Second)
	if r.Reason != ClientClosed || time.Since(start) > time.Second {
		t.Fatalf("report %+v after %v", r, time.Since(start))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fails) != 0 {
		t.Fatal("Failed called for a client abort")
	}
}

// Guards half-close: the client's FIN reaches the upstream as EOF, the
// upstream can still answer, and its close ends the tunnel (ClientClosed:
// the client finished first). While half-closed and idle the loop sleeps.
func TestHalfClose(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	gotEOF := make(chan struct{})
	u := startUpstream(t, func(c *net.TCPConn) {
		readHead(c)
		c.Write([]byte(testReply))
		b := make([]byte, 100)
		for {
			if _, err := c.Read(b); err != nil {
				break
			}
		}
		close(gotEOF)
		time.Sleep(300 * time.Millisecond)
		c.Write([]byte("after-your-fin"))
		time.Sleep(100 * time.Millisecond)
	})
	c, fd := clientPair(t)
	h := newHandler(u.addr)
	submit(t, p, job(fd, h))
	readN(t, c, len(testReply), 2*time.Second)
	c.CloseWrite()
	select {
	case <-gotEOF:
	case <-time.After(time.Second):
		t.Fatal("upstream did not see the client's EOF")
	}
	w0 := p.loops[0].wakeups.Load()
	time.Sleep(200 * time.Millisecond)
	w := p.loops[0].wakeups.Load() - w0
	t.Logf("loop wake-ups in 200 ms, half-closed and idle: %d", w)
	if w > 5 {
		t.Errorf("loop woke %d times in 200 ms while half-closed and idle: spinning", w)
	}
	if got := string(readN(t, c, 14, 2*time.Second)); got != "after-your-fin" {
		t.Fatalf("client got %q", got)
	}
	expectEOF(t, c, 2*time.Second)
	r := h.wait(t, 2*time.Second)
	if r.Reason != ClientClosed || r.Err != nil {
		t.Fatalf("report %+v", r)
	}
}

// Guards: a peer that dies mid-tunnel (FIN or reset) is seen by the other
// within a second, both ways.
func TestPeerKilled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upstream bool
		reset    bool
	}{
		{"upstream fin", true, false},
		{"upstream reset", true, true},
		{"client fin", false, false},
		{"client reset", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFDs(t)
			p := newTestPool(t, 1)
			upConn := make(chan *net.TCPConn, 1)
			upSaw := make(chan error, 1)
			u := startUpstream(t, func(c *net.TCPConn) {
				readHead(c)
				c.Write([]byte(testReply))
				upConn <- c
				b := make([]byte, 100)
				for {
					if _, err := c.Read(b); err != nil {
						upSaw <- err
						return
					}
				}
			})
			c, fd := clientPair(t)
			h := newHandler(u.addr)
			submit(t, p, job(fd, h))
			readN(t, c, len(testReply), 2*time.Second)
			uc := <-upConn
			victim := c
			if tc.upstream {
				victim = uc
			}
			if tc.reset {
				victim.SetLinger(0)
			}
			start := time.Now()
			victim.Close()
			if tc.upstream {
				expectEOF(t, c, time.Second)
			} else {
				select {
				case <-upSaw:
				case <-time.After(time.Second):
					t.Fatal("upstream did not notice")
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("noticed after %v", d)
			}
			if tc.upstream {
				c.Close()
			} else {
				uc.Close()
			}
			r := h.wait(t, 2*time.Second)
			want := map[bool]Reason{true: UpstreamClosed, false: ClientClosed}[tc.upstream]
			if tc.reset {
				want = map[bool]Reason{true: UpstreamError, false: ClientError}[tc.upstream]
			}
			if r.Reason != want {
				t.Fatalf("reason %v (%v), want %v", r.Reason, r.Err, want)
			}
		})
	}
}

// Guards Pool.Close: every tunnel and pending job ends with Shutdown, Done
// once each, fds released, later Submits refused (caller keeps the fd).
func TestCloseWithLiveTunnels(t *testing.T) {
	checkFDs(t)
	p, err := NewPool(Config{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	u := startUpstream(t, serveEcho(""))
	silent := startUpstream(t, func(c *net.TCPConn) { readHead(c); drain(c) })
	var hs []*testHandler
	for i := 0; i < 10; i++ {
		c, fd := clientPair(t)
		h := newHandler(u.addr)
		submit(t, p, job(fd, h))
		readN(t, c, len(testReply), 2*time.Second)
		hs = append(hs, h)
	}
	for i := 0; i < 3; i++ {
		_, fd := clientPair(t)
		h := newHandler(silent.addr)
		submit(t, p, job(fd, h))
		hs = append(hs, h)
	}
	time.Sleep(50 * time.Millisecond)
	if p.Live() != 13 {
		t.Fatalf("Live = %d", p.Live())
	}
	p.Close()
	p.Close() // idempotent
	for _, h := range hs {
		if r := h.wait(t, time.Second); r.Reason != Shutdown {
			t.Fatalf("reason %v", r.Reason)
		}
		if n := h.doneN.Load(); n != 1 {
			t.Fatalf("Done called %d times", n)
		}
	}
	if p.Live() != 0 {
		t.Fatalf("Live = %d", p.Live())
	}
	_, fd := clientPair(t)
	if err := p.Submit(job(fd, newHandler())); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	unix.Close(fd)
}

func TestReasonString(t *testing.T) {
	for r := ClientClosed; r <= Shutdown; r++ {
		if s := r.String(); s == "unknown" || strings.ContainsAny(s, " -") {
			t.Errorf("%d: %q", r, s)
		}
	}
	if Reason(0).String() != "unknown" || Reason(200).String() != "unknown" {
		t.Error("out of range reasons")
	}
}

// Guards Submit racing Close: every job is either refused (the caller keeps
// and closes its fd) or owned and ended with exactly one Done.
func TestSubmitRacingClose(t *testing.T) {
	checkFDs(t)
	p, err := NewPool(Config{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	u := startUpstream(t, serveEcho(""))
	var wg sync.WaitGroup
	var accepted, refused atomic.Int32
	var hs sync.Map
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_, fd := clientPair(t)
				h := newHandler(u.addr)
				if err := p.Submit(job(fd, h)); err != nil {
					refused.Add(1)
					unix.Close(fd)
					continue
				}
				accepted.Add(1)
				hs.Store(h, true)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	p.Close()
	wg.Wait()
	hs.Range(func(k, _ any) bool {
		h := k.(*testHandler)
		h.wait(t, 2*time.Second)
		if n := h.doneN.Load(); n != 1 {
			t.Errorf("Done called %d times", n)
		}
		return true
	})
	if p.Live() != 0 {
		t.Fatalf("Live = %d", p.Live())
	}
	t.Logf("accepted %d, refused %d", accepted.Load(), refused.Load())
}

// Guards: a failure after the connect but before any verdict (an answer
// Judge rejects with Retry, a close before the answer, a handshake timeout)
// moves the job to the next upstream, which receives the whole request
// again; the client sees only the second server's 101. With no server
// left, the job ends with that failure's Reason and Failed gets its error.
func TestRetryAfterConnect(t *testing.T) {
	errBad := errors.New("bad accept")
	badJudge := func(reply []byte) Verdict {
		if bytes.Contains(reply, []byte("X-Bad")) {
			return Verdict{Action: Retry, Err: errBad}
		}
		if bytes.Contains(reply, []byte("\r\n\r\n")) {
			return Verdict{Action: Tunnel}
		}
		return Verdict{}
	}
	for _, tc := range []struct {
		name     string
		first    func(c net.Conn)
		err      error
		reason   Reason
		timedOut bool
	}{
		{"invalid answer", func(c net.Conn) {
			readHead(c)
			c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nX-Bad: 1\r\n\r\n"))
			drain(c)
		}, errBad, HandshakeFailed, false},
		{"closed before answer", func(c net.Conn) { readHead(c) }, ErrUpstreamClosed, HandshakeFailed, false},
		{"handshake timeout", func(c net.Conn) { readHead(c); drain(c) }, ErrHandshakeTimeout, HandshakeTimeout, true},
	} {
		t.Run(tc.name+"/next", func(t *testing.T) {
			checkFDs(t)
			p := newTestPool(t, 1)
			var heads [2]chan []byte
			for i := range heads {
				heads[i] = make(chan []byte, 1)
			}
			bad := startUpstream(t, func(c *net.TCPConn) {
				// Record the head, then behave as the case says with what
				// the connection still has to give.
				head, _, _ := readHead(c)
				heads[0] <- head
				tc.first(&replayConn{TCPConn: c})
			})
			good := startUpstream(t, func(c *net.TCPConn) {
				head, _, err := readHead(c)
				heads[1] <- head
				if err == nil {
					c.Write([]byte(testReply))
					echo(c)
				}
			})
			c, fd := clientPair(t)
			h := newHandler(bad.addr, good.addr)
			h.judge = badJudge
			j := job(fd, h)
			j.HandshakeTimeout = 300 * time.Millisecond
			submit(t, p, j)
			if got := readN(t, c, len(testReply), 3*time.Second); string(got) != testReply {
				t.Fatalf("client got %q", got)
			}
			for i := range heads {
				if head := <-heads[i]; string(head) != testRequest {
					t.Fatalf("server %d got head %q, want the whole request", i, head)
				}
			}
			c.Close()
			r := h.wait(t, 3*time.Second)
			if !r.Tunnelled || r.Attempts != 2 || r.Upstream != good.addr {
				t.Fatalf("report %+v", r)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.nexts) != 2 || !errors.Is(h.nexts[1].err, tc.err) || !strings.Contains(h.nexts[1].err.Error(), bad.addr.String()) {
				t.Fatalf("NextUpstream calls %+v", h.nexts)
			}
		})
		t.Run(tc.name+"/last", func(t *testing.T) {
			checkFDs(t)
			p := newTestPool(t, 1)
			bad := startUpstream(t, func(c *net.TCPConn) { tc.first(c) })
			c, fd := clientPair(t)
			h := newHandler(bad.addr)
			h.judge = badJudge
			j := job(fd, h)
			j.HandshakeTimeout = 300 * time.Millisecond
			submit(t, p, j)
			if got := readN(t, c, len(h.failMsg), 3*time.Second); string(got) != h.failMsg {
				t.Fatalf("client got %q", got)
			}
			r := h.wait(t, 3*time.Second)
			if r.Reason != tc.reason || !errors.Is(r.Err, tc.err) || r.Tunnelled || r.Attempts != 1 {
				t.Fatalf("report %+v", r)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.fails) != 1 || !errors.Is(h.fails[0], tc.err) || h.timeout[0] != tc.timedOut {
				t.Fatalf("Failed calls %v %v", h.fails, h.timeout)
			}
		})
	}
}

// replayConn lets a case's serve function, written for a fresh connection,
// run after the test already read the request head: its readHead sees the
// head again.
type replayConn struct {
	*net.TCPConn
	replayed bool
}

func (r *replayConn) Read(b []byte) (int, error) {
	if !r.replayed {
		r.replayed = true
		return copy(b, testRequest), nil
	}
	return r.TCPConn.Read(b)
}
