package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sluice-proxy/sluice/handshake"
)

// HealthCheck configures active health checks (nginx Plus's health_check,
// which open source nginx lacks): on an interval every server that is not
// down in the config gets a real connection and, by default, a real
// WebSocket handshake. Fall failures in a row mark a server unhealthy: it
// gets no new tunnels, and the tunnels it has are left alone. Rise
// successes in a row bring it back. Servers start healthy, as in nginx
// Plus without "mandatory".
type HealthCheck struct {
	// HTTP makes the check a plain GET whose status must be in Expect,
	// instead of a WebSocket upgrade.
	HTTP bool
	// Path is the request target. Default "/".
	Path string
	// Host is the Host header. Default: the server's "ip:port".
	Host string
	// Interval between two checks of a server. Default 5s.
	Interval time.Duration
	// Timeout bounds one whole check: connect, handshake, ping, close.
	// Default 2s.
	Timeout time.Duration
	// Rise and Fall are the consecutive passes that make an unhealthy
	// server healthy, and the consecutive failures that make a healthy
	// one unhealthy. Defaults 2 and 3.
	Rise, Fall int
	// Ping adds a ping that must come back as a pong with the same
	// payload, before the close (WebSocket checks only).
	Ping bool
	// Expect are the statuses an HTTP check accepts. Default 200-399.
	Expect []StatusRange
}

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ Lo, Hi int }

// Health check defaults, as documented on HealthCheck.
const (
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = 2 * time.Second
	DefaultRise          = 2
	DefaultFall          = 3
)

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Interval <= 0 {
		h.Interval = DefaultCheckInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultCheckTimeout
	}
	if h.Rise <= 0 {
		h.Rise = DefaultRise
	}
	if h.Fall <= 0 {
		h.Fall = DefaultFall
	}
	if len(h.Expect) == 0 {
		h.Expect = []StatusRange{{200, 399}}
	}
	return h
}

// checkLoop checks every server at once, then every Interval, until ctx
// ends. One goroutine per group; each round runs the servers' checks side
// by side (one short-lived goroutine per server and round, never per
// tunnel) and waits for all of them, so rounds never overlap.
func (g *Group) checkLoop(ctx context.Context) {
	defer g.wg.Done()
	hc := g.cfg.HealthCheck
	tick := time.NewTicker(hc.Interval)
	defer tick.Stop()
	for {
		g.checkRound(ctx, hc)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *Group) checkRound(ctx context.Context, hc *HealthCheck) {
	var wg sync.WaitGroup
	for _, s := range g.snap.Load().all {
		if s.down {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := hc.Check(ctx, s.Addr)
			if ctx.Err() != nil {
				return // cut short by Stop: says nothing about the server
			}
			g.record(s, err, hc)
		}()
	}
	wg.Wait()
}

// record applies one check result to s's rise/fall counters.
func (g *Group) record(s *Server, err error, hc *HealthCheck) {
	if err == nil {
		s.checkFail = 0
		s.checkOK++
		if s.unhealthy.Load() && s.checkOK >= hc.Rise {
			s.unhealthy.Store(false)
			g.event(Event{Kind: EventHealthy, Server: s})
		}
		return
	}
	s.checkOK = 0
	s.checkFail++
	if !s.unhealthy.Load() && s.checkFail >= hc.Fall {
		s.unhealthy.Store(true)
		g.event(Event{Kind: EventUnhealthy, Server: s, Err: err})
	}
}

// Errors of a health check, wrapped with the step that failed.
var (
	errCheckStatus = errors.New("unexpected status")
	errCheckPong   = errors.New("no pong with the ping's payload")
	errCheckClose  = errors.New("no close frame back")
	errCheckFrame  = errors.New("invalid frame")
)

// checkHead bounds the response head a check reads.
const checkHead = 16 << 10

// Check runs one check against addr and returns why it failed, or nil.
// The whole check, connect to close, is bounded by Timeout and by ctx.
//
// A WebSocket check is what a client does (RFC 6455 §4.1): an upgrade to
// Path with a fresh random key; the answer must be a 101 that
// handshake.VerifyUpgrade accepts for that key (Upgrade, Connection and
// Sec-WebSocket-Accept, as the proxy itself demands before any tunnel);
// then, with Ping, a masked ping whose pong must echo the payload; then a
// masked close 1000, and the server's close must come back (§5.5.1). A
// server that upgrades but cannot speak the protocol fails the check.
func (hc *HealthCheck) Check(ctx context.Context, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// Stop (ctx cancelled) or the timeout interrupts any read or write.
	defer context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host := hc.Host
	if host == "" {
		host = addr.String()
	}
	if hc.HTTP {
		return hc.checkHTTP(conn, host)
	}
	return hc.checkWebSocket(conn, host)
}

func (hc *HealthCheck) checkHTTP(conn net.Conn, host string) error {
	req := "GET " + hc.Path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	var resp handshake.Response
	if _, err := readHead(conn, &resp); err != nil {
		return err
	}
	for _, r := range hc.Expect {
		if resp.Status >= r.Lo && resp.Status <= r.Hi {
			return nil
		}
	}
	return fmt.Errorf("%w %d", errCheckStatus, resp.Status)
}

func (hc *HealthCheck) checkWebSocket(conn net.Conn, host string) error {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + hc.Path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: sluice-health-check\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("write upgrade: %w", err)
	}
	var resp handshake.Response
	br, err := readHead(conn, &resp)
	if err != nil {
		return err
	}
	if err := handshake.VerifyUpgrade(&resp, []byte(key)); err != nil {
		if resp.Status != 101 {
			return fmt.Errorf("%w %d: %w", errCheckStatus, resp.Status, err)
		}
		return err
	}
	if hc.Ping {
		payload := []byte("sluice-health-check")
		if err := writeFrame(conn, opPing, payload); err != nil {
			return fmt.Errorf("write ping: %w", err)
		}
		if err := awaitFrame(br, opPong, payload); err != nil {
			return err
		}
	}
	var code [2]byte
	binary.BigEndian.PutUint16(code[:], 1000)
	if err := writeFrame(conn, opClose, code[:]); err != nil {
		return fmt.Errorf("write close: %w", err)
	}
	return awaitFrame(br, opClose, nil)
}

// readHead reads a response head into resp and returns a reader for what
// follows it (bytes that came with the head first, then the connection).
func readHead(conn net.Conn, resp *handshake.Response) (*bufio.Reader, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		perr := handshake.ParseResponse(buf, checkHead, resp)
		switch {
		case perr == nil:
			rest := bytes.NewReader(buf[resp.HeadLen:])
			return bufio.NewReader(io.MultiReader(rest, conn)), nil
		case !errors.Is(perr, handshake.ErrIncomplete):
			return nil, perr
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("read answer: %w", io.ErrUnexpectedEOF)
		case err != nil:
			return nil, fmt.Errorf("read answer: %w", err)
		}
	}
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// writeFrame writes one final frame with a short payload (<= 125 bytes,
// all a control frame may carry), masked as a client must (§5.3).
func writeFrame(w io.Writer, op byte, payload []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b := make([]byte, 0, 6+len(payload))
	b = append(b, 0x80|op, 0x80|byte(len(payload)))
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	_, err := w.Write(b)
	return err
}

// maxCheckFrames bounds the frames a check skips while it waits for the
// one it wants (a server may greet new connections with messages).
const maxCheckFrames = 16

// awaitFrame reads frames until one with opcode op arrives; for a pong,
// its payload must equal want. A close before it fails the check.
func awaitFrame(br *bufio.Reader, op byte, want []byte) error {
	for range maxCheckFrames {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return fmt.Errorf("read frame: %w", err)
		}
		if h[1]&0x80 != 0 {
			return fmt.Errorf("%w: masked frame from the server", errCheckFrame) // §5.1
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				return fmt.Errorf("read frame: %w", err)
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(br, ext[:]); err != nil {
				return fmt.Errorf("read frame: %w", err)
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		got := h[0] & 0x0f
		if got == op && op == opPong {
			if n > 125 {
				return fmt.Errorf("%w: control frame of %d bytes", errCheckFrame, n)
			}
			p := make([]byte, n)
			if _, err := io.ReadFull(br, p); err != nil {
				return fmt.Errorf("read pong: %w", err)
			}
			if string(p) != string(want) {
				return errCheckPong
			}
			return nil
		}
		if got == op {
			return nil
		}
		if got == opClose {
			return fmt.Errorf("%w: server closed first", errCheckPong)
		}
		if n > 1<<20 {
			return fmt.Errorf("%w: a %d-byte frame", errCheckFrame, n)
		}
		if _, err := br.Discard(int(n)); err != nil {
			return fmt.Errorf("read frame: %w", err)
		}
	}
	if op == opClose {
		return errCheckClose
	}
	return errCheckPong
}
