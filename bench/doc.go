// Package bench generates WebSocket load against any proxy, treating it as
// a black box on a socket, and reports what it measured. Run takes Options
// (a mode, a ws:// target, how many connections, what rate and payload,
// how long) and returns a Result; Command is `sluice bench` around it;
// ListenEcho is the echo backend the load is measured against.
//
// The client speaks RFC 6455 on plain sockets: the upgrade written and
// checked by hand (a non-101 answer is counted as "status_NNN", a 101 a
// client must fail as "handshake"), every frame masked with a fresh key,
// header and payload written in one syscall from a buffer allocated once
// per connection. Each payload starts with the connection's id and the
// message's sequence number, and each echo is compared byte for byte with
// what was sent.
//
// Accounting. A message is counted when it is written in the measured
// window (warmup messages are not counted at all) and ends as exactly one
// of Result.Echoed or one error of a message kind (MessageKinds), so
//
//	Sent == Echoed + Σ Errors[k], k in MessageKinds
//
// holds after every run, cancelled ones included. When the window ends the
// senders stop and the echoes still awaited get Timeout; those that never
// come are "timeout". Failures to connect are not messages: they are
// counted under their own kinds ("dial", "handshake", "status_NNN",
// "close") outside that sum.
//
// Source addresses: one source IP has about 28,000 ephemeral ports towards
// one destination, so a run that holds or churns many thousands of
// connections on loopback spreads them over several sources (127.0.0.2,
// 127.0.0.3, ...), all of which Linux routes to lo without configuration.
package bench
