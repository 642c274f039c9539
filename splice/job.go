package splice

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
)

// Config configures a Pool.
type Config struct {
	// Loops is the number of relay loops. Each is one goroutine locked to an
	// OS thread with its own epoll fd. 0 means runtime.NumCPU().
	Loops int
}

// Job is one client connection handed over after its request head was
// parsed. From Submit on, the pool owns ClientFD and closes it on every path.
//
// A zero timeout means "no limit" for that phase. The engine is expected to
// fill every field from its configuration; splice only applies the size
// defaults below.
type Job struct {
	// ClientFD is a connected, non-blocking stream socket.
	ClientFD int
	// Held holds client bytes already read past the request head. They are
	// written upstream only once the tunnel is verified and dropped
	// otherwise. splice never writes into Held.
	Held []byte
	// Request is written to the upstream once connected (the rewritten
	// upgrade request). splice never writes into Request.
	Request []byte

	// ConnectTimeout bounds each connect attempt (nginx proxy_connect_timeout).
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the time from "connected" until Judge returns
	// Tunnel or Refuse.
	HandshakeTimeout time.Duration
	// ReadTimeout is the longest a tunnel may wait between two successive
	// reads from the upstream (nginx proxy_read_timeout). Client reads do not
	// reset it. While the upstream is not read because the client is slow
	// (the down direction is blocked), the clock is stopped, as in nginx:
	// the SendTimeout covers that case.
	ReadTimeout time.Duration
	// SendTimeout is the longest a write to either peer may stay blocked
	// (bytes pending, socket full) without progress (nginx
	// proxy_send_timeout / send_timeout).
	SendTimeout time.Duration
	// BufferSize bounds, per direction, the bytes read but not yet written,
	// and is the largest single read (capped at the loop's 64 KiB read
	// buffer). Default 16384.
	BufferSize int
	// MaxReplyHead bounds the upstream answer buffered while waiting for a
	// verdict. Default 16384. Judge sees at most this many bytes; NeedMore
	// at the cap fails the job (HandshakeFailed, ErrReplyTooLarge).
	MaxReplyHead int

	Handler Handler

	// Live, when set, receives the tunnel's byte counts as they grow and
	// the time of its last write, for observers on other goroutines (the
	// admin listener's /tunnels). nil costs nothing.
	Live *Live
}

// Live is a tunnel's running totals, written by its relay loop and
// readable from any goroutine.
type Live struct {
	BytesUp    atomic.Int64 // client → upstream bytes written so far (Held included)
	BytesDown  atomic.Int64 // upstream → client bytes written so far (the 101 head included)
	LastActive atomic.Int64 // unix nanoseconds of the last write either way; 0 before any
}

// Handler is implemented by the engine, one value per job. Every method is
// called on the job's loop goroutine, never concurrently, and never per
// relayed chunk. A method must not block: it stalls every tunnel of the loop.
// A method may call Pool.Submit but must not call Pool.Close (Close waits for
// the loop that is running the method).
type Handler interface {
	// NextUpstream returns the address for connect attempt number attempt
	// (0-based). lastErr is the previous attempt's failure (nil for attempt
	// 0). ok=false means give up: the pool then calls Failed. It must say
	// ok=false eventually: an address that fails at once (a closed port on
	// loopback) is retried without waiting for an event.
	NextUpstream(attempt int, lastErr error) (addr netip.AddrPort, ok bool)
	// Judge is called each time more upstream bytes arrived; reply is
	// everything so far and aliases a buffer valid only during the call.
	Judge(reply []byte) Verdict
	// Failed returns the bytes to write to the client when no tunnel can be
	// made: NextUpstream gave up after the last attempt failed (connect
	// failed or timed out, handshake timed out, upstream closed or reset
	// before a verdict, reply over MaxReplyHead, Judge said Retry), or
	// offered no address at all. err is the last attempt's failure;
	// timedOut tells the 504 class (connect/handshake timeout) from the 502
	// class. The returned slice must
	// stay untouched until Done.
	Failed(err error, timedOut bool) []byte
	// Done is called exactly once per Job, last, after both fds are closed.
	// r is valid only during the call.
	Done(r *Report)
}

// Action is Judge's decision about the upstream's answer.
type Action uint8

const (
	// NeedMore: the answer is incomplete; call Judge again when more bytes
	// arrive.
	NeedMore Action = iota
	// Tunnel: the answer is a verified 101; relay both ways.
	Tunnel
	// Refuse: never tunnel; answer the client and close.
	Refuse
	// Retry: the answer is unusable (an invalid 101, say) but nothing of it
	// reached the client, so the job moves to the next upstream:
	// NextUpstream is asked again with Verdict.Err as lastErr, and the
	// request is sent afresh. nginx's proxy_next_upstream invalid_header.
	Retry
)

// Verdict is what Judge decided.
type Verdict struct {
	Action Action
	// Tunnel: the whole reply (upstream head and anything after it) is
	// forwarded to the client unchanged, then Held goes upstream, then bytes
	// flow both ways.
	//
	// Refuse: Reply is written to the client first; then Skip bytes of the
	// upstream reply are discarded and the next Forward bytes of the upstream
	// stream (the rest of the reply buffer, then more reads) are relayed to
	// the client (Forward = -1: until the upstream closes); then both are
	// closed. While it lasts, the read idle limit is the shorter of
	// HandshakeTimeout and ReadTimeout, and SendTimeout applies. Held is dropped and
	// the client→upstream direction is never opened. Reply must stay
	// untouched until Done.
	Reply   []byte
	Skip    int
	Forward int64
	// Tunnel: FramesAfter is how many bytes of the reply come before the
	// WebSocket frames (the upstream's head). Splice follows frame
	// boundaries from there, so that Drain can send a close frame between
	// two frames.
	FramesAfter int
	// Retry: Err says what was wrong with the answer; it becomes the
	// attempt's failure (NextUpstream's lastErr, and Failed's err when no
	// upstream is left).
	Err error
}

// Reason tells why a job ended.
//
// The reason is fixed when the job's fate is sealed: once Judge refused or
// splice gave up on the upstream (Refused, ConnectFailed, ConnectTimeout,
// HandshakeTimeout, HandshakeFailed), a later failure while writing the
// answer to the client only sets Report.Err.
type Reason uint8

const (
	ClientClosed     Reason = iota + 1 // client closed first, both directions finished
	UpstreamClosed                     // upstream closed first, both directions finished
	ClientError                        // read/write error or reset on the client socket
	UpstreamError                      // read/write error or reset on the upstream socket
	ReadTimeout                        // no read from the upstream for Job.ReadTimeout
	SendTimeout                        // a write stayed blocked for Job.SendTimeout
	ConnectFailed                      // every connect attempt failed (or none was offered)
	ConnectTimeout                     // the last connect attempt timed out
	HandshakeTimeout                   // no verdict within Job.HandshakeTimeout
	HandshakeFailed                    // upstream closed/reset before a verdict, or reply too big
	Refused                            // Judge said Refuse
	Shutdown                           // Pool.Close
)

var reasonNames = [...]string{
	ClientClosed:     "client_closed",
	UpstreamClosed:   "upstream_closed",
	ClientError:      "client_error",
	UpstreamError:    "upstream_error",
	ReadTimeout:      "read_timeout",
	SendTimeout:      "send_timeout",
	ConnectFailed:    "connect_failed",
	ConnectTimeout:   "connect_timeout",
	HandshakeTimeout: "handshake_timeout",
	HandshakeFailed:  "handshake_failed",
	Refused:          "refused",
	Shutdown:         "shutdown",
}

// String returns a short snake_case word for access logs.
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}

// Report describes a finished job; Handler.Done receives it.
type Report struct {
	Upstream  netip.AddrPort // last address tried (zero if none)
	Attempts  int            // connect attempts made
	Tunnelled bool           // a verified tunnel existed
	BytesUp   int64          // client → upstream bytes written during the tunnel (Held included)
	BytesDown int64          // upstream → client bytes written (the 101 head and refusal bytes included)
	Start     time.Time      // Submit time
	Connected time.Time      // zero if never connected
	End       time.Time
	// Reason: for a tunnel that ended normally, who closed first
	// (ClientClosed/UpstreamClosed), once both directions finished.
	Reason Reason
	// Err is the underlying error, if any, wrapped with context.
	Err error
}

// Errors splice reports (wrapped with context) in Report.Err and to
// Handler.Failed; callers branch on them with errors.Is.
var (
	ErrClosed           = errors.New("splice: pool closed")
	ErrNoHandler        = errors.New("splice: job without handler")
	ErrNoUpstream       = errors.New("no upstream address")
	ErrConnectTimeout   = errors.New("connect timed out")
	ErrHandshakeTimeout = errors.New("upstream handshake timed out")
	ErrUpstreamClosed   = errors.New("upstream closed before a verdict")
	ErrReplyTooLarge    = errors.New("upstream reply head too large")
	ErrInvalidReply     = errors.New("invalid upstream reply") // a Retry verdict without Err
	ErrReadTimeout      = errors.New("upstream read timed out")
	ErrSendTimeout      = errors.New("send timed out")
	ErrShortForward     = errors.New("upstream closed before the forwarded body ended")
	ErrShutdown         = errors.New("splice: pool shut down")
)
