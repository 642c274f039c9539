package splice

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// frame builds one frame with the given payload length, masked or not.
func frame(op byte, n int, masked bool) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, 0, 0)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = append(b, m|127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, bytes.Repeat([]byte{'p'}, n)...)
}

func TestFrameCursor(t *testing.T) {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	tests := []struct {
		name     string
		skip     uint64
		stream   []byte
		boundary bool
		broken   bool
	}{
		{"empty", 0, nil, true, false},
		{"one small", 0, frame(1, 5, false), true, false},
		{"masked", 0, frame(2, 100, true), true, false},
		{"16-bit length", 0, frame(2, 300, true), true, false},
		{"64-bit length", 0, frame(2, 70000, false), true, false},
		{"several", 0, cat(frame(1, 3, true), frame(9, 0, true), frame(2, 126, true)), true, false},
		{"header cut", 0, frame(1, 300, true)[:3], false, false},
		{"payload cut", 0, frame(1, 300, true)[:50], false, false},
		{"one byte", 0, []byte{0x81}, false, false},
		{"after a head", 11, cat([]byte("HTTP/1.1 1\r"), frame(1, 5, false)), true, false},
		{"inside the head", 11, []byte("HTTP/1."), false, false},
		{"length with the top bit", 0, []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, false, true},
		{"close frame", 0, closeToUpstream, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then byte by byte: the same answer.
			for _, step := range []int{len(tt.stream) + 1, 1, 7} {
				c := frameCursor{need: tt.skip}
				for b := tt.stream; len(b) > 0; {
					k := min(step, len(b))
					c.advance(b[:k])
					b = b[k:]
				}
				if c.atBoundary() != tt.boundary || c.broken != tt.broken {
					t.Fatalf("step %d: boundary %v broken %v, want %v %v", step, c.atBoundary(), c.broken, tt.boundary, tt.broken)
				}
			}
		})
	}
}

// FuzzFrameCursor: however a stream is cut into writes, the cursor ends in
// the same state, and a stream of well-formed frames always ends at a
// boundary.
func FuzzFrameCursor(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, uint8(3))
	f.Add(frame(2, 300, true), uint8(1))
	f.Add(append(frame(1, 70000, false)[:20], 0x88), uint8(5))
	f.Add([]byte{0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		whole := frameCursor{}
		whole.advance(stream)
		cut := frameCursor{}
		s := int(step%17) + 1
		for b := stream; len(b) > 0; {
			k := min(s, len(b))
			cut.advance(b[:k])
			b = b[k:]
		}
		same := whole.broken == cut.broken
		if !whole.broken {
			same = same && whole.need == cut.need && whole.hlen == cut.hlen &&
				bytes.Equal(whole.hdr[:whole.hlen], cut.hdr[:cut.hlen])
		}
		if !same {
			t.Fatalf("whole %+v, cut every %d: %+v", whole, s, cut)
		}
		// The stream's bytes as the payloads of well-formed frames: a boundary.
		var framed []byte
		for b := stream; len(b) > 0; {
			k := min(len(b), 300)
			h := frame(2, k, k%2 == 0)
			framed = append(framed, h[:len(h)-k]...)
			framed = append(framed, b[:k]...)
			b = b[k:]
		}
		c := frameCursor{}
		c.advance(framed)
		if !c.atBoundary() {
			t.Fatalf("well-formed frames not at a boundary: %+v", c)
		}
	})
}

// BenchmarkFrameCursor: what following frame boundaries costs per relayed
// write, for 16 KiB writes of big frames, of 128-byte frames, and of the
// worst case, empty frames (two bytes each).
func BenchmarkFrameCursor(b *testing.B) {
	for _, bc := range []struct {
		name  string
		chunk []byte
	}{
		{"16KiB-of-one-frame", frame(2, 1<<20, true)[:16<<10]},
		{"16KiB-of-128B-frames", bytes.Repeat(frame(2, 122, true), 16<<10/128)},
		{"16KiB-of-empty-frames", make([]byte, 16<<10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.chunk)))
			b.ReportAllocs()
			var c frameCursor
			for i := 0; i < b.N; i++ {
				c.advance(bc.chunk)
				if c.broken {
					b.Fatal("broken")
				}
			}
		})
	}
}
