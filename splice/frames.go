package splice

import "encoding/binary"

// frameCursor follows the WebSocket frame boundaries (RFC 6455 §5.2) of one
// direction of a tunnel, in the bytes as they are written, without copying
// or unmasking them: payloads are skipped by arithmetic and only headers,
// at most 14 bytes each, are looked at. It lets a draining relay tell
// whether a close frame can be put on the wire between two frames.
//
// splice still knows no HTTP: the stream is taken to be frames from where
// the engine says (Verdict.FramesAfter for the answer's head), and a
// stream that does not parse as frames is marked broken and never gets a
// frame injected.
type frameCursor struct {
	need   uint64   // bytes still to pass before the next header (payload, or bytes before the frames start)
	hdr    [14]byte // the header being collected
	hlen   uint8    // its bytes so far
	broken bool
}

// advance moves the cursor past b.
func (c *frameCursor) advance(b []byte) {
	for len(b) > 0 && !c.broken {
		if c.need > 0 {
			if uint64(len(b)) <= c.need {
				c.need -= uint64(len(b))
				return
			}
			b = b[c.need:]
			c.need = 0
		}
		if c.hlen == 0 && len(b) >= 2 {
			// The usual case: a whole header in b, read in place.
			if hl := int(headerLen(b[1])); len(b) >= hl {
				n, ok := payloadLen(b[:hl])
				if !ok {
					c.broken = true
					return
				}
				c.need, b = n, b[hl:]
				continue
			}
		}
		c.hdr[c.hlen] = b[0]
		c.hlen++
		b = b[1:]
		if c.hlen < 2 || c.hlen < headerLen(c.hdr[1]) {
			continue
		}
		n, ok := payloadLen(c.hdr[:c.hlen])
		if !ok {
			c.broken = true
			return
		}
		c.need, c.hlen = n, 0
	}
}

// atBoundary reports whether everything passed so far ends exactly at the
// end of a frame.
func (c *frameCursor) atBoundary() bool { return !c.broken && c.need == 0 && c.hlen == 0 }

// headerLen is a frame header's length, from its second byte.
func headerLen(b1 byte) uint8 {
	n := uint8(2)
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

// payloadLen reads a complete header's payload length. A 64-bit length
// with its most significant bit set is not WebSocket (§5.2).
func payloadLen(h []byte) (uint64, bool) {
	switch h[1] & 0x7f {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4])), true
	case 127:
		n := binary.BigEndian.Uint64(h[2:10])
		return n, n>>63 == 0
	}
	return uint64(h[1] & 0x7f), true
}

// Close frames with status 1001 (Going Away), as a server sends it to the
// client (unmasked) and as a client sends it to the server (masked, §5.3:
// every client frame is). The mask need not be unpredictable here: it
// protects intermediaries from a client's chosen bytes, and these bytes
// are the proxy's own.
var (
	closeToClient   = []byte{0x88, 0x02, 0x03, 0xe9}
	closeToUpstream = []byte{0x88, 0x82, 0x5a, 0x3c, 0x96, 0xa5, 0x03 ^ 0x5a, 0xe9 ^ 0x3c}
)

// FrameCursor is the frame-boundary follower for relays outside splice
// (the engine's goroutine path for TLS tunnels). The zero value expects
// frames from the first byte.
type FrameCursor struct{ c frameCursor }

// NewFrameCursor returns a cursor that passes skip bytes (an HTTP head)
// before it expects frames.
func NewFrameCursor(skip int) FrameCursor {
	return FrameCursor{frameCursor{need: uint64(max(skip, 0))}}
}

// Advance moves the cursor past bytes written.
func (f *FrameCursor) Advance(b []byte) { f.c.advance(b) }

// AtBoundary reports whether the bytes so far end exactly between frames.
func (f *FrameCursor) AtBoundary() bool { return f.c.atBoundary() }

// GoingAway is the close frame with status 1001 for one side: unmasked
// toward the client, masked toward the upstream. The slice is shared:
// never write into it.
func GoingAway(toClient bool) []byte {
	if toClient {
		return closeToClient
	}
	return closeToUpstream
}
