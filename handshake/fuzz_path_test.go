package handshake

import (
	"bytes"
	"testing"
)

// FuzzNormalizePath: NormalizePath never panics; what it accepts is an
// absolute path with no "//", no "." or ".." segment and no NUL, backslash
// or control byte; and it is idempotent: the output, with '%' escaped again
// so that it is read as the same names, normalizes to itself.
// Seeds: testdata/fuzz/FuzzNormalizePath.
func FuzzNormalizePath(f *testing.F) {
	f.Add([]byte("/index.html"))
	f.Add([]byte("/a/%2e%2e/b"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := NormalizePath(nil, raw)
		if err != nil {
			if err != ErrBadPath {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		checkCleanPath(t, raw, out)
		again, err := NormalizePath(nil, escapePercent(out))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, out, again, err)
		}
	})
}

func checkCleanPath(t *testing.T, raw, out []byte) {
	t.Helper()
	if len(out) == 0 || out[0] != '/' {
		t.Fatalf("%q -> %q: not absolute", raw, out)
	}
	if bytes.Contains(out, []byte("//")) {
		t.Fatalf("%q -> %q: holds //", raw, out)
	}
	for _, c := range out {
		if c < 0x20 || c == 0x7f || c == '\\' {
			t.Fatalf("%q -> %q: holds byte %#x", raw, out, c)
		}
	}
	for _, seg := range bytes.Split(out[1:], []byte("/")) {
		if string(seg) == "." || string(seg) == ".." {
			t.Fatalf("%q -> %q: holds a dot segment", raw, out)
		}
	}
}

func escapePercent(p []byte) []byte {
	return bytes.ReplaceAll(p, []byte("%"), []byte("%25"))
}
