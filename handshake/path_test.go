package handshake

import (
	"bytes"
	"errors"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" means ErrBadPath
	}{
		// Clean paths come back as they are.
		{"/", "/"},
		{"/index.html", "/index.html"},
		{"/dir/", "/dir/"},
		{"/a/b/c.js", "/a/b/c.js"},
		{"/.well-known/x", "/.well-known/x"}, // a dot file is a name
		{"/a..b/...", "/a..b/..."},           // so are dots that are not a whole segment
		{"/caf\xc3\xa9", "/caf\xc3\xa9"},     // UTF-8 kept
		// Decoding once.
		{"/a%20b", "/a b"},
		{"/%7Euser/%41", "/~user/A"},
		{"/%252e%252e/etc/passwd", "/%2e%2e/etc/passwd"}, // double encoding stays a name
		{"/a%3Fb", "/a?b"},
		{"/caf%C3%A9", "/caf\xc3\xa9"},
		// Collapsing and resolving.
		{"//a///b//", "/a/b/"},
		{"/./a/./b/.", "/a/b/"},
		{"/a/b/../c", "/a/c"},
		{"/a/b/..", "/a/"},
		{"/a/..", "/"},
		{"/a/b/../../c/", "/c/"},
		{"/a%2Fb", "/a/b"},        // a decoded slash is a separator
		{"/a%2f%2e%2e%2fb", "/b"}, // so it resolves like a literal one
		{"/a/%2e/b", "/a/b"},      // encoded dot segment
		{"/a/%2E%2e/b", "/b"},     // encoded dot-dot, mixed case
		{"/.", "/"},
		// Hostile: climbing above the root.
		{"/..", ""},
		{"/../etc/passwd", ""},
		{"/..%2fetc/passwd", ""},
		{"/%2e%2e/%2e%2e/etc/passwd", ""},
		{"/a%2F..%2F..%2Fetc", ""},
		{"/./../x", ""},
		{"/a/../../x", ""},
		{"//../x", ""},
		// Hostile: bytes that must never reach a file name.
		{"/index.html%00.js", ""},
		{"/a\x00b", ""},
		{"/..%5cetc", ""},
		{"/a\\..\\..\\etc", ""},
		{"/a%0d%0aSet-Cookie:x", ""},
		{"/a\tb", ""},
		{"/a%7fb", ""},
		{"/a%1fb", ""},
		// Malformed escapes and targets.
		{"/a%4", ""},
		{"/a%", ""},
		{"/%zz", ""},
		{"/%g0", ""},
		{"", ""},
		{"a/b", ""},
		{"*", ""},
	}
	for _, tc := range tests {
		got, err := NormalizePath(nil, []byte(tc.raw))
		if tc.want == "" {
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("NormalizePath(%q) = %q, %v; want ErrBadPath", tc.raw, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

// TestNormalizePathAppends: a dirty path is appended to dst, which is left
// as it was on error.
func TestNormalizePathAppends(t *testing.T) {
	got, err := NormalizePath([]byte("prefix:"), []byte("/a//b"))
	if err != nil || string(got) != "prefix:/a/b" {
		t.Fatalf("got %q, %v", got, err)
	}
	got, err = NormalizePath([]byte("prefix:"), []byte("/a/../../b"))
	if err == nil || string(got) != "prefix:" {
		t.Fatalf("on error got %q, %v", got, err)
	}
}

// TestNormalizePathCleanIsRaw: a clean path is returned as raw itself, with
// no allocation; a dirty one into a big enough dst allocates nothing either.
func TestNormalizePathCleanIsRaw(t *testing.T) {
	raw := []byte("/static/js/app.4f2a.js")
	got, _ := NormalizePath(nil, raw)
	if &got[0] != &raw[0] || len(got) != len(raw) {
		t.Fatal("clean path was copied")
	}
	if n := testing.AllocsPerRun(100, func() { NormalizePath(nil, raw) }); n != 0 {
		t.Errorf("clean path: %v allocs", n)
	}
	dirty := []byte("/static//js/./%61pp.js")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { NormalizePath(buf[:0], dirty) }); n != 0 {
		t.Errorf("dirty path into a sized dst: %v allocs", n)
	}
}

func TestStatusOfBadPath(t *testing.T) {
	if st := StatusOf(ErrBadPath); st != 403 {
		t.Fatalf("StatusOf(ErrBadPath) = %d", st)
	}
	_, err := NormalizePath(nil, []byte("/../x"))
	if st := StatusOf(err); st != 403 {
		t.Fatalf("StatusOf(%v) = %d", err, st)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"clean", "/static/js/app.4f2a9c.js"},
		{"dirty", "/static//js/./%61pp.4f2a9c.js"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := []byte(bc.path)
			dst := make([]byte, 0, 64)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				out, _ := NormalizePath(dst[:0], raw)
				if len(out) == 0 || !bytes.HasPrefix(out, []byte("/")) {
					b.Fatal("bad output")
				}
			}
		})
	}
}
