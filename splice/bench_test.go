package splice

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRelayEcho: one round trip of a message through a tunnel to an
// echo upstream, beside the same round trip on a direct loopback connection.
// Client and upstream use raw syscalls, so allocs/op is the relay's own
// (must be 0). On a 2-core machine the figure is mostly thread wake-up
// latency: a tunnel adds two wake-ups of the relay thread per round trip.
func BenchmarkRelayEcho(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"128B", 128}, {"16KiB", 16 << 10}} {
		msg, back := bytes.Repeat([]byte{'m'}, bc.size), make([]byte, bc.size)
		run := func(b *testing.B, cfd int) {
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := echoOnce(cfd, msg, back); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run("tunnel/"+bc.name, func(b *testing.B) {
			p := newTestPool(b, 1)
			cfd, _ := echoTunnel(b, p)
			run(b, cfd)
		})
		b.Run("tunnel-live/"+bc.name, func(b *testing.B) {
			// Job.Live set, as the engine sets it: two atomics per write.
			p := newTestPool(b, 1)
			cfd, _ := echoTunnelLive(b, p, new(Live))
			run(b, cfd)
		})
		b.Run("direct/"+bc.name, func(b *testing.B) {
			run(b, rawDial(b, rawServer(b, rawEchoNoHead)))
		})
	}
}

// rawSink reads a stream to EOF and reports the byte count; with head set it
// first answers an upgrade request.
func rawSink(head bool, total chan<- int64) func(fd int) {
	return func(fd int) {
		buf := make([]byte, 256<<10)
		got := 0
		if head {
			for !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
				n, err := unix.Read(fd, buf[got:])
				if err != nil || n == 0 {
					return
				}
				got += n
			}
			rawWriteAll(fd, []byte(testReply))
		}
		var n int64
		for {
			k, err := unix.Read(fd, buf)
			if err != nil || k == 0 {
				break
			}
			n += int64(k)
		}
		total <- n
	}
}

// BenchmarkRelayBulk: one-way bulk throughput, a direct loopback connection
// beside the same stream through a tunnel. MB/s is the figure to compare.
func BenchmarkRelayBulk(b *testing.B) {
	const chunk = 64 << 10
	msg := bytes.Repeat([]byte{'b'}, chunk)
	run := func(b *testing.B, cfd int, total chan int64) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := rawWriteAll(cfd, msg); err != nil {
				b.Fatal(err)
			}
		}
		unix.Shutdown(cfd, unix.SHUT_WR)
		if n := <-total; n != int64(b.N)*chunk {
			b.Fatalf("sink got %d bytes, want %d", n, int64(b.N)*chunk)
		}
	}
	b.Run("direct", func(b *testing.B) {
		total := make(chan int64, 1)
		addr := rawServer(b, rawSink(false, total))
		cfd := rawDial(b, addr)
		run(b, cfd, total)
	})
	b.Run("tunnel", func(b *testing.B) {
		p := newTestPool(b, 1)
		total := make(chan int64, 1)
		addr := rawServer(b, rawSink(true, total))
		cfd, fd := rawClientPair(b)
		submit(b, p, job(fd, newHandler(addr)))
		head := make([]byte, len(testReply))
		if err := rawReadFull(cfd, head); err != nil {
			b.Fatal(err)
		}
		run(b, cfd, total)
	})
}

// rawDial connects a blocking raw socket to addr.
func rawDial(b testing.TB, addr netip.AddrPort) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
		b.Fatal(err)
	}
	return fd
}
