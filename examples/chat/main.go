// Command chat is the backend of sluice's chat demo: the real-time app
// that sluice fronts, serving its page (public/) at / and proxying /ws/ to
// this process.
//
//	go run ./examples/chat -listen 127.0.0.1:9001
//
// Each WebSocket under /ws/ joins the room its last path segment names
// (/ws/lobby, /ws/room2; /ws/ alone is the lobby). Frames are JSON text:
//
//	client: {"type":"hello","name":"alice"}   then   {"type":"message","text":"hi"}
//	server: {"type":"message","room":"lobby","name":"alice","text":"hi","ts":1700000000000}
//	        {"type":"join","room":"lobby","name":"alice","count":2}   (and "leave")
//	        {"type":"error","error":"bad JSON: ..."}
//
// GET /healthz answers "ok". The hub, its limits and why they are what they
// are live in chat.go; this file is flags and wiring.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"
)

// shutdownTimeout bounds the graceful part of a shutdown: clients that have
// not answered the 1001 close by then are cut off.
const shutdownTimeout = 5 * time.Second

func main() {
	addr := flag.String("listen", "127.0.0.1:9001", "listen `ADDR` (port 0 picks a free one)")
	quiet := flag.Bool("quiet", false, "do not log joins, leaves and drops")
	flag.Parse()

	var o Options
	if !*quiet {
		o.Logf = log.Printf
	}
	chat := NewServer(o)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// ReadHeaderTimeout: a client that opens a connection and never
	// finishes its request head must not hold it forever (slowloris).
	hs := &http.Server{Handler: chat.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Printf("chat backend listening on ws://%s/ws/\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Fatalf("chat: %v", err)
	}
	stop() // a second signal kills at once

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// The http.Server first, so that no upgrade starts after the chat
	// server has begun closing; it does not see hijacked WebSockets, which
	// the chat server closes with 1001.
	if err := hs.Shutdown(sctx); err != nil {
		log.Printf("chat: http shutdown: %v", err)
	}
	if err := chat.Shutdown(sctx); err != nil {
		log.Printf("chat: clients cut off after %s: %v", shutdownTimeout, err)
	}
	if !*quiet {
		log.Print("chat: stopped")
	}
}
