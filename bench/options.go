package bench

import (
	"crypto/tls"
	"io"
	"time"
)

// Mode is a kind of load.
type Mode string

// The load generator's modes.
const (
	// ModeIdle opens Conns tunnels, checks each echoes once, holds them all
	// for Duration, then checks every one still echoes and closes them.
	ModeIdle Mode = "idle"
	// ModeRate sends a fixed total of Rate messages per second of Payload
	// bytes, spread evenly over Conns connections, for Duration (open loop:
	// latency is measured from each message's scheduled send time, so a
	// slow proxy cannot hide its delay by slowing the sender).
	ModeRate Mode = "rate"
	// ModeClosed keeps one message in flight on each of Conns connections
	// for Duration: send, wait for the echo, send again.
	ModeClosed Mode = "closed"
	// ModeHandshake runs Conns workers, each looping connect, upgrade, one
	// echo of Payload bytes, close handshake, for Duration.
	ModeHandshake Mode = "handshake"
	// ModeBulk streams messages of Payload bytes as fast as the path takes
	// them over Conns connections for Duration, reading the echoes back
	// concurrently.
	ModeBulk Mode = "bulk"
)

// Modes lists every mode in the order help texts show them.
var Modes = []Mode{ModeIdle, ModeRate, ModeClosed, ModeHandshake, ModeBulk}

// Options describe one load run. Zero values take the defaults that
// Options.Normalize documents per mode.
type Options struct {
	Mode Mode
	// URL is the target, ws://host:port/path. Only ws:// for now.
	URL string
	// Conns is the number of connections (idle: tunnels to hold;
	// handshake: concurrent workers).
	Conns int
	// Rate is the total messages per second over all connections (rate
	// mode only).
	Rate float64
	// Payload is the size of each message in bytes, at most MaxPayload.
	Payload int
	// Duration is the measured window (idle: how long the tunnels are held).
	Duration time.Duration
	// Warmup runs the load before the measured window without recording
	// it (not for idle).
	Warmup time.Duration
	// Sources is how many loopback source addresses (127.0.0.2, ...)
	// connections are spread over; 0 picks one per 10,000 connections
	// that the run may open (at least 1; at least 8 in handshake mode).
	// A target off 127.0.0.0/8 gets none: connections are not bound.
	Sources int
	// Timeout bounds each dial, upgrade and echo wait, and the drain
	// after the window: echoes not back by then count as "timeout".
	Timeout time.Duration
	// Host and Origin, when set, are sent as those request headers.
	Host, Origin string
	// TLS configures the client side of wss:// targets (roots, server
	// name); nil verifies against the system roots with the URL's host as
	// the server name. Every connection makes a full TLS handshake.
	TLS *tls.Config
	// Progress, when not nil, receives a progress display: a bar redrawn
	// in place when it is a terminal, a plain line per second otherwise.
	Progress io.Writer
	// OnMeasure, when not nil, is called synchronously with true when the
	// measured window begins and with false when it ends (before the
	// drain). In idle mode the window is the hold: true is called once
	// every tunnel is open and has echoed. A comparison harness reads a
	// proxy's CPU time or memory there.
	OnMeasure func(begin bool)
}

// Result is what a run measured. Field names are the JSON that
// `sluice bench --json` prints and the comparison harness reads.
type Result struct {
	Mode    Mode    `json:"mode"`
	URL     string  `json:"url"`
	Conns   int     `json:"conns"`
	Rate    float64 `json:"rate,omitempty"`
	Payload int     `json:"payload"`
	Sources int     `json:"sources"`
	// Elapsed is the measured window's real length in seconds.
	Elapsed float64 `json:"elapsed_s"`

	// Sent counts messages written in the measured window (idle mode: the
	// two checks of every tunnel, one when it opens and one after the
	// hold; handshake mode: the echo of each cycle begun in the window).
	// Each one ends as exactly one of Echoed or one count under a message
	// kind of Errors (MessageKinds: write, read, timeout, mismatch,
	// closed), so after every run
	//	Sent == Echoed + Σ Errors[k] for k in MessageKinds.
	// Connection failures are not messages and stay outside that sum.
	Sent   int64 `json:"sent"`
	Echoed int64 `json:"echoed"`
	// Errors counts failures by kind (kinds that did not occur are
	// absent). Message kinds: "write", "read" (including a frame RFC 6455
	// forbids a server to send), "timeout" (no echo within Timeout),
	// "mismatch" (an echo that differs from what was sent), "closed" (the
	// peer sent a close frame or closed the connection). Connection kinds:
	// "dial", "handshake" (no answer, or a 101 a client must fail),
	// "status_NNN" (any other status, e.g. "status_404"), "close" (no
	// close frame in reply; handshake mode only). Connection failures in
	// handshake mode's warmup are not counted.
	Errors map[string]int64 `json:"errors"`

	// MsgsPerSec is Echoed / Elapsed.
	MsgsPerSec float64 `json:"msgs_per_s"`
	// MBPerSec is echoed payload megabytes (10^6 B) per second, one way.
	MBPerSec float64 `json:"mb_per_s"`
	// Handshakes counts completed upgrades in the measured window
	// (handshake mode: completed connect+upgrade+echo+close cycles).
	Handshakes       int64   `json:"handshakes"`
	HandshakesPerSec float64 `json:"handshakes_per_s"`
	// Open is how many tunnels were open at once (idle mode), and Alive
	// how many of them still echoed at the end.
	Open  int `json:"open,omitempty"`
	Alive int `json:"alive,omitempty"`

	// Latency is the round trip of a message (rate: from its scheduled
	// send time, or from when the sender's timer woke for it if that was
	// later: Go timers fire up to ~1 ms late, the generator's lateness
	// and not the path's). HandshakeLatency is connect through the
	// verified 101: of the cycles begun in the window in handshake mode,
	// of opening the connections (before the window) in the others.
	Latency          Latency `json:"latency_us"`
	HandshakeLatency Latency `json:"handshake_latency_us"`
}

// Latency is a distribution summary in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}
