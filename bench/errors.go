package bench

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// How a message or a connection attempt can fail. Each sentinel maps to one
// kind, the key it is counted under in Result.Errors; kindOf is the table.
var (
	// ErrDial: the TCP connect failed (refused, unreachable, timed out).
	ErrDial = errors.New("connect failed")
	// ErrHandshake: the answer to the upgrade was a 101 that RFC 6455 §4.1
	// says a client must fail (no Upgrade: websocket, no Connection:
	// Upgrade, a wrong Sec-WebSocket-Accept, an extension or subprotocol
	// the client did not offer), or no complete answer came at all.
	ErrHandshake = errors.New("bad upgrade answer")
	// ErrWrite: writing a message failed.
	ErrWrite = errors.New("write failed")
	// ErrMismatch: an echo came back that differs from the message sent,
	// in length or in any byte.
	ErrMismatch = errors.New("echo differs from the message sent")
	// ErrClosed: the peer sent a close frame or closed the connection
	// while an echo was awaited.
	ErrClosed = errors.New("peer closed the connection")
	// ErrProtocol: the server sent a frame RFC 6455 forbids (masked, a
	// reserved opcode, a fragmented control frame, an absurd length).
	ErrProtocol = errors.New("bad frame from server")
	// ErrCloseHandshake: the server did not answer a close frame with one
	// (handshake mode only; elsewhere the close is not measured).
	ErrCloseHandshake = errors.New("no close frame in reply")
)

// StatusError is an answer to the upgrade other than 101.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "upgrade answered " + strconv.Itoa(e.Code) }

// The keys of Result.Errors. Message kinds end a message that was sent in
// the measured window; connection kinds end a connection attempt, which is
// not a message (see Result.Sent for the invariant this split keeps).
const (
	KindWrite    = "write"
	KindRead     = "read"
	KindTimeout  = "timeout"
	KindMismatch = "mismatch"
	KindClosed   = "closed"

	KindDial      = "dial"
	KindHandshake = "handshake"
	KindClose     = "close"
	// KindStatusPrefix is followed by the status code: "status_404".
	KindStatusPrefix = "status_"
)

// MessageKinds are the error kinds that count messages: Result.Sent ==
// Result.Echoed + the sum of Result.Errors over these kinds.
var MessageKinds = []string{KindWrite, KindRead, KindTimeout, KindMismatch, KindClosed}

// IsMessageKind reports whether kind counts messages (see MessageKinds).
func IsMessageKind(kind string) bool {
	for _, k := range MessageKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// kindOf maps an error from this package's client to its Result.Errors key.
func kindOf(err error) string {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return KindStatusPrefix + strconv.Itoa(se.Code)
	case errors.Is(err, ErrDial):
		return KindDial
	case errors.Is(err, ErrHandshake):
		return KindHandshake
	case errors.Is(err, ErrCloseHandshake):
		return KindClose
	case errors.Is(err, ErrWrite):
		return KindWrite
	case errors.Is(err, ErrMismatch):
		return KindMismatch
	case errors.Is(err, ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	return KindRead
}

// errorCounts counts failures by kind without a lock for the fixed kinds;
// status codes, which a refusing target produces by the thousand but of
// few values, go in a map under a mutex.
type errorCounts struct {
	fixed  [8]atomic.Int64 // indexed like fixedKinds
	mu     sync.Mutex
	status map[int]int64
}

var fixedKinds = [8]string{KindWrite, KindRead, KindTimeout, KindMismatch, KindClosed, KindDial, KindHandshake, KindClose}

// add counts err under its kind.
func (e *errorCounts) add(err error) {
	var se *StatusError
	if errors.As(err, &se) {
		e.mu.Lock()
		if e.status == nil {
			e.status = map[int]int64{}
		}
		e.status[se.Code]++
		e.mu.Unlock()
		return
	}
	k := kindOf(err)
	for i, f := range fixedKinds {
		if f == k {
			e.fixed[i].Add(1)
			return
		}
	}
}

// total is the number of failures of any kind so far.
func (e *errorCounts) total() int64 {
	var n int64
	for i := range e.fixed {
		n += e.fixed[i].Load()
	}
	e.mu.Lock()
	for _, v := range e.status {
		n += v
	}
	e.mu.Unlock()
	return n
}

// snapshot returns the nonzero counts by kind (never nil).
func (e *errorCounts) snapshot() map[string]int64 {
	m := map[string]int64{}
	for i := range e.fixed {
		if v := e.fixed[i].Load(); v > 0 {
			m[fixedKinds[i]] = v
		}
	}
	e.mu.Lock()
	for code, v := range e.status {
		m[KindStatusPrefix+strconv.Itoa(code)] = v
	}
	e.mu.Unlock()
	return m
}
