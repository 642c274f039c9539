package engine

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/handshake"
)

// staticTree is the root every static test serves, built once per test.
type staticTree struct {
	root string
	big  []byte // big.bin: 200 KiB of random bytes, streamed
	app  []byte // app.js: compressible, over minCompress
}

// Files at the root, besides big.bin and app.js.
var staticFiles = map[string]string{
	"index.html":     "<!doctype html><title>root index</title>\n",
	"style.css":      "body{margin:0}\n", // under minCompress
	"sub/index.html": "<!doctype html><title>sub index</title>\n",
	"data.json":      `{"a":1}`,
	"notes.txt":      "notes\n",
	"font.woff2":     "wOF2",
	"unknown.xyz":    "?",
	"page.HTM":       "<p>upper-case extension</p>",
	"%2e%2e":         "literal name\n", // a file literally named %2e%2e
	"empty.txt":      "",
}

func newStaticTree(t *testing.T) *staticTree {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	tr := &staticTree{root: root, big: make([]byte, 200<<10)}
	rand.Read(tr.big)
	var js strings.Builder
	for i := 0; js.Len() < 4000; i++ {
		fmt.Fprintf(&js, "export function f%d(x) { return x * %d + 'sluice'; }\n", i, i)
	}
	tr.app = []byte(js.String())
	// A PNG-typed file big enough to be compressed if the type allowed it.
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("pixels "), 100)...)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o755))
	for name, body := range staticFiles {
		must(os.WriteFile(filepath.Join(root, name), []byte(body), 0o644))
	}
	must(os.WriteFile(filepath.Join(root, "app.js"), tr.app, 0o644))
	must(os.WriteFile(filepath.Join(root, "big.bin"), tr.big, 0o644))
	must(os.WriteFile(filepath.Join(root, "logo.png"), png, 0o644))
	must(os.WriteFile(filepath.Join(dir, "outside.txt"), []byte("root:x:0:0:outside\n"), 0o644))
	must(os.Symlink("app.js", filepath.Join(root, "link-in")))                   // inside, relative: followed
	must(os.Symlink("/etc/passwd", filepath.Join(root, "link-out")))             // absolute, out
	must(os.Symlink("/etc", filepath.Join(root, "dirlink-out")))                 // a directory out
	must(os.Symlink("../outside.txt", filepath.Join(root, "link-rel-out")))      // relative, out
	must(os.Symlink("/proc/self/root/etc/passwd", filepath.Join(root, "magic"))) // through a magic link
	must(os.Symlink("sub", filepath.Join(root, "dirlink-in")))                   // a directory inside
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	return tr
}

// startStatic serves s on a real socket the way the engine will: the raw
// path (PathOriginal, so fasthttp's own normalising hides nothing) goes
// through handshake.NormalizePath first. It returns the address and a stop
// function that shuts the server down and closes s.
func startStatic(t *testing.T, s *static) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			p, err := handshake.NormalizePath(nil, ctx.Request.URI().PathOriginal())
			if err != nil {
				httpError(ctx, handshake.StatusOf(err), err)
				return
			}
			s.serve(ctx, p)
		},
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Shutdown()
			<-done
			if err := s.close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func mustStatic(t *testing.T, c staticConfig) *static {
	t.Helper()
	s, err := newStatic(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// staticExchange sends one raw request and reads the response. HEAD is
// read as HEAD, so no body is expected.
func staticExchange(t testing.TB, addr, method, target string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: static.test\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if method == "POST" {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, target, err)
	}
	return resp, body
}

func fileBody(t *testing.T, tr *staticTree, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.root, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func etagOf(t *testing.T, tr *staticTree, name string) (etag, lastModified string) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(tr.root, name))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`"%x-%x"`, fi.ModTime().Unix(), fi.Size()), fi.ModTime().UTC().Format(http.TimeFormat)
}

// TestStatic runs every static-file table against one tree and, at the
// end, checks that the process holds no more descriptors than before.
func TestStatic(t *testing.T) {
	// Warm the runtime's netpoller so its descriptors are in the baseline.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		c, _ := net.Dial("tcp", ln.Addr().String())
		if c != nil {
			c.Close()
		}
		ln.Close()
	}
	baseline := openFDs(t)
	tr := newStaticTree(t)

	func() {
		def := mustStatic(t, staticConfig{Root: tr.root, Compress: true})
		addr, stop := startStatic(t, def)
		defer stop()

		t.Run("Hostile", func(t *testing.T) { testStaticHostile(t, addr) })
		t.Run("HostileOSRoot", func(t *testing.T) {
			// The pre-openat2 fallback must refuse the same paths.
			s := mustStatic(t, staticConfig{Root: tr.root})
			r, err := os.OpenRoot(tr.root)
			if err != nil {
				t.Fatal(err)
			}
			s.fallback = r
			a, stop := startStatic(t, s)
			defer stop()
			testStaticHostile(t, a)
			if resp, body := staticExchange(t, a, "GET", "/link-in"); resp.StatusCode != 200 || !bytes.Equal(body, tr.app) {
				t.Errorf("os.Root fallback: /link-in: %d", resp.StatusCode)
			}
		})
		t.Run("Rules", func(t *testing.T) { testStaticRules(t, tr, addr) })
		t.Run("TryFiles", func(t *testing.T) { testStaticTryFiles(t, tr) })
		t.Run("ContentType", func(t *testing.T) { testStaticContentType(t, addr) })
		t.Run("Conditional", func(t *testing.T) { testStaticConditional(t, tr, addr) })
		t.Run("Range", func(t *testing.T) { testStaticRange(t, tr, addr) })
		t.Run("Compression", func(t *testing.T) { testStaticCompression(t, tr, addr) })
		t.Run("Stream", func(t *testing.T) { testStaticStream(t, tr, addr) })
		t.Run("Concurrent", func(t *testing.T) { testStaticConcurrent(t, tr, addr) })
	}()

	// Every fd a test opened (files, sockets, the roots) is closed again.
	// fasthttp closes streamed files after the write, so poll a little.
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := openFDs(t); got > baseline {
		t.Fatalf("open fds %d, baseline %d: a leak; open now: %s", got, baseline, fdKinds(t))
	}
}

// testStaticHostile: paths that try to leave the root, or to smuggle bytes
// into a file name, get 403 or 404 and never anything from outside.
func testStaticHostile(t *testing.T, addr string) {
	tests := []struct {
		target string
		status int
	}{
		{"/../etc/passwd", 403},
		{"/..%2fetc/passwd", 403},
		{"/%2e%2e/%2e%2e/etc/passwd", 403},
		{"/.%2e/etc/passwd", 403},
		{"/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 403},
		{"/a%2F..%2F..%2Fetc/passwd", 403},
		{"/sub/%2e%2e/%2e%2e/etc/passwd", 403},
		{"/empty/../../etc/passwd", 403},
		{"/index.html/../../etc/passwd", 403},
		{"/./../x", 403},
		{"/%252e%252e/etc/passwd", 404}, // decodes once to a name: the file "%2e%2e" is no directory
		{"/..%5cetc", 403},
		{"/a\\..\\..\\etc", 403},
		{"/index.html%00.js", 403},
		{"/%0d%0aSet-Cookie:%20x", 403},
		{"/link-out", 403},
		{"/link-rel-out", 403},
		{"/magic", 403},
		{"/dirlink-out", 403},
		{"/dirlink-out/", 403},
		{"/dirlink-out/passwd", 403},
		{"/fifo", 404},
		{"/fifo/", 404},
		{"/index.html/", 404},
		{"/proc/self/root/etc/passwd", 404},
		{"/%zz", 403},
	}
	for _, tc := range tests {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := staticExchange(t, addr, method, tc.target)
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: status %d, want %d (%q)", method, tc.target, resp.StatusCode, tc.status, body)
			}
			if bytes.Contains(body, []byte("root:")) {
				t.Errorf("%s %s: body from outside the root: %q", method, tc.target, body)
			}
		}
	}
}

func testStaticRules(t *testing.T, tr *staticTree, addr string) {
	tests := []struct {
		method, target string
		status         int
		body           string // "" means not checked
		location       string
	}{
		{"GET", "/", 200, staticFiles["index.html"], ""},
		{"GET", "/index.html", 200, staticFiles["index.html"], ""},
		{"GET", "/index.html?v=123&x", 200, staticFiles["index.html"], ""}, // query ignored
		{"GET", "//index.html", 200, staticFiles["index.html"], ""},
		{"GET", "/sub/", 200, staticFiles["sub/index.html"], ""},
		{"GET", "/sub/./", 200, staticFiles["sub/index.html"], ""},
		{"GET", "/sub", 301, "", "/sub/"},
		{"GET", "/sub?x=1&y=%20", 301, "", "/sub/?x=1&y=%20"}, // query kept
		{"GET", "/dirlink-in", 301, "", "/dirlink-in/"},
		{"GET", "/dirlink-in/", 200, staticFiles["sub/index.html"], ""},
		{"GET", "/empty/", 403, "403 Forbidden: directory listing is off\n", ""},
		{"GET", "/empty", 301, "", "/empty/"},
		{"GET", "/nope", 404, "404 Not Found: no such file\n", ""},
		{"GET", "/nope/", 404, "", ""},
		{"GET", "/link-in", 200, string(tr.app), ""},
		{"GET", "/%252e%252e", 200, staticFiles["%2e%2e"], ""},
		{"GET", "/%69ndex.html", 200, staticFiles["index.html"], ""},
		{"GET", "/empty.txt", 200, "", ""},
		{"POST", "/index.html", 405, "", ""},
		{"PUT", "/index.html", 405, "", ""},
		{"DELETE", "/nope", 405, "", ""},
	}
	for _, tc := range tests {
		resp, body := staticExchange(t, addr, tc.method, tc.target)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d (%q)", tc.method, tc.target, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.body != "" && string(body) != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.target, body, tc.body)
		}
		if loc := resp.Header.Get("Location"); loc != tc.location {
			t.Errorf("%s %s: Location %q, want %q", tc.method, tc.target, loc, tc.location)
		}
		if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.target, resp.Header.Get("Allow"))
		}
	}
	// HEAD: GET's headers, no body.
	get, getBody := staticExchange(t, addr, "GET", "/big.bin")
	head, headBody := staticExchange(t, addr, "HEAD", "/big.bin")
	if head.StatusCode != 200 || len(headBody) != 0 || head.ContentLength != int64(len(tr.big)) || len(getBody) != len(tr.big) {
		t.Errorf("HEAD /big.bin: %d, Content-Length %d, body %d", head.StatusCode, head.ContentLength, len(headBody))
	}
	for _, h := range []string{"Content-Type", "ETag", "Last-Modified", "Accept-Ranges"} {
		if get.Header.Get(h) == "" || get.Header.Get(h) != head.Header.Get(h) {
			t.Errorf("HEAD %s %q, GET %q", h, head.Header.Get(h), get.Header.Get(h))
		}
	}
	head, _ = staticExchange(t, addr, "HEAD", "/index.html")
	if head.ContentLength != int64(len(staticFiles["index.html"])) {
		t.Errorf("HEAD /index.html: Content-Length %d", head.ContentLength)
	}
	// A redirect escapes what it decoded, so it cannot split a header or
	// point at another host.
	if err := os.MkdirAll(filepath.Join(tr.root, "a b?c"), 0o755); err != nil {
		t.Fatal(err)
	}
	resp, _ := staticExchange(t, addr, "GET", "/a%20b%3Fc")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/a%20b%3Fc/" {
		t.Errorf("escaped redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func testStaticTryFiles(t *testing.T, tr *staticTree) {
	spa, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root, TryFiles: []string{"$uri", "$uri/", "/index.html"}}))
	code, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root, TryFiles: []string{"$uri", "=404"}}))
	teapot, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root, TryFiles: []string{"$uri", "=418"}}))
	missing, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root, TryFiles: []string{"$uri", "/missing.html"}}))
	custom, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root, Index: []string{"missing.html", "notes.txt"}}))
	tests := []struct {
		addr, target string
		status       int
		body         string
	}{
		{spa, "/some/client/route", 200, staticFiles["index.html"]},
		{spa, "/some/client/route?q=1", 200, staticFiles["index.html"]},
		{spa, "/app.js", 200, string(tr.app)},
		{spa, "/sub/", 200, staticFiles["sub/index.html"]},
		{spa, "/empty/", 403, ""},   // a directory without index is still refused
		{spa, "/link-out", 403, ""}, // a refusal is not papered over by the fallback
		{spa, "/fifo", 200, staticFiles["index.html"]},
		{code, "/index.html", 200, staticFiles["index.html"]},
		{code, "/sub/", 404, "404 Not Found\n"}, // a directory is not a file, and no "$uri/"
		{code, "/nope", 404, "404 Not Found\n"},
		{teapot, "/nope", 418, "418 I'm a teapot\n"},
		{missing, "/nope", 404, ""},
		{custom, "/", 200, staticFiles["notes.txt"]}, // index names tried in order
	}
	for _, tc := range tests {
		resp, body := staticExchange(t, tc.addr, "GET", tc.target)
		if resp.StatusCode != tc.status || (tc.body != "" && string(body) != tc.body) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.target, resp.StatusCode, body, tc.status, tc.body)
		}
	}
	for _, bad := range [][]string{{"=404", "$uri"}, {"$uri", "=99"}, {"$uri.html"}, {"relative"}, {"/a/../b"}, {"/dir/"}} {
		if s, err := newStatic(staticConfig{Root: tr.root, TryFiles: bad}); err == nil {
			s.close()
			t.Errorf("try_files %q accepted", bad)
		}
	}
	for _, bad := range []staticConfig{
		{Root: "relative/root"},
		{Root: filepath.Join(tr.root, "index.html")},
		{Root: filepath.Join(tr.root, "nope")},
		{Root: tr.root, Index: []string{"../x"}},
	} {
		if s, err := newStatic(bad); err == nil {
			s.close()
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func testStaticContentType(t *testing.T, addr string) {
	tests := []struct{ target, ct string }{
		{"/index.html", "text/html; charset=utf-8"},
		{"/page.HTM", "text/html; charset=utf-8"},
		{"/app.js", "text/javascript; charset=utf-8"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/data.json", "application/json"},
		{"/notes.txt", "text/plain; charset=utf-8"},
		{"/logo.png", "image/png"},
		{"/font.woff2", "font/woff2"},
		{"/unknown.xyz", "application/octet-stream"},
		{"/big.bin", "application/octet-stream"},
		{"/%252e%252e", "application/octet-stream"},
		{"/link-in", "application/octet-stream"}, // the type follows the requested name, as in nginx
	}
	for _, tc := range tests {
		resp, _ := staticExchange(t, addr, "GET", tc.target)
		if got := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || got != tc.ct {
			t.Errorf("%s: %d, Content-Type %q, want %q", tc.target, resp.StatusCode, got, tc.ct)
		}
	}
}

func testStaticConditional(t *testing.T, tr *staticTree, addr string) {
	etag, lastMod := etagOf(t, tr, "style.css")
	resp, _ := staticExchange(t, addr, "GET", "/style.css")
	if resp.Header.Get("ETag") != etag || resp.Header.Get("Last-Modified") != lastMod {
		t.Fatalf("ETag %q Last-Modified %q, want %q %q", resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), etag, lastMod)
	}
	past := time.Unix(0, 0).UTC().Format(http.TimeFormat)
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		headers []string
		status  int
	}{
		{[]string{"If-None-Match: " + etag}, 304},
		{[]string{"If-None-Match: W/" + etag}, 304}, // weak comparison
		{[]string{`If-None-Match: "x", ` + etag}, 304},
		{[]string{"If-None-Match: *"}, 304},
		{[]string{`If-None-Match: "x"`}, 200},
		{[]string{"If-Modified-Since: " + lastMod}, 304},
		{[]string{"If-Modified-Since: " + future}, 304},
		{[]string{"If-Modified-Since: " + past}, 200},
		{[]string{"If-Modified-Since: not a date"}, 200},
		{[]string{`If-None-Match: "x"`, "If-Modified-Since: " + lastMod}, 200}, // If-None-Match wins
	}
	for _, tc := range tests {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := staticExchange(t, addr, method, "/style.css", tc.headers...)
			if resp.StatusCode != tc.status {
				t.Errorf("%s %q: %d, want %d", method, tc.headers, resp.StatusCode, tc.status)
				continue
			}
			if tc.status == 304 && (len(body) != 0 || resp.Header.Get("ETag") != etag || resp.Header.Get("Last-Modified") != lastMod) {
				t.Errorf("%s %q: 304 with body %q, ETag %q, Last-Modified %q", method, tc.headers, body, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
			}
		}
	}
}

func testStaticRange(t *testing.T, tr *staticTree, addr string) {
	etag, lastMod := etagOf(t, tr, "big.bin")
	size := len(tr.big)
	tests := []struct {
		target       string
		headers      []string
		status       int
		contentRange string
		start, end   int // of the body, when 206 or 200
	}{
		{"/big.bin", []string{"Range: bytes=0-99"}, 206, "bytes 0-99/204800", 0, 99},
		{"/big.bin", []string{"Range: bytes=-100"}, 206, "bytes 204700-204799/204800", size - 100, size - 1},
		{"/big.bin", []string{"Range: bytes=100000-"}, 206, "bytes 100000-204799/204800", 100000, size - 1}, // streamed from an offset
		{"/big.bin", []string{"Range: bytes=1000-1000000"}, 206, "bytes 1000-204799/204800", 1000, size - 1},
		{"/big.bin", []string{"Range: bytes=204800-"}, 416, "bytes */204800", 0, -1},
		{"/big.bin", []string{"Range: bytes=-0"}, 416, "bytes */204800", 0, -1},
		{"/big.bin", []string{"Range: bytes=0-1,5-6"}, 200, "", 0, size - 1}, // several ranges: ignored
		{"/big.bin", []string{"Range: items=0-1"}, 200, "", 0, size - 1},
		{"/big.bin", []string{"Range: bytes=5-1"}, 200, "", 0, size - 1},
		{"/big.bin", []string{"Range: bytes=0-9", "If-Range: " + etag}, 206, "bytes 0-9/204800", 0, 9},
		{"/big.bin", []string{"Range: bytes=0-9", `If-Range: "other"`}, 200, "", 0, size - 1},
		{"/big.bin", []string{"Range: bytes=0-9", "If-Range: W/" + etag}, 200, "", 0, size - 1}, // weak never matches
		{"/big.bin", []string{"Range: bytes=0-9", "If-Range: " + lastMod}, 206, "bytes 0-9/204800", 0, 9},
		{"/big.bin", []string{"Range: bytes=0-9", "If-Range: " + time.Unix(0, 0).UTC().Format(http.TimeFormat)}, 200, "", 0, size - 1},
	}
	for _, tc := range tests {
		resp, body := staticExchange(t, addr, "GET", tc.target, tc.headers...)
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
			t.Errorf("%q: %d %q, want %d %q", tc.headers, resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
			continue
		}
		if tc.status != 416 && !bytes.Equal(body, tr.big[tc.start:tc.end+1]) {
			t.Errorf("%q: body of %d bytes is not bytes %d-%d", tc.headers, len(body), tc.start, tc.end)
		}
	}
	// A small file's range is read, not streamed.
	resp, body := staticExchange(t, addr, "GET", "/style.css", "Range: bytes=2-5")
	if resp.StatusCode != 206 || string(body) != staticFiles["style.css"][2:6] {
		t.Errorf("small range: %d %q", resp.StatusCode, body)
	}
	// HEAD ignores Range (only GET is ranged).
	resp, _ = staticExchange(t, addr, "HEAD", "/big.bin", "Range: bytes=0-9")
	if resp.StatusCode != 200 || resp.ContentLength != int64(size) {
		t.Errorf("HEAD with Range: %d, %d", resp.StatusCode, resp.ContentLength)
	}
	// An empty file has no satisfiable range.
	resp, _ = staticExchange(t, addr, "GET", "/empty.txt", "Range: bytes=0-")
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */0" {
		t.Errorf("empty file range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
}

func testStaticCompression(t *testing.T, tr *staticTree, addr string) {
	etag, _ := etagOf(t, tr, "app.js")
	tests := []struct {
		target, acceptEncoding string
		encoding               string // "" for none
		vary                   bool
	}{
		{"/app.js", "gzip", "gzip", true},
		{"/app.js", "gzip, deflate, br", "br", true},
		{"/app.js", "br;q=0.5, gzip;q=1.0", "br", true},
		{"/app.js", "br;q=0, gzip", "gzip", true},
		{"/app.js", "BR ; Q=0 , GZip", "gzip", true},
		{"/app.js", "gzip;q=0", "", true},
		{"/app.js", "gzip;q=0.000, br;q=0.0", "", true},
		{"/app.js", "*", "br", true},
		{"/app.js", "*, br;q=0", "gzip", true},
		{"/app.js", "*;q=0", "", true},
		{"/app.js", "identity", "", true},
		{"/app.js", "", "", true},
		{"/style.css", "gzip, br", "", true}, // under 256 bytes
		{"/logo.png", "gzip, br", "", false}, // not a text type
		{"/big.bin", "gzip, br", "", false},
	}
	for _, tc := range tests {
		var hdrs []string
		if tc.acceptEncoding != "" {
			hdrs = append(hdrs, "Accept-Encoding: "+tc.acceptEncoding)
		}
		resp, body := staticExchange(t, addr, "GET", tc.target, hdrs...)
		got := resp.Header.Get("Content-Encoding")
		if resp.StatusCode != 200 || got != tc.encoding {
			t.Errorf("%s %q: %d, Content-Encoding %q, want %q", tc.target, tc.acceptEncoding, resp.StatusCode, got, tc.encoding)
			continue
		}
		if vary := resp.Header.Get("Vary") == "Accept-Encoding"; vary != tc.vary {
			t.Errorf("%s %q: Vary %q", tc.target, tc.acceptEncoding, resp.Header.Get("Vary"))
		}
		var plain []byte
		var err error
		switch got {
		case "gzip":
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
				plain, err = io.ReadAll(zr)
			}
		case "br":
			plain, err = fasthttp.AppendUnbrotliBytes(nil, body)
		default:
			plain = body
		}
		if err != nil || !bytes.Equal(plain, fileBody(t, tr, tc.target[1:])) {
			t.Errorf("%s %q: decoded body differs from the file (%v)", tc.target, tc.acceptEncoding, err)
		}
		if got != "" {
			if resp.Header.Get("ETag") != "W/"+etag || resp.Header.Get("Accept-Ranges") != "" || len(body) >= len(tr.app) {
				t.Errorf("%s %q: ETag %q, Accept-Ranges %q, %d bytes", tc.target, tc.acceptEncoding, resp.Header.Get("ETag"), resp.Header.Get("Accept-Ranges"), len(body))
			}
		}
	}
	// A range is served from the file, never from a compressed body.
	resp, body := staticExchange(t, addr, "GET", "/app.js", "Accept-Encoding: gzip, br", "Range: bytes=0-9")
	if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, tr.app[:10]) {
		t.Errorf("range on compressible: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	// HEAD tells the compressed length.
	get, getBody := staticExchange(t, addr, "GET", "/app.js", "Accept-Encoding: gzip")
	head, headBody := staticExchange(t, addr, "HEAD", "/app.js", "Accept-Encoding: gzip")
	if head.Header.Get("Content-Encoding") != "gzip" || head.ContentLength != int64(len(getBody)) || len(headBody) != 0 || get.Header.Get("ETag") != head.Header.Get("ETag") {
		t.Errorf("HEAD gzip: %q, Content-Length %d, GET body %d", head.Header.Get("Content-Encoding"), head.ContentLength, len(getBody))
	}
	// The weak tag validates the compressed response.
	resp, _ = staticExchange(t, addr, "GET", "/app.js", "Accept-Encoding: br", "If-None-Match: W/"+etag)
	if resp.StatusCode != 304 || resp.Header.Get("ETag") != "W/"+etag || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("304 on compressed: %d %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	// Compression off: nothing compressed, no Vary.
	off, _ := startStatic(t, mustStatic(t, staticConfig{Root: tr.root}))
	resp, _ = staticExchange(t, off, "GET", "/app.js", "Accept-Encoding: gzip, br")
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Vary") != "" {
		t.Errorf("compress off: %q %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
}

func testStaticStream(t *testing.T, tr *staticTree, addr string) {
	resp, body := staticExchange(t, addr, "GET", "/big.bin")
	if resp.StatusCode != 200 || sha256.Sum256(body) != sha256.Sum256(tr.big) {
		t.Fatalf("big.bin: %d, %d bytes, digest differs", resp.StatusCode, len(body))
	}
	if resp.ContentLength != int64(len(tr.big)) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("big.bin: Content-Length %d, Accept-Ranges %q", resp.ContentLength, resp.Header.Get("Accept-Ranges"))
	}
	// Keep-alive: a streamed body is framed exactly, so the next response
	// on the same connection parses.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=70000-\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range [][]byte{tr.big, tr.big[70000:], []byte(staticFiles["style.css"])} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(body, want) {
			t.Fatalf("response %d: %d bytes, %v", i, len(body), err)
		}
	}
}

// testStaticConcurrent hits the cache and the streaming path from many
// clients at once, for the race detector and the fd count.
func testStaticConcurrent(t *testing.T, tr *staticTree, addr string) {
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := []string{"gzip", "br", "identity"}[i%3]
			for range 5 {
				resp, body := staticExchange(t, addr, "GET", "/app.js", "Accept-Encoding: "+enc)
				if resp.StatusCode != 200 || len(body) == 0 {
					t.Errorf("app.js %s: %d", enc, resp.StatusCode)
				}
				resp, body = staticExchange(t, addr, "GET", "/big.bin")
				if resp.StatusCode != 200 || len(body) != len(tr.big) {
					t.Errorf("big.bin: %d, %d bytes", resp.StatusCode, len(body))
				}
			}
		}()
	}
	wg.Wait()
}

// TestStaticOpenErrors: how each open error is answered. EACCES cannot be
// provoked on disk when the tests run as root, so the mapping is checked
// directly: not-found kinds let try_files go on (false), refusals are 403,
// the server's own trouble is 500.
func TestStaticOpenErrors(t *testing.T) {
	tests := []struct {
		err    error
		done   bool
		status int
	}{
		{unix.ENOENT, false, 0},
		{unix.ENOTDIR, false, 0},
		{unix.ENAMETOOLONG, false, 0},
		{unix.ENXIO, false, 0},
		{unix.EXDEV, true, 403},
		{unix.EACCES, true, 403},
		{unix.EPERM, true, 403},
		{unix.ELOOP, true, 403},
		{unix.EMFILE, true, 500},
		{unix.EIO, true, 500},
	}
	var s static
	for _, tc := range tests {
		var ctx fasthttp.RequestCtx
		done := s.openFailed(&ctx, tc.err)
		if done != tc.done || (done && ctx.Response.StatusCode() != tc.status) {
			t.Errorf("%v: answered %v with %d, want %v with %d", tc.err, done, ctx.Response.StatusCode(), tc.done, tc.status)
		}
	}
}

func TestStaticCompressCacheBounded(t *testing.T) {
	c := &compressCache{entries: make(map[compressKey][]byte)}
	chunk := make([]byte, 1<<20)
	for i := range 100 {
		c.put(compressKey{path: fmt.Sprint("/f", i)}, chunk)
	}
	if c.total > compressCacheSize || len(c.entries) != compressCacheSize/len(chunk) {
		t.Fatalf("total %d, %d entries", c.total, len(c.entries))
	}
	if c.get(compressKey{path: "/f0"}) != nil || c.get(compressKey{path: "/f99"}) == nil {
		t.Fatal("not evicting oldest first")
	}
}

// BenchmarkStaticSmallFile serves a 1 KiB file through fasthttp's
// in-memory path (no socket): open, fstat, pread, close and the headers.
func BenchmarkStaticSmallFile(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "small.txt"), bytes.Repeat([]byte("x"), 1024), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := newStatic(staticConfig{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	var req fasthttp.Request
	req.SetRequestURI("/small.txt")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	path := []byte("/small.txt")
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		ctx.Response.Reset()
		s.serve(&ctx, path)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 1024 {
			b.Fatalf("status %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
		}
	}
}

// TestStaticFileCache: a small file is served from memory for at most
// fileCacheValid after it was opened; then a change, a deletion, or a swap
// for a symlink leading out of the root shows, exactly as a fresh open
// would decide.
func TestStaticFileCache(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(root, "a.txt")
	write := func(s string) {
		t.Helper()
		tmp := name + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil { // an atomic deploy
			t.Fatal(err)
		}
	}
	write("one")
	addr, _ := startStatic(t, mustStatic(t, staticConfig{Root: root}))
	get := func() (int, string) {
		resp, body := staticExchange(t, addr, "GET", "/a.txt")
		return resp.StatusCode, string(body)
	}
	if code, body := get(); code != 200 || body != "one" {
		t.Fatalf("first: %d %q", code, body)
	}
	// The same bytes again, now from memory: the cache must not change them.
	if code, body := get(); code != 200 || body != "one" {
		t.Fatalf("cached: %d %q", code, body)
	}
	// Each change must show within fileCacheValid, and until it does only
	// the previous version may be served.
	steps := []struct {
		change   func()
		old      string
		wantCode int
		want     string
	}{
		{func() { write("two!") }, "one", 200, "two!"},
		{func() { os.Remove(name) }, "two!", 404, ""},
		{func() { write("three") }, "", 200, "three"},
		{func() { os.Remove(name); os.Symlink("/etc/passwd", name) }, "three", 403, ""},
	}
	for i, st := range steps {
		st.change()
		deadline := time.Now().Add(fileCacheValid + time.Second)
		for {
			code, body := get()
			if code == st.wantCode && (st.wantCode != 200 || body == st.want) {
				break
			}
			if strings.Contains(body, "root:") {
				t.Fatalf("step %d: served a file outside the root", i)
			}
			stale := (st.old == "" && code == 404) || (code == 200 && body == st.old)
			if !stale || time.Now().After(deadline) {
				t.Fatalf("step %d: got %d %q, want %d %q (or the previous version for at most %v)", i, code, body, st.wantCode, st.want, fileCacheValid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
