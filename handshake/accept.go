package handshake

import (
	"crypto/sha1"
	"encoding/base64"
)

// acceptGUID is the magic string of RFC 6455 §1.3 appended to the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptLen is the length of a Sec-WebSocket-Accept value: base64 of a SHA-1 sum.
const acceptLen = 28

// ComputeAccept appends the Sec-WebSocket-Accept value for key to dst:
// base64(sha1(key + GUID)), RFC 6455 §4.2.2 item 5.4. The key is hashed as
// given, not trimmed or decoded. It does not allocate for any key a client
// could get past CheckUpgrade (24 bytes) and up to 92 bytes; longer keys
// fall back to a heap hash, which only a caller that skipped CheckUpgrade
// could trigger.
func ComputeAccept(dst, key []byte) []byte {
	var sum [sha1.Size]byte
	var in [128]byte
	if len(key) <= len(in)-len(acceptGUID) {
		n := copy(in[:], key)
		n += copy(in[n:], acceptGUID)
		sum = sha1.Sum(in[:n])
	} else {
		h := sha1.New()
		h.Write(key)
		h.Write([]byte(acceptGUID))
		h.Sum(sum[:0])
	}
	var out [acceptLen]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return append(dst, out[:]...)
}

// keyEncoding rejects non-canonical base64 (stray bits in the last
// character): the key must decode to exactly 16 bytes, and two spellings of
// one nonce are not a "randomly selected 16-byte value" (RFC 6455 §4.1 item 7).
var keyEncoding = base64.StdEncoding.Strict()

// validKey reports whether key is the base64 of exactly 16 bytes: 24
// characters ending in "==". Decoding into a stack array keeps it
// allocation-free.
func validKey(key []byte) bool {
	if len(key) != 24 {
		return false
	}
	var dec [18]byte
	n, err := keyEncoding.Decode(dec[:], key)
	return err == nil && n == 16
}
