// Command echo is the demo WebSocket backend that `make run` starts behind
// sluice: every data frame comes back as it was sent (text, binary,
// fragments, compressed frames alike), pings get pongs, and a close is
// answered with a close. It accepts the first subprotocol a client offers
// and permessage-deflate without context takeover, so both can be seen
// negotiated end to end through the proxy.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// maxPayload bounds one frame so a client cannot make the echo allocate
// without limit from a length it declares.
const maxPayload = 64 << 20

func main() {
	addr := flag.String("listen", "127.0.0.1:9000", "listen `ADDR`")
	quiet := flag.Bool("quiet", false, "do not log connections")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("echo: %v", err)
	}
	fmt.Printf("echo backend listening on ws://%s/\n", ln.Addr())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("echo: accept: %v", err)
			continue
		}
		go serve(c, *quiet)
	}
}

var upgrader = ws.Upgrader{
	Protocol: func([]byte) bool { return true }, // the first one offered
	Negotiate: func(opt httphead.Option) (httphead.Option, error) {
		if string(opt.Name) != "permessage-deflate" {
			return httphead.Option{}, nil
		}
		// Frames are echoed untouched, so both directions must reset their
		// compression context per message for the echo to stay decodable.
		return httphead.NewOption("permessage-deflate", map[string]string{
			"server_no_context_takeover": "",
			"client_no_context_takeover": "",
		}), nil
	},
}

func serve(c net.Conn, quiet bool) {
	defer c.Close()
	if _, err := upgrader.Upgrade(c); err != nil {
		if !quiet {
			log.Printf("echo: upgrade from %s: %v", c.RemoteAddr(), err)
		}
		return
	}
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	var payload []byte
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return
		}
		if h.Length > maxPayload {
			_ = ws.WriteFrame(w, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusMessageTooBig, "")))
			_ = w.Flush()
			return
		}
		if int64(cap(payload)) < h.Length {
			payload = make([]byte, h.Length)
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
			h.Masked = false
		}
		switch h.OpCode {
		case ws.OpPing:
			h.OpCode = ws.OpPong
		case ws.OpPong:
			continue
		case ws.OpClose:
			_ = ws.WriteHeader(w, h)
			_, _ = w.Write(p)
			_ = w.Flush()
			return
		}
		if err := ws.WriteHeader(w, h); err != nil {
			return
		}
		if _, err := w.Write(p); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}
