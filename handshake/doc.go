// Package handshake parses and judges the HTTP/1.1 heads of a WebSocket
// opening handshake, in place, and builds the bytes sluice sends on either
// side of it.
//
// It is pure: no sockets, no clocks, no logging. Bytes go in, typed verdicts
// and bytes come out, so the engine can call it from an event loop on a
// buffer it does not own and the whole protocol surface can be fuzzed and
// tested as tables of raw bytes.
//
// The flow on one connection:
//
//	ParseRequest(buf, limit, &req)        syntax only; 0 allocs; ErrIncomplete = wait for more
//	CheckUpgrade(&req)                    RFC 6455 §4.2.1 verdict
//	AppendUpstreamRequest(dst, &req, fwd) hop-by-hop headers dropped, X-Forwarded-* set
//	ParseResponse(buf, limit, &resp)      the upstream's answer
//	VerifyUpgrade(&resp, req.Key)         a 101 with the right Sec-WebSocket-Accept, or no tunnel
//	AppendRelayedResponse(dst, &resp)     a refusal relayed as plain HTTP, Connection: close
//	AppendErrorResponse(dst, StatusOf(err), err)
//
// Everything on that path is the hot path of a handshake: it must not
// allocate, and the benchmarks in this package run with -benchmem to keep it
// so. Parsed heads alias the caller's buffer; a Request or Response is only
// valid while that buffer is unchanged.
//
// Errors are sentinels that callers branch on with errors.Is; StatusOf maps
// each one to the status the client gets. Every syntax error also matches
// ErrMalformed, every upstream parse error matches ErrUpstreamMalformed. Error
// messages are constant strings: they never echo peer bytes, so they are safe
// to put in a response body.
package handshake
