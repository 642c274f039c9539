// Command echo is the WebSocket backend that `make run` starts behind
// sluice and that the benchmarks measure it against: every data frame comes
// back as it was sent (text, binary, fragments, compressed frames alike),
// pings get pongs, and a close is answered with a close. It accepts the
// first subprotocol a client offers and permessage-deflate without context
// takeover, so both can be seen negotiated end to end through the proxy.
//
// It is bench.ListenEcho behind flags: gnet event loops (one by default,
// so a benchmark can pin it to one core), frames streamed back as their
// bytes arrive.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-proxy/sluice/bench"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:9000", "listen `ADDR` (port 0 picks a free one)")
	quiet := flag.Bool("quiet", false, "do not log refused handshakes")
	loops := flag.Int("loops", 1, "number of event loops `N`")
	flag.Parse()

	o := bench.EchoOptions{Loops: *loops}
	if !*quiet {
		o.Logf = log.Printf
	}
	s, err := bench.ListenEcho(*addr, o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo backend listening on ws://%s/\n", s.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := s.Close(); err != nil {
		log.Fatalf("echo: %v", err)
	}
}
