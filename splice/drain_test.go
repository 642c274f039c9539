package splice

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recordingEcho is an upstream that answers the upgrade, echoes, and
// sends everything it received after the head to got when the client side
// closes.
func recordingEcho(got chan<- []byte) func(fd int) {
	return func(fd int) {
		b := make([]byte, 64<<10)
		n := 0
		for !bytes.Contains(b[:n], []byte("\r\n\r\n")) {
			k, err := unix.Read(fd, b[n:])
			if err != nil || k == 0 {
				got <- nil
				return
			}
			n += k
		}
		_ = rawWriteAll(fd, []byte(testReply))
		var all []byte
		for {
			k, err := unix.Read(fd, b)
			if err != nil || k == 0 {
				got <- all
				return
			}
			all = append(all, b[:k]...)
			_ = rawWriteAll(fd, b[:k])
		}
	}
}

// drainTunnel opens a tunnel through p to a recording echo upstream whose
// Judge says where the frames start.
func drainTunnel(t *testing.T, p *Pool) (cfd int, h *testHandler, upstreamGot chan []byte) {
	t.Helper()
	upstreamGot = make(chan []byte, 1)
	addr := rawServer(t, recordingEcho(upstreamGot))
	cfd, fd := rawClientPair(t)
	h = newHandler(addr)
	h.judge = func(reply []byte) Verdict {
		if i := bytes.Index(reply, []byte("\r\n\r\n")); i >= 0 {
			return Verdict{Action: Tunnel, FramesAfter: i + 4}
		}
		return Verdict{}
	}
	submit(t, p, job(fd, h))
	head := make([]byte, len(testReply))
	if err := rawReadFull(cfd, head); err != nil {
		t.Fatal(err)
	}
	return cfd, h, upstreamGot
}

// readToEOF reads what cfd still delivers until the peer closes.
func readToEOF(t *testing.T, cfd int) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(cfd, b)
		if err == unix.EAGAIN || err == unix.EINTR {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil || n == 0 {
			return out
		}
		out = append(out, b[:n]...)
	}
	t.Fatal("no EOF")
	return nil
}

// TestDrainClosesAtFrameBoundaries: a tunnel between frames gets a 1001
// close frame on both sides at once; one in the middle of a frame gets its
// close frames once the frame has passed; Drain reports a clean drain.
func TestDrainClosesAtFrameBoundaries(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	idle, hIdle, idleUp := drainTunnel(t, p)
	busy, hBusy, busyUp := drainTunnel(t, p)

	msg := frame(1, 5, true)
	if err := rawWriteAll(idle, msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if err := rawReadFull(idle, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo %q %v", back, err)
	}
	half := frame(2, 100, true)
	if err := rawWriteAll(busy, half[:50]); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 50)
	if err := rawReadFull(busy, part); err != nil {
		t.Fatal(err)
	}

	done := make(chan int, 1)
	go func() { done <- p.Drain(time.Now().Add(3 * time.Second)) }()

	if got := readToEOF(t, idle); !bytes.Equal(got, closeToClient) {
		t.Fatalf("idle tunnel, client got %x, want the 1001 close %x", got, closeToClient)
	}
	if got := <-idleUp; !bytes.Equal(got, append(append([]byte(nil), msg...), closeToUpstream...)) {
		t.Fatalf("idle tunnel, upstream got %x", got)
	}
	if r := hIdle.wait(t, 2*time.Second); r.Reason != Shutdown || !r.Tunnelled {
		t.Fatalf("idle tunnel report %+v", r)
	}
	// The busy one is still relaying its frame: finish it.
	select {
	case <-done:
		t.Fatal("Drain returned while a frame was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	if err := rawWriteAll(busy, half[50:]); err != nil {
		t.Fatal(err)
	}
	got := readToEOF(t, busy)
	if want := append(append([]byte(nil), half[50:]...), closeToClient...); !bytes.Equal(got, want) {
		t.Fatalf("busy tunnel, client got %x, want the rest of its echo then the close %x", got, closeToClient)
	}
	if got := <-busyUp; !bytes.Equal(got, append(append([]byte(nil), half...), closeToUpstream...)) {
		t.Fatalf("busy tunnel, upstream got %x", got)
	}
	hBusy.wait(t, 2*time.Second)
	if forced := <-done; forced != 0 {
		t.Fatalf("Drain forced %d tunnels, want a clean drain", forced)
	}
}

// TestDrainDeadline: a frame that never completes cannot take a close
// frame on that side; at the deadline the tunnel is closed anyway and the
// drain is reported as not clean.
func TestDrainDeadline(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	c, h, up := drainTunnel(t, p)
	half := frame(2, 100, true)
	if err := rawWriteAll(c, half[:50]); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 50)
	if err := rawReadFull(c, part); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	forced := p.Drain(start.Add(300 * time.Millisecond))
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Drain took %v with a 300 ms deadline", d)
	}
	if forced != 1 {
		t.Fatalf("forced %d, want 1", forced)
	}
	if got := readToEOF(t, c); len(got) != 0 {
		t.Fatalf("mid-frame client got %x: a close frame would corrupt the frame it is in", got)
	}
	if got := <-up; !bytes.Equal(got, half[:50]) {
		t.Fatalf("upstream got %x", got)
	}
	if r := h.wait(t, 2*time.Second); r.Reason != Shutdown {
		t.Fatalf("report %+v", r)
	}
}

// TestDrainWhere: only the tunnels picked are drained; the others relay on.
func TestDrainWhere(t *testing.T) {
	checkFDs(t)
	p := newTestPool(t, 1)
	gone, hGone, goneUp := drainTunnel(t, p)
	kept, hKept, _ := drainTunnel(t, p)
	p.DrainWhere(time.Now().Add(2*time.Second), func(h Handler) bool { return h == Handler(hGone) })
	if got := readToEOF(t, gone); !bytes.Equal(got, closeToClient) {
		t.Fatalf("picked tunnel, client got %x", got)
	}
	if got := <-goneUp; !bytes.Equal(got, closeToUpstream) {
		t.Fatalf("picked tunnel, upstream got %x", got)
	}
	if r := hGone.wait(t, 2*time.Second); r.Reason != Shutdown {
		t.Fatalf("picked tunnel report %+v", r)
	}
	msg := frame(1, 20, true)
	for i := 0; i < 3; i++ {
		if err := rawWriteAll(kept, msg); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(msg))
		if err := rawReadFull(kept, back); err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("kept tunnel echo %d: %v", i, err)
		}
	}
	unix.Shutdown(kept, unix.SHUT_WR)
	if r := hKept.wait(t, 2*time.Second); r.Reason == Shutdown {
		t.Fatalf("kept tunnel was drained: %+v", r)
	}
}
