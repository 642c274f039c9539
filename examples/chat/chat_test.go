package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Every wait in these tests is bounded by a deadline on the socket, and
// every loop by a count: a broken server fails a test, it never hangs one.
const (
	waitShort = 5 * time.Second // for one expected frame
	maxFrames = 200             // frames read while looking for one
)

// TestMain fails the run if goroutines or file descriptors outlive the
// tests: each test closes its clients and shuts its servers down, so the
// counts must return to where they started.
func TestMain(m *testing.M) {
	// The runtime opens its network poller's fds (epoll, eventfd) on first
	// use and keeps them: open them before counting.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		_ = ln.Close()
	}
	goroutines, fds := liveGoroutines(), openFDs()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for {
			g, f := liveGoroutines(), openFDs()
			if len(g) <= len(goroutines) && len(f) <= len(fds) {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "leak: %d goroutines (started with %d), fds %v (started with %v)\n\n%s\n",
					len(g), len(goroutines), f, fds, strings.Join(g, "\n\n"))
				code = 1
				break
			}
			time.Sleep(20 * time.Millisecond) // polling for exits the runtime does not announce
		}
	}
	os.Exit(code)
}

// processWide are goroutines that libraries start once per process, on
// first use, and never stop: they are not leaks of a test.
var processWide = []string{
	"github.com/valyala/fasthttp.updateServerDate",     // the Date header clock (sluice's plain-HTTP front)
	"github.com/valyala/fasthttp/stackless.funcWorker", // fasthttp's compression workers
	"github.com/panjf2000/ants/v2.(*poolCommon)",       // gnet's default worker pool
	"github.com/panjf2000/ants/v2.(*goWorker).run",     // its idle workers (they expire after 10 s); sluice's accept loops register connections through it
}

// liveGoroutines returns the stacks of all goroutines but processWide ones.
func liveGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var live []string
next:
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, p := range processWide {
			if strings.Contains(g, p) {
				continue next
			}
		}
		live = append(live, g)
	}
	return live
}

// openFDs lists this process's open file descriptors with their targets
// (nil where /proc is missing, which disables the check).
func openFDs() []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := make([]string, 0, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds = append(fds, e.Name()+"->"+target)
	}
	return fds
}

// backend is a chat Server on a real loopback socket.
type backend struct {
	chat *Server
	addr string // host:port
}

// startBackend serves a chat Server on 127.0.0.1:0 until the test ends.
func startBackend(t *testing.T, o Options) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Logf = t.Logf
	chat := NewServer(o)
	hs := &http.Server{Handler: chat.Handler(), ReadHeaderTimeout: waitShort}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		_ = hs.Shutdown(ctx)
		if err := chat.Shutdown(ctx); err != nil {
			t.Errorf("chat shutdown: %v", err)
		}
		<-served
	})
	return &backend{chat: chat, addr: ln.Addr().String()}
}

// dial opens a WebSocket to path without saying hello.
func (b *backend) dial(t *testing.T, path string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitShort}
	c, resp, err := d.Dial("ws://"+b.addr+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// join dials path, says hello as name and waits for its own join notice,
// after which it is sure to receive everything broadcast to the room.
func (b *backend) join(t *testing.T, path, name string) *websocket.Conn {
	t.Helper()
	c := b.dial(t, path)
	send(t, c, request{Type: "hello", Name: name})
	expect(t, c, func(e event) bool { return e.Type == "join" && e.Name == name })
	return c
}

func send(t *testing.T, c *websocket.Conn, r request) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(waitShort))
	if err := c.WriteJSON(r); err != nil {
		t.Fatalf("send %+v: %v", r, err)
	}
}

// next reads one event within waitShort.
func next(c *websocket.Conn) (event, error) {
	var e event
	_ = c.SetReadDeadline(time.Now().Add(waitShort))
	_, p, err := c.ReadMessage()
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(p, &e); err != nil {
		return e, fmt.Errorf("bad event %q: %w", p, err)
	}
	return e, nil
}

// expect reads events until one satisfies match, and returns it. It skips
// at most maxFrames others, waiting at most waitShort for each.
func expect(t *testing.T, c *websocket.Conn, match func(event) bool) event {
	t.Helper()
	for range maxFrames {
		e, err := next(c)
		if err != nil {
			t.Fatalf("waiting for an event: %v", err)
		}
		if match(e) {
			return e
		}
	}
	t.Fatalf("no matching event in %d frames", maxFrames)
	return event{}
}

// expectClose reads until the server's close frame and checks its code.
func expectClose(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	for range maxFrames {
		_, err := next(c)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.Code != code {
			t.Fatalf("want close %d, got %d %q", code, ce.Code, ce.Text)
		}
		return
	}
	t.Fatalf("no close frame in %d frames", maxFrames)
}

func isMessage(name, text string) func(event) bool {
	return func(e event) bool { return e.Type == "message" && e.Name == name && e.Text == text }
}

// TestRoomsIsolateMessages: the members of a room, sender included, get
// each message; a member of another room does not.
func TestRoomsIsolateMessages(t *testing.T) {
	// Each path must reach the room named beside it.
	tests := []struct {
		aPath, bPath, room string
	}{
		{"/ws/lobby", "/ws/", "lobby"},
		{"/ws", "/ws/lobby/", "lobby"},
		{"/ws/room2", "/ws/app/room2", "room2"},
	}
	for _, tt := range tests {
		t.Run(tt.aPath+"+"+tt.bPath, func(t *testing.T) {
			b := startBackend(t, Options{})
			alice := b.join(t, tt.aPath, "alice")
			bob := b.join(t, tt.bPath, "bob")
			carol := b.join(t, "/ws/elsewhere", "carol")

			// alice sees bob join, with both counted.
			e := expect(t, alice, func(e event) bool { return e.Type == "join" && e.Name == "bob" })
			if e.Count != 2 || e.Room != tt.room {
				t.Errorf("bob's join as alice sees it: %+v, want room %q count 2", e, tt.room)
			}

			before := time.Now().UnixMilli()
			send(t, alice, request{Type: "message", Text: "hi from alice"})
			send(t, bob, request{Type: "message", Text: "hi from bob"})
			for _, c := range []*websocket.Conn{alice, bob} {
				// The two messages may arrive in either order.
				got := map[string]bool{}
				for range maxFrames {
					if len(got) == 2 {
						break
					}
					e := expect(t, c, func(e event) bool { return e.Type == "message" })
					if e.Text != "hi from "+e.Name || e.Room != tt.room || e.TS < before || e.TS > time.Now().UnixMilli() {
						t.Errorf("message %+v: want text \"hi from <name>\", room %q, ts in [%d, now]", e, tt.room, before)
					}
					got[e.Name] = true
				}
				if !got["alice"] || !got["bob"] {
					t.Errorf("messages seen from %v, want alice and bob", got)
				}
			}

			// Both messages were queued for every lobby member before
			// alice and bob got theirs, so had carol been one, they would
			// come before her own message: the first message she sees
			// must be hers.
			send(t, carol, request{Type: "message", Text: "anyone?"})
			e = expect(t, carol, func(e event) bool { return e.Type == "message" })
			if e.Name != "carol" {
				t.Errorf("carol, in another room, got %+v", e)
			}
		})
	}
}

// TestLeaveNotice: when a member disconnects, the others are told, with the
// new count.
func TestLeaveNotice(t *testing.T) {
	b := startBackend(t, Options{})
	alice := b.join(t, "/ws/lobby", "alice")
	bob := b.join(t, "/ws/lobby", "bob")
	_ = bob.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitShort))
	expectClose(t, bob, websocket.CloseNormalClosure) // the server echoes the close
	e := expect(t, alice, func(e event) bool { return e.Type == "leave" })
	if e.Name != "bob" || e.Count != 1 {
		t.Errorf("leave notice %+v, want bob and count 1", e)
	}
}

// TestUpgradeRefusals: the room name is checked before the upgrade, so a
// bad one gets a plain HTTP 400; /healthz answers without a WebSocket.
func TestUpgradeRefusals(t *testing.T) {
	b := startBackend(t, Options{})
	tests := []struct {
		path string
		want int
	}{
		{"/ws/lobby", http.StatusSwitchingProtocols},
		{"/ws/A-z_09", http.StatusSwitchingProtocols},
		{"/ws/" + strings.Repeat("r", 32), http.StatusSwitchingProtocols},
		{"/ws/" + strings.Repeat("r", 33), http.StatusBadRequest},
		{"/ws/bad.name", http.StatusBadRequest},
		{"/ws/sp%20ace", http.StatusBadRequest},
		{"/ws/caf%C3%A9", http.StatusBadRequest},
		{"/ws/app/x%2Fy", http.StatusSwitchingProtocols}, // decoded /ws/app/x/y: room "y"
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			d := websocket.Dialer{HandshakeTimeout: waitShort}
			c, resp, err := d.Dial("ws://"+b.addr+tt.path, nil)
			if c != nil {
				_ = c.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d (err %v)", resp.StatusCode, tt.want, err)
			}
		})
	}

	t.Run("healthz", func(t *testing.T) {
		hc := &http.Client{Timeout: waitShort, Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://" + b.addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Errorf("healthz: %d %q, want 200 \"ok\"", resp.StatusCode, body)
		}
	})
}

// TestLimits: what a client sends beyond the limits, and what it gets back.
func TestLimits(t *testing.T) {
	tests := []struct {
		name  string
		frame string // raw text frame to send after joining
		close int    // expected close code, 0 for none
		reply func(event) bool
	}{
		{
			name:  "text of 2000 bytes is delivered",
			frame: `{"type":"message","text":"` + strings.Repeat("x", maxText) + `"}`,
			reply: isMessage("alice", strings.Repeat("x", maxText)),
		},
		{
			name:  "text of 2001 bytes closes 1009",
			frame: `{"type":"message","text":"` + strings.Repeat("x", maxText+1) + `"}`,
			close: websocket.CloseMessageTooBig,
		},
		{
			name:  "frame over maxMessage closes 1009",
			frame: strings.Repeat(" ", maxMessage+1),
			close: websocket.CloseMessageTooBig,
		},
		{
			name:  "bad JSON gets an error reply",
			frame: `{"type":`,
			reply: func(e event) bool { return e.Type == "error" && strings.HasPrefix(e.Error, "bad JSON") },
		},
		{
			name:  "unknown type gets an error reply",
			frame: `{"type":"shout","text":"hi"}`,
			reply: func(e event) bool { return e.Type == "error" && strings.Contains(e.Error, `"shout"`) },
		},
		{
			name:  "empty text gets an error reply",
			frame: `{"type":"message","text":"  "}`,
			reply: func(e event) bool { return e.Type == "error" && e.Error == "empty message" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, Options{})
			c := b.join(t, "/ws/lobby", "alice")
			_ = c.SetWriteDeadline(time.Now().Add(waitShort))
			if err := c.WriteMessage(websocket.TextMessage, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			if tt.close != 0 {
				expectClose(t, c, tt.close)
				return
			}
			expect(t, c, tt.reply)
			// The connection survives: a normal message still goes round.
			send(t, c, request{Type: "message", Text: "still here"})
			expect(t, c, isMessage("alice", "still here"))
		})
	}
}

// TestNames: names are trimmed, cut to 32 runes, and default to "anon",
// also for a client that talks without saying hello.
func TestNames(t *testing.T) {
	long := strings.Repeat("é", maxName+5)
	tests := []struct {
		hello *request
		want  string
	}{
		{&request{Type: "hello", Name: "  bob  "}, "bob"},
		{&request{Type: "hello", Name: long}, long[:2*maxName]}, // é is 2 bytes
		{&request{Type: "hello", Name: ""}, "anon"},
		{nil, "anon"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b := startBackend(t, Options{})
			c := b.dial(t, "/ws/lobby")
			if tt.hello != nil {
				send(t, c, *tt.hello)
			}
			send(t, c, request{Type: "message", Text: "hello"})
			expect(t, c, isMessage(tt.want, "hello"))
		})
	}
}

// TestSlowClientDropped: a member that never reads is dropped once its
// queue is full, and the others keep receiving meanwhile and after.
func TestSlowClientDropped(t *testing.T) {
	const queue = 8
	b := startBackend(t, Options{QueueLen: queue})
	alice := b.join(t, "/ws/lobby", "alice")
	bob := b.join(t, "/ws/lobby", "bob")

	// slow joins, then never reads again.
	slow := b.dial(t, "/ws/lobby")
	send(t, slow, request{Type: "hello", Name: "slow"})
	for _, c := range []*websocket.Conn{alice, bob} {
		expect(t, c, func(e event) bool { return e.Type == "join" && e.Name == "slow" })
	}

	// alice sends in lock-step: each message is read by alice and bob
	// before the next goes, so only slow's queue can grow. Loopback
	// buffers hold a few MB at most; 5000 messages of 1.9 KB is beyond.
	const maxSends = 5000
	deadline := time.Now().Add(30 * time.Second)
	text := strings.Repeat("m", 1900)
	dropped := false
	for i := 0; i < maxSends && !dropped && time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("%d %s", i, text)
		send(t, alice, request{Type: "message", Text: msg})
		for _, c := range []*websocket.Conn{alice, bob} {
			e := expect(t, c, func(e event) bool {
				return isMessage("alice", msg)(e) || e.Type == "leave"
			})
			if e.Type == "leave" {
				if e.Name != "slow" || e.Count != 2 {
					t.Fatalf("leave %+v, want slow with count 2", e)
				}
				dropped = true
				// The message this leave came with still reaches c.
				expect(t, c, isMessage("alice", msg))
			}
		}
		if dropped {
			t.Logf("slow dropped after %d messages", i+1)
		}
	}
	if !dropped {
		t.Fatalf("slow client not dropped after %d messages or 30 s", maxSends)
	}

	send(t, bob, request{Type: "message", Text: "after the drop"})
	expect(t, alice, isMessage("bob", "after the drop"))

	// slow's socket was closed: once it reads what the kernel kept (a
	// few MB, at full speed now), it finds the end of the stream, not
	// more messages and not a stall.
	for range maxSends + maxFrames {
		_ = slow.SetReadDeadline(time.Now().Add(waitShort))
		if _, _, err := slow.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("slow's connection still open: %v", err)
			}
			return
		}
	}
	t.Errorf("slow still reading after %d messages", maxSends+maxFrames)
}

// TestPing: the server pings on schedule, and answers a ping with a pong.
func TestPing(t *testing.T) {
	b := startBackend(t, Options{PingInterval: 50 * time.Millisecond})
	c := b.join(t, "/ws/lobby", "alice")
	// gorilla runs these handlers inside ReadMessage, which returns only
	// for a data frame: each handler turns what it saw into a chat
	// message, whose echo ends the read. (This goroutine is not writing
	// while it reads, so the handlers may write.)
	var pinged, ponged bool
	c.SetPingHandler(func(p string) error {
		if err := c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(waitShort)); err != nil {
			return err
		}
		if pinged {
			return nil
		}
		pinged = true
		return c.WriteJSON(request{Type: "message", Text: "got ping"})
	})
	c.SetPongHandler(func(p string) error {
		if ponged {
			return nil
		}
		ponged = true
		return c.WriteJSON(request{Type: "message", Text: "got pong: " + p})
	})
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(waitShort)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range maxFrames {
		if len(seen) == 2 {
			return
		}
		e, err := next(c)
		if err != nil {
			t.Fatalf("waiting for ping and pong: %v (seen %v)", err, seen)
		}
		if e.Type == "message" {
			seen[e.Text] = true
		}
	}
	t.Fatalf("want \"got ping\" and \"got pong: are you there\", saw %v", seen)
}

// TestShutdown: Shutdown closes every client with 1001 and refuses new
// upgrades with 503.
func TestShutdown(t *testing.T) {
	b := startBackend(t, Options{})
	alice := b.join(t, "/ws/lobby", "alice")
	bob := b.join(t, "/ws/room2", "bob")
	lurker := b.dial(t, "/ws/lobby") // upgraded, never said hello

	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- b.chat.Shutdown(ctx) }()
	for _, c := range []*websocket.Conn{alice, bob, lurker} {
		expectClose(t, c, websocket.CloseGoingAway)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	d := websocket.Dialer{HandshakeTimeout: waitShort}
	c, resp, err := d.Dial("ws://"+b.addr+"/ws/lobby", nil)
	if c != nil {
		_ = c.Close()
	}
	if resp == nil {
		t.Fatalf("dial after shutdown: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade after shutdown: %d, want 503", resp.StatusCode)
	}
}
