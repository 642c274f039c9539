package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Limits. Each one bounds what a single client can make the server hold or
// do; the comment says which attack or accident it answers.
const (
	// maxName is how many runes of a name are kept. Longer names are cut,
	// not refused: a name is cosmetic, but every message repeats it to
	// every member of the room.
	maxName = 32

	// maxText is the longest text one message may carry, in bytes. A
	// longer one closes the connection with 1009 "message too big" (RFC
	// 6455 section 7.4.1): the page never sends one, so the peer is not
	// the page.
	maxText = 2000

	// maxMessage bounds one client message on the wire, JSON envelope and
	// all fragments included, so that nothing is allocated from a length
	// the peer declared (RFC 6455 section 10.4). encoding/json writes '<',
	// '>' and '&' as six-byte \u escapes, so maxText bytes of text may take
	// six times as much; 16 KiB leaves room for that and the envelope.
	maxMessage = 16 << 10

	// maxRoom is the longest room name; see validRoom.
	maxRoom = 32

	// closeGrace is how long a closing connection waits for the peer's
	// close frame (or for the close frame to be written) before the TCP
	// connection is closed anyway. Waiting at all matters: closing a
	// socket with unread input makes the kernel send RST, and a client
	// may then lose our close frame, with its status code, from its
	// receive buffer.
	closeGrace = 2 * time.Second

	defaultRoom = "lobby"
	defaultName = "anon"
)

// Options tune a Server. The zero value is usable: each zero field takes the
// default written beside it.
type Options struct {
	// QueueLen is how many outgoing messages may wait for one client's
	// writer (default 64). A client whose queue is full when a message is
	// broadcast is dropped: one slow reader must never stall the room.
	QueueLen int

	// PingInterval is how often the server pings each client (default
	// 30s). A client that sends nothing at all, not even the pong, for two
	// intervals is taken for dead and disconnected; this also keeps idle
	// connections alive through proxies that time out silent tunnels.
	PingInterval time.Duration

	// WriteTimeout bounds the write of one frame (default 10s). A peer
	// whose TCP window stays shut that long is disconnected even if its
	// queue never fills (a room too quiet to fill it).
	WriteTimeout time.Duration

	// Logf, if set, gets one line per join, leave, drop and failed
	// upgrade.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.QueueLen <= 0 {
		o.QueueLen = 64
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return o
}

// Server is the chat hub: it upgrades requests under /ws/, keeps the rooms
// and their members, and fans every message out to the sender's room.
//
// One mutex guards all rooms. A broadcast holds it while it queues the
// message for each member, which is a non-blocking channel send per member,
// so the lock is never held across I/O; in exchange every member of a room
// sees messages and join/leave notices in the same order, with counts that
// agree with that order.
type Server struct {
	opts Options

	mu      sync.Mutex
	rooms   map[string]*room
	clients map[*client]struct{} // every upgraded connection, joined or not
	closing bool                 // set by Shutdown: no new upgrades

	// wg counts live connections; each one's handler goroutine calls Done
	// once its writer has exited and its socket is closed.
	wg sync.WaitGroup
}

// NewServer returns a Server with no rooms.
func NewServer(o Options) *Server {
	return &Server{
		opts:    o.withDefaults(),
		rooms:   make(map[string]*room),
		clients: make(map[*client]struct{}),
	}
}

// Handler serves the WebSocket endpoint under /ws/ (the room is the last
// path segment; /ws and /ws/ are the lobby) and GET /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("/ws/", s.serveWS)
	return mux
}

// room is one set of members that see each other's messages.
type room struct {
	name    string
	members map[*client]struct{}
}

// event is every frame the server sends: messages, join and leave notices,
// and error replies. Fields a type does not use are left out.
type event struct {
	Type  string `json:"type"`
	Room  string `json:"room,omitempty"`
	Name  string `json:"name,omitempty"`
	Text  string `json:"text,omitempty"`
	TS    int64  `json:"ts,omitempty"`    // message: server time, Unix milliseconds
	Count int    `json:"count,omitempty"` // join, leave: members after the change
	Error string `json:"error,omitempty"` // error: what was wrong with the request
}

// encode marshals e. An event holds only strings and integers, which
// always marshal.
func (e event) encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// request is every frame a client may send.
type request struct {
	Type string `json:"type"` // "hello" or "message"
	Name string `json:"name"` // hello: the name shown beside messages
	Text string `json:"text"` // message: the text
}

// roomFromPath returns the room a /ws path names: its last non-empty
// segment, or the lobby for /ws and /ws/. ok is false for a name
// validRoom refuses.
func roomFromPath(p string) (name string, ok bool) {
	rest := strings.Trim(strings.TrimPrefix(p, "/ws"), "/")
	if rest == "" {
		return defaultRoom, true
	}
	name = rest[strings.LastIndexByte(rest, '/')+1:]
	return name, validRoom(name)
}

// validRoom reports whether name is 1 to 32 of [a-zA-Z0-9_-]. Room names
// appear in logs and in every message; keeping them to a small alphabet
// keeps both free of control characters and look-alike Unicode.
func validRoom(name string) bool {
	if name == "" || len(name) > maxRoom {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cleanName trims spaces, keeps at most maxName runes and falls back to
// "anon" for an empty name.
func cleanName(name string) string {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) > maxName {
		runes := []rune(name)
		name = strings.TrimSpace(string(runes[:maxName]))
	}
	if name == "" {
		return defaultName
	}
	return name
}

// serveWS upgrades the request and runs the connection until it ends: the
// reader runs on this goroutine, the writer on its own.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	name, ok := roomFromPath(r.URL.Path)
	if !ok {
		// Refused before the upgrade, so the client sees a plain 400 and
		// no WebSocket that would be closed at once.
		http.Error(w, "bad room name: want 1 to 32 of [a-zA-Z0-9_-]", http.StatusBadRequest)
		return
	}
	if s.isClosing() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		// UpgradeHTTP has already answered with the status the failure
		// maps to (400, 426, ...).
		s.logf("upgrade %s from %s: %v", r.URL.Path, r.RemoteAddr, err)
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	c := &client{
		srv:        s,
		conn:       conn,
		br:         rw.Reader, // may already hold frames sent right after the handshake
		bw:         rw.Writer,
		room:       name,
		send:       make(chan []byte, s.opts.QueueLen),
		pong:       make(chan []byte, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if !s.track(c) {
		// Shutdown began during the handshake. The client already has its
		// 101, so it gets the same 1001 the others got, not a bare close.
		_ = c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "server shutting down")), closeGrace)
		_ = conn.Close()
		return
	}
	go c.writeLoop()
	code, reason, peerClosed := c.readLoop()
	c.stop(code, reason)
	s.leave(c)
	<-c.writerDone
	if code != 0 && !peerClosed {
		// We sent the first close frame: wait for the answer. When the
		// peer's came first, the handshake is over once the writer has
		// echoed it, and the server closes TCP first (RFC 6455 7.1.1).
		c.linger()
	}
	_ = conn.Close()
	s.wg.Done()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track registers c as live, or reports false once Shutdown has begun.
// wg.Add happens under mu so that it can never race with Shutdown's Wait.
func (s *Server) track(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// join adds c to its room and tells the room, c included.
func (s *Server) join(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[c.room]
	if r == nil {
		r = &room{name: c.room, members: make(map[*client]struct{})}
		s.rooms[c.room] = r
	}
	r.members[c] = struct{}{}
	c.joined = true
	s.logf("join room=%s name=%q count=%d", r.name, c.name, len(r.members))
	s.broadcastLocked(r, event{Type: "join", Room: r.name, Name: c.name, Count: len(r.members)}.encode())
}

// leave forgets c and, if it was still a member of its room (it is not if
// a broadcast dropped it), tells the others.
func (s *Server) leave(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, c)
	r := s.rooms[c.room]
	if r == nil {
		return
	}
	if _, ok := r.members[c]; !ok {
		return
	}
	delete(r.members, c)
	s.logf("leave room=%s name=%q count=%d", r.name, c.name, len(r.members))
	s.broadcastLocked(r, event{Type: "leave", Room: r.name, Name: c.name, Count: len(r.members)}.encode())
}

// publish sends a message from c to c's room.
func (s *Server) publish(c *client, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[c.room]
	if r == nil {
		return
	}
	s.broadcastLocked(r, event{Type: "message", Room: r.name, Name: c.name, Text: text, TS: time.Now().UnixMilli()}.encode())
}

// broadcastLocked queues msg for every member of r. A member whose queue is
// full is dropped on the spot (removed and its connection closed) rather
// than waited for, and the rest are told it left; those notices can drop
// further members, hence the work list. Each round removes a member or
// empties the list, so it ends. s.mu must be held.
func (s *Server) broadcastLocked(r *room, msg []byte) {
	pending := [][]byte{msg}
	for len(pending) > 0 {
		msg, pending = pending[0], pending[1:]
		var slow []*client
		for m := range r.members {
			if !m.enqueue(msg) {
				slow = append(slow, m)
			}
		}
		for _, m := range slow {
			delete(r.members, m)
			m.kill()
			s.logf("drop room=%s name=%q: send queue full (%d messages)", r.name, m.name, s.opts.QueueLen)
			pending = append(pending, event{Type: "leave", Room: r.name, Name: m.name, Count: len(r.members)}.encode())
		}
	}
	if len(r.members) == 0 {
		delete(s.rooms, r.name)
	}
}

// Shutdown stops accepting upgrades, sends every client a close frame with
// 1001 "going away" and waits for the connections to end. If ctx ends
// first, the sockets left are closed at once and ctx's error returned.
//
// It does not stop the http.Server the Handler runs in: hijacked
// connections are out of that server's sight, so call both.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	live := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		live = append(live, c)
	}
	s.mu.Unlock()

	for _, c := range live {
		c.stop(ws.StatusGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range live {
			_ = c.conn.Close()
		}
		<-done // every goroutine of a closed socket ends promptly
		return ctx.Err()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// client is one WebSocket connection. Its reader runs on the HTTP handler's
// goroutine and its writer on its own; only the writer writes to conn, so
// frames never interleave and no write lock is needed.
type client struct {
	srv  *Server
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	room string

	// name and joined are written by the reader goroutine before join
	// publishes c and only read after, under srv.mu.
	name   string
	joined bool

	send       chan []byte   // queued text frames; bounded by Options.QueueLen
	pong       chan []byte   // at most one pong pending: RFC 6455 5.5.3 lets us answer only the latest ping
	done       chan struct{} // closed by stop: the writer sends the close frame and exits
	writerDone chan struct{} // closed by the writer when it exits

	mu          sync.Mutex
	stopped     bool
	closeCode   ws.StatusCode // 0: send no close frame, the connection is broken
	closeReason string
}

// enqueue queues msg without blocking and reports false if the queue is
// full.
func (c *client) enqueue(msg []byte) bool {
	select {
	case c.send <- msg:
		return true
	default:
		return false
	}
}

// stop starts closing c with the given status; the first call wins. It
// gives the peer closeGrace to answer with its own close frame, after which
// the reader's next read fails.
func (c *client) stop(code ws.StatusCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.closeCode, c.closeReason = code, reason
	_ = c.conn.SetReadDeadline(time.Now().Add(closeGrace))
	close(c.done)
}

// kill drops c without a close frame: it is not reading, so it would not
// read one either. Closing the socket at once frees it and ends both
// goroutines, even a writer blocked in a write.
func (c *client) kill() {
	c.stop(0, "")
	_ = c.conn.Close()
}

// extendRead pushes the read deadline two ping intervals ahead, unless c is
// closing (stop's shorter deadline must stand).
func (c *client) extendRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * c.srv.opts.PingInterval))
	}
}

// writeLoop drains the queue to the socket and pings on schedule, until
// stop or a failed write.
func (c *client) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.srv.opts.PingInterval)
	defer ping.Stop()
	for {
		var f ws.Frame
		select {
		case msg := <-c.send:
			f = ws.NewTextFrame(msg)
		case p := <-c.pong:
			f = ws.NewPongFrame(p)
		case <-ping.C:
			f = ws.NewPingFrame(nil)
		case <-c.done:
			c.mu.Lock()
			code, reason := c.closeCode, c.closeReason
			c.mu.Unlock()
			if code != 0 {
				_ = c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)), closeGrace)
			}
			return
		}
		if err := c.write(f, c.srv.opts.WriteTimeout); err != nil {
			c.kill()
			return
		}
	}
}

// write sends one frame, giving up after timeout.
func (c *client) write(f ws.Frame, timeout time.Duration) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if err := ws.WriteFrame(c.bw, f); err != nil {
		return err
	}
	return c.bw.Flush()
}

// errPeerClosed ends the read loop when the peer's close frame arrives in
// the middle of a fragmented message.
var errPeerClosed = errors.New("peer sent close")

// readLoop reads client frames until the connection must close. It returns
// the status to close with (0: none, the connection is broken) and whether
// the peer's close frame has been received.
func (c *client) readLoop() (code ws.StatusCode, reason string, peerClosed bool) {
	var peerCode ws.StatusCode
	rd := &wsutil.Reader{
		Source:         c.br,
		State:          ws.StateServerSide,
		CheckUTF8:      true,
		MaxFrameSize:   maxMessage,
		MaxMessageSize: maxMessage,
	}
	// A ping or close may come between the fragments of a message (RFC
	// 6455 section 5.4); the reader hands it here.
	rd.OnIntermediate = func(h ws.Header, r io.Reader) error {
		p, err := io.ReadAll(r) // at most 125 bytes: ws.CheckHeader enforces it
		if err != nil {
			return err
		}
		if closed, code := c.control(h.OpCode, p); closed {
			peerCode = code
			return errPeerClosed
		}
		return nil
	}
	for {
		c.extendRead()
		h, err := rd.NextFrame()
		if err != nil {
			if errors.Is(err, errPeerClosed) {
				return peerCode, "", true
			}
			code, reason = closeStatus(err)
			return code, reason, false
		}
		if h.OpCode.IsControl() {
			p, err := io.ReadAll(rd)
			if err != nil {
				code, reason = closeStatus(err)
				return code, reason, false
			}
			if closed, code := c.control(h.OpCode, p); closed {
				return code, "", true
			}
			continue
		}
		if h.OpCode != ws.OpText {
			return ws.StatusUnsupportedData, "text frames only", false
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			if errors.Is(err, errPeerClosed) {
				return peerCode, "", true
			}
			code, reason = closeStatus(err)
			return code, reason, false
		}
		if code, reason = c.handle(data); code != 0 {
			return code, reason, false
		}
	}
}

// control handles a ping, pong or close payload. For a close it reports
// true and the status to echo (RFC 6455 section 5.5.1: the endpoint
// answers with a close frame, usually echoing the status it received).
func (c *client) control(op ws.OpCode, p []byte) (closed bool, code ws.StatusCode) {
	switch op {
	case ws.OpPing:
		select {
		case c.pong <- p:
		default: // a pong is already pending; it answers this ping too
		}
	case ws.OpClose:
		code, _ = ws.ParseCloseFrameData(p)
		if code.Empty() || ws.CheckCloseFrameData(code, "") != nil {
			code = ws.StatusNormalClosure
		}
		return true, code
	}
	// A pong needs nothing: extendRead has already credited it.
	return false, 0
}

// closeStatus maps a read error to the close status it deserves.
func closeStatus(err error) (ws.StatusCode, string) {
	var pe ws.ProtocolError
	switch {
	case errors.Is(err, wsutil.ErrFrameTooLarge), errors.Is(err, wsutil.ErrMessageTooLarge):
		return ws.StatusMessageTooBig, "message too big"
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		return ws.StatusInvalidFramePayloadData, "invalid UTF-8"
	case errors.As(err, &pe):
		return ws.StatusProtocolError, string(pe)
	default:
		// EOF, reset, or the read deadline: nobody is there to read a
		// close frame.
		return 0, ""
	}
}

// handle acts on one client message and returns a close status if the
// message ends the connection.
func (c *client) handle(data []byte) (ws.StatusCode, string) {
	var req request
	if err := json.Unmarshal(data, &req); err != nil {
		// A bad frame is a client bug, not an attack: say so and go on.
		c.reply("bad JSON: " + err.Error())
		return 0, ""
	}
	switch req.Type {
	case "hello":
		if c.joined {
			c.reply("already joined as " + c.name)
			return 0, ""
		}
		c.name = cleanName(req.Name)
		c.srv.join(c)
	case "message":
		if len(req.Text) > maxText {
			return ws.StatusMessageTooBig, "text longer than 2000 bytes"
		}
		if strings.TrimSpace(req.Text) == "" {
			c.reply("empty message")
			return 0, ""
		}
		if !c.joined {
			// A client that skipped hello still gets to talk, as "anon".
			c.name = defaultName
			c.srv.join(c)
		}
		c.srv.publish(c, req.Text)
	default:
		c.reply("unknown type " + quoteShort(req.Type) + `: want "hello" or "message"`)
	}
	return 0, ""
}

// reply queues an error event for c alone. If even that does not fit, c
// is not reading and is dropped like any slow client.
func (c *client) reply(msg string) {
	if !c.enqueue(event{Type: "error", Error: msg}.encode()) {
		c.kill()
	}
}

// linger waits, up to the deadline stop set, for the peer to answer our
// close frame and close its side, discarding what it sends meanwhile, so
// that our close does not turn into an RST that could destroy the close
// frame in the peer's receive buffer (see closeGrace).
func (c *client) linger() {
	_, _ = io.CopyN(io.Discard, c.br, 1<<20)
}

// quoteShort quotes s for an error reply, cut short: it came from the peer
// and may be long.
func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	b, _ := json.Marshal(s)
	return string(b)
}
