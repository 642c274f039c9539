package engine

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestRawIO: recvfrom/sendto behave as net.Conn's Read and Write: bytes
// both ways (a write larger than the socket buffers included), io.EOF
// when the peer closes, a timeout error when a read deadline passes, and
// an error, not a signal, when writing to a connection the peer reset.
func TestRawIO(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := <-accepted
	r := newRawIO(c)
	if r == nil {
		t.Fatal("no rawIO for a TCP connection")
	}
	if newRawIO(struct{ net.Conn }{c}) != nil {
		t.Fatal("rawIO for a wrapped connection")
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	if n, err := r.Write(big); n != len(big) || err != nil {
		t.Fatalf("write: %d of %d, %v", n, len(big), err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer got %d bytes, not what was written", len(b))
	}

	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := r.Read(buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d %q %v", n, buf[:n], err)
	}

	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = r.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	_ = peer.Close()
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d %v, want io.EOF", n, err)
	}
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = r.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	var oe *net.OpError
	if !errors.As(werr, &oe) || oe.Op != "write" {
		t.Fatalf("write to a closed peer: %v, want a *net.OpError", werr)
	}
}
