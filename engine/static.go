package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/sluice-proxy/sluice/handshake"
)

// Static file serving for a [[server.location]] with a root, the part of
// nginx's static, index, try_files and gzip modules that a single-page app
// or a docs site needs. It is not the tunnel path: it may allocate and lock,
// but it must never read outside its root, never block on a special file,
// never hold a large file in memory and never leak a descriptor.

// staticConfig is a [[server.location]] with root = ...
type staticConfig struct {
	// Root is the absolute path of the directory files are served from
	// (nginx: root). Opened once; a root replaced later (a deploy that swaps
	// a symlink) is not seen until the location is rebuilt.
	Root string
	// Index lists the file names tried, in order, for a request that names a
	// directory with a trailing slash (nginx: index). Default ["index.html"].
	Index []string
	// TryFiles is nginx's try_files: "$uri" (a regular file at the path),
	// "$uri/" (the path is a directory: redirect to add the slash, or serve
	// an Index file), "/some/file" (that file, e.g. "/index.html" for a
	// single-page app) and, last only, "=NNN" (answer that status). When
	// nothing matches the answer is 404. Default ["$uri", "$uri/"].
	TryFiles []string
	// Compress turns on gzip and brotli for text-like files of at least
	// 256 bytes when the client accepts them (nginx: gzip on; brotli on).
	// Compressed bodies are cached in memory, never written to disk.
	Compress bool
}

// Limits.
const (
	// smallFile: bodies up to this size are read into the response at once
	// and the descriptor closed; larger ones are streamed from the file
	// (sendfile when fasthttp can), so a 1 GiB file never sits in memory.
	smallFile = 64 << 10
	// minCompress: below this, gzip's header and the extra round of work
	// cost more than they save (nginx's gzip_min_length is 20, most CDNs
	// use 256 to 1024).
	minCompress = 256
	// maxCompress: larger files are served as they are. Compression here
	// is whole-body and in memory, so this bounds what one request can make
	// the process hold.
	maxCompress = 2 << 20
	// compressCacheSize bounds the memory all cached compressed bodies take.
	compressCacheSize = 32 << 20
	// gzipLevel and brotliLevel: the usual speed/size compromise; the
	// result is cached, so it is paid once per file version.
	gzipLevel   = fasthttp.CompressDefaultCompression // 6
	brotliLevel = 5
)

// Errors sent as the detail of static answers. They name the rule, never a
// file system path or an errno, which would tell a prober about the host.
var (
	errNotFound      = errors.New("no such file")
	errOutsideRoot   = errors.New("path leads outside the root or is refused")
	errNoListing     = errors.New("directory listing is off")
	errOpenFailed    = errors.New("cannot open file")
	errFileChanged   = errors.New("file changed while being read")
	errMethodStatic  = errors.New("only GET and HEAD are allowed here")
	errNotDirectory  = errors.New("root is not a directory")
	errRootNotAbs    = errors.New("root must be an absolute path")
	errBadTryFiles   = errors.New("try_files")
	errBadIndexEntry = errors.New("index")
)

// tryKind is one try_files entry, parsed once.
type tryKind uint8

const (
	tryURI    tryKind = iota // "$uri"
	tryURIDir                // "$uri/"
	tryFile                  // "/some/file"
	tryStatus                // "=NNN"
)

type tryRule struct {
	kind   tryKind
	file   []byte // tryFile: the clean path
	status int    // tryStatus
}

// static serves one root. Safe for concurrent use.
type static struct {
	root     int      // O_PATH descriptor of the root: every open is relative to it
	fallback *os.Root // non-nil only when the kernel has no openat2
	index    []string
	try      []tryRule
	compress bool
	cache    *compressCache
	files    fileCache // small files' bytes, revalidated every fileCacheValid
}

// newStatic opens c.Root and checks c. The root descriptor is opened with
// O_PATH: it grants no read access of its own and only anchors openat2.
func newStatic(c staticConfig) (*static, error) {
	if !filepath.IsAbs(c.Root) {
		return nil, fmt.Errorf("static %q: %w", c.Root, errRootNotAbs)
	}
	s := &static{index: c.Index, compress: c.Compress}
	if s.index == nil {
		s.index = []string{"index.html"}
	}
	for _, name := range s.index {
		// An index name is one file name: "../x" or "a/b" would let a
		// config typo serve something the location never meant to.
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return nil, fmt.Errorf("static %q: %w %q: must be a plain file name", c.Root, errBadIndexEntry, name)
		}
	}
	tries := c.TryFiles
	if len(tries) == 0 {
		tries = []string{"$uri", "$uri/"}
	}
	for i, t := range tries {
		r, err := parseTry(t, i == len(tries)-1)
		if err != nil {
			return nil, fmt.Errorf("static %q: %w", c.Root, err)
		}
		s.try = append(s.try, r)
	}
	if c.Compress {
		s.cache = &compressCache{entries: make(map[compressKey][]byte)}
	}

	fd, err := unix.Open(c.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOTDIR {
			err = errNotDirectory
		}
		return nil, fmt.Errorf("static %q: %w", c.Root, err)
	}
	s.root = fd
	// Probe openat2 (Linux 5.6). ENOSYS: an older kernel; EPERM: a seccomp
	// profile that predates the syscall (Docker before 20.10 answers EPERM
	// for unknown syscalls). Both fall back to os.Root, which enforces the
	// same "stay beneath" rule in user space, with more syscalls per open.
	probe, err := s.openat2(".")
	switch err {
	case nil:
		unix.Close(probe)
	case unix.ENOSYS, unix.EPERM:
		if s.fallback, err = os.OpenRoot(c.Root); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("static %q: %w", c.Root, err)
		}
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("static %q: %w", c.Root, err)
	}
	return s, nil
}

// parseTry parses one try_files entry; "=NNN" is only allowed last, as in nginx.
func parseTry(t string, last bool) (tryRule, error) {
	switch {
	case t == "$uri":
		return tryRule{kind: tryURI}, nil
	case t == "$uri/":
		return tryRule{kind: tryURIDir}, nil
	case strings.HasPrefix(t, "="):
		code, err := strconv.Atoi(t[1:])
		if err != nil || code < 200 || code > 599 || !last {
			return tryRule{}, fmt.Errorf("%w %q: \"=NNN\" must be last, with NNN in 200..599", errBadTryFiles, t)
		}
		return tryRule{kind: tryStatus, status: code}, nil
	case strings.HasPrefix(t, "/") && !strings.Contains(t, "$"):
		// The file must already be what NormalizePath would make of it, so
		// that a config cannot reach where a request could not.
		clean, err := handshake.NormalizePath(nil, []byte(t))
		if err != nil || string(clean) != t || strings.HasSuffix(t, "/") {
			return tryRule{}, fmt.Errorf("%w %q: must be a clean absolute file path", errBadTryFiles, t)
		}
		return tryRule{kind: tryFile, file: clean}, nil
	}
	return tryRule{}, fmt.Errorf("%w %q: want \"$uri\", \"$uri/\", \"/file\" or \"=NNN\"", errBadTryFiles, t)
}

func (s *static) close() error {
	var err error
	if s.fallback != nil {
		err = s.fallback.Close()
	}
	if cerr := unix.Close(s.root); err == nil {
		err = cerr
	}
	return err
}

// serve answers ctx for path, which NormalizePath has already cleaned
// (decoded, absolute, no dot segments). The query string plays no part,
// except that a directory redirect keeps it.
func (s *static) serve(ctx *fasthttp.RequestCtx, path []byte) {
	if len(path) == 0 || path[0] != '/' {
		// Not from NormalizePath: refuse rather than guess.
		httpError(ctx, http.StatusForbidden, handshake.ErrBadPath)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		httpError(ctx, http.StatusMethodNotAllowed, errMethodStatic)
		return
	}
	for _, r := range s.try {
		var done bool
		switch r.kind {
		case tryURI:
			done = s.tryRegular(ctx, path)
		case tryURIDir:
			done = s.tryDirectory(ctx, path)
		case tryFile:
			done = s.tryRegular(ctx, r.file)
		case tryStatus:
			httpError(ctx, r.status, nil)
			return
		}
		if done {
			return
		}
	}
	httpError(ctx, http.StatusNotFound, errNotFound)
}

// tryRegular serves name if it is a regular file and reports whether it
// answered. A missing name, or one that is a directory, FIFO, socket or
// device, lets the next try_files entry have its go. A name the kernel
// refuses (outside the root, no permission) is answered at once: falling
// through to, say, a single-page app's index.html would hide the refusal
// and make a probe for /etc/passwd look like a success.
func (s *static) tryRegular(ctx *fasthttp.RequestCtx, name []byte) bool {
	if f := s.files.get(name); f != nil {
		s.serveFile(ctx, -1, &f.st, name, f.body)
		return true
	}
	fd, st, err := s.open(name)
	if err != nil {
		return s.openFailed(ctx, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return false
	}
	if st.Size <= smallFile {
		body := make([]byte, st.Size)
		n, err := preadFull(fd, body, 0)
		unix.Close(fd)
		if err != nil || n != len(body) {
			httpError(ctx, http.StatusInternalServerError, errFileChanged)
			return true
		}
		s.files.put(name, &st, body)
		s.serveFile(ctx, -1, &st, name, body)
		return true
	}
	s.serveFile(ctx, fd, &st, name, nil)
	return true
}

// tryDirectory handles "$uri/": if path is a directory, either redirect to
// add the slash or serve its first existing index file; with no index file
// the answer is 403, as nginx's, because listing is never on.
func (s *static) tryDirectory(ctx *fasthttp.RequestCtx, path []byte) bool {
	fd, st, err := s.open(path)
	if err != nil {
		return s.openFailed(ctx, err)
	}
	unix.Close(fd) // the index is opened relative to the root, like any name
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	if path[len(path)-1] != '/' {
		redirectSlash(ctx, path)
		return true
	}
	var buf [256]byte
	for _, idx := range s.index {
		name := append(append(buf[:0], path...), idx...)
		if s.tryRegular(ctx, name) {
			return true
		}
	}
	httpError(ctx, http.StatusForbidden, errNoListing)
	return true
}

// openFailed sorts an open error: not-found kinds return false so that
// try_files goes on; anything else is answered here.
func (s *static) openFailed(ctx *fasthttp.RequestCtx, err error) bool {
	switch err {
	case unix.ENOENT, unix.ENOTDIR, unix.ENAMETOOLONG:
		return false
	case unix.ENXIO:
		// A socket file, or a device with nothing behind it: not a file to serve.
		return false
	case unix.EXDEV, unix.ELOOP, unix.EACCES, unix.EPERM:
		// EXDEV: openat2's RESOLVE_BENEATH caught a path, or a symlink on
		// it, leaving the root (absolute symlinks always do: RESOLVE_BENEATH
		// does not reinterpret them relative to the root). ELOOP: a /proc
		// magic link (RESOLVE_NO_MAGICLINKS) or a symlink loop.
		httpError(ctx, http.StatusForbidden, errOutsideRoot)
		return true
	}
	// EMFILE, EIO and the like: the server's trouble, not the client's.
	httpError(ctx, http.StatusInternalServerError, errOpenFailed)
	return true
}

// redirectSlash answers 301 to path+"/" with the query kept, as nginx does
// for a directory named without its slash. path is decoded, so it is
// escaped again for Location; it starts with exactly one '/' (NormalizePath
// collapsed "//"), so the Location cannot be read as "//other-host".
func redirectSlash(ctx *fasthttp.RequestCtx, path []byte) {
	loc := appendEscapedPath(make([]byte, 0, len(path)+16), path)
	loc = append(loc, '/')
	if q := ctx.URI().QueryString(); len(q) > 0 {
		loc = append(append(loc, '?'), q...)
	}
	ctx.Response.Header.SetBytesV("Location", loc)
	httpError(ctx, http.StatusMovedPermanently, nil)
}

// appendEscapedPath percent-encodes every byte of p that may not stand in
// a URI path as it is (RFC 3986 §3.3: pchar and '/').
func appendEscapedPath(dst, p []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range p {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}

// open opens name (absolute, clean) beneath the root and fstats it. On
// error no descriptor is left open.
func (s *static) open(name []byte) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	rel := "."
	if len(name) > 1 {
		rel = string(name[1:]) // relative to the root fd: an absolute path would be refused
	}
	var fd int
	var err error
	if s.fallback != nil {
		fd, err = openInRoot(s.fallback, rel)
	} else {
		fd, err = s.openat2(rel)
	}
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// openat2 opens rel relative to the root with the kernel, not this code,
// deciding what "inside" means: RESOLVE_BENEATH refuses any ".." or
// symlink (relative or absolute) that resolves outside the root, at every
// step and atomically, so a symlink swapped in between a check and the
// open cannot win a race. RESOLVE_NO_MAGICLINKS refuses /proc/self/fd/N
// style links. O_NONBLOCK makes opening a FIFO return at once instead of
// waiting for a writer (fstat then rejects it); on a regular file it is
// ignored. O_CLOEXEC keeps served files out of any child process.
func (s *static) openat2(rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 4 {
		fd, err := unix.Openat2(s.root, rel, &how)
		// EAGAIN: a rename or mount raced the ".." check; EINTR: a signal.
		// Both are worth a retry, not an error page.
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// openInRoot is the pre-openat2 fallback: os.Root confines the lookup in
// user space. Its "path escapes from parent" is not an errno; any error
// without one is treated as a refusal (EXDEV, 403).
func openInRoot(r *os.Root, rel string) (int, error) {
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return -1, errno
		}
		return -1, unix.EXDEV
	}
	defer f.Close()
	// A duplicate, so the caller owns a plain fd like openat2's.
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := sc.Control(func(raw uintptr) { fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// serveFile answers with the regular file fd, named name (for its type),
// whose fstat is st. It owns fd: every path closes it or hands it to
// fasthttp, which closes a body stream once written or when the response
// is reset (RequestCtx reuse, connection error).
//
// A small file comes from the file cache instead: body holds its bytes and
// fd is -1.
func (s *static) serveFile(ctx *fasthttp.RequestCtx, fd int, st *unix.Stat_t, name []byte, body []byte) {
	size, mtime := st.Size, st.Mtim.Sec
	mt := mimeOf(name)
	req := &ctx.Request.Header
	rangeHdr := req.Peek("Range")

	// Compression is decided first: it changes the ETag a 304 must carry
	// (RFC 9110 §15.4.5: the one a 200 would have sent).
	vary := s.compress && mt.compressible
	enc := encIdentity
	if vary && size >= minCompress && size <= maxCompress && len(rangeHdr) == 0 {
		enc = pickEncoding(req.Peek("Accept-Encoding"))
	}
	var tagBuf [48]byte
	tag := appendETag(tagBuf[:0], mtime, size)
	if enc != encIdentity {
		// The compressed bytes differ from the file's, so the tag is weak,
		// as nginx makes it when gzip is on (RFC 9110 §8.8.1).
		tag = append([]byte("W/"), tag...)
	}

	if notModified(req, tag, mtime) {
		closeFD(fd)
		setValidators(&ctx.Response.Header, tag, mtime, vary)
		ctx.SetStatusCode(http.StatusNotModified)
		return
	}

	if enc != encIdentity {
		z, err := s.compressed(fd, name, st, enc, body) // closes fd
		if err != nil {
			httpError(ctx, http.StatusInternalServerError, err)
			return
		}
		h := &ctx.Response.Header
		h.SetContentType(mt.contentType)
		h.Set("Content-Encoding", enc.String())
		setValidators(h, tag, mtime, vary)
		// The cached slice is shared and never written to again; SetBodyRaw
		// spares a copy. For HEAD fasthttp sends only its length.
		ctx.Response.SetBodyRaw(z)
		ctx.SetStatusCode(http.StatusOK)
		return
	}

	// Range (RFC 9110 §14.2): GET only; If-Range decides whether the range
	// still applies to what the client holds.
	start, end, status := int64(0), size-1, http.StatusOK
	if len(rangeHdr) > 0 && ctx.IsGet() && ifRangeHolds(req, tag, mtime) {
		a, b, err := handshake.ParseRange(rangeHdr, size)
		switch err {
		case nil:
			start, end, status = a, b, http.StatusPartialContent
		case handshake.ErrRangeNotSatisfiable:
			closeFD(fd)
			// RFC 9110 §14.4: a 416 carries the current length.
			ctx.Response.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			httpError(ctx, http.StatusRequestedRangeNotSatisfiable, err)
			return
		}
		// ErrRangeIgnored: the whole file, 200.
	}
	n := end - start + 1

	// A small body is read before any header is set, so a read error can
	// still become a clean 500.
	if body != nil {
		if ctx.IsGet() {
			// Cached bytes are never written again (a changed file gets a new
			// slice), so the response may point at them.
			ctx.Response.SetBodyRaw(body[start : start+n])
		}
	} else if ctx.IsGet() && n <= smallFile {
		bp := smallBufs.Get().(*[]byte)
		got, err := preadFull(fd, (*bp)[:n], start)
		unix.Close(fd)
		if err != nil || got != int(n) {
			smallBufs.Put(bp)
			httpError(ctx, http.StatusInternalServerError, errFileChanged)
			return
		}
		ctx.Response.SetBody((*bp)[:n]) // copies; the pooled buffer goes back
		smallBufs.Put(bp)
		fd = -1
	}
	// A large body is streamed from the file, positioned at the range.
	var f *os.File
	if fd >= 0 && ctx.IsGet() {
		f = os.NewFile(uintptr(fd), string(name))
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			f.Close()
			httpError(ctx, http.StatusInternalServerError, errOpenFailed)
			return
		}
	}

	h := &ctx.Response.Header
	h.SetContentType(mt.contentType)
	setValidators(h, tag, mtime, vary)
	// nginx sends Accept-Ranges only where it would honour a Range.
	h.Set("Accept-Ranges", "bytes")
	if status == http.StatusPartialContent {
		var cr [64]byte
		b := append(cr[:0], "bytes "...)
		b = strconv.AppendInt(b, start, 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, end, 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, size, 10)
		h.SetBytesV("Content-Range", b)
	}
	ctx.SetStatusCode(status)

	switch {
	case fd < 0 && ctx.IsHead():
		h.SetContentLength(int(n))
	case fd < 0: // small body already in place
	case ctx.IsHead():
		// Same headers as GET, no body: fasthttp keeps an explicit
		// Content-Length on a HEAD response with an empty body.
		unix.Close(fd)
		h.SetContentLength(int(n))
	default:
		// fasthttp copies exactly n bytes (sendfile for an *os.File) and
		// closes f, an io.Closer, when done or when the response is reset.
		ctx.Response.SetBodyStream(f, int(n))
	}
}

// smallBufs holds read buffers for bodies up to smallFile bytes.
var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallFile); return &b }}

// preadFull reads len(b) bytes at off, or fewer at end of file.
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// appendETag appends nginx's strong ETag: "<mtime hex>-<size hex>". The
// same format means a cache warmed by nginx keeps validating after a move.
func appendETag(dst []byte, mtime, size int64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, uint64(mtime), 16)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, uint64(size), 16)
	return append(dst, '"')
}

var etagName = []byte("ETag")

// setValidators sets ETag, Last-Modified and, for types that may be
// compressed, Vary: Accept-Encoding, so a shared cache never hands a gzip
// body to a client that did not ask for one (RFC 9110 §12.5.5).
func setValidators(h *fasthttp.ResponseHeader, tag []byte, mtime int64, vary bool) {
	// SetCanonical keeps the spelling "ETag"; SetBytesV would send "Etag".
	// Names are case-insensitive, but nginx's spelling is what people grep.
	h.SetCanonical(etagName, tag)
	h.SetLastModified(time.Unix(mtime, 0))
	if vary {
		h.Set("Vary", "Accept-Encoding")
	}
}

// notModified evaluates If-None-Match, or If-Modified-Since when there is
// no If-None-Match (RFC 9110 §13.2.2 order).
func notModified(req *fasthttp.RequestHeader, tag []byte, mtime int64) bool {
	if inm := req.Peek("If-None-Match"); len(inm) > 0 {
		return etagListMatches(inm, tag)
	}
	if ims := req.Peek("If-Modified-Since"); len(ims) > 0 {
		t, err := fasthttp.ParseHTTPDate(ims)
		// Last-Modified has one-second resolution, so compare seconds.
		return err == nil && mtime <= t.Unix()
	}
	return false
}

// etagListMatches reports whether the If-None-Match list holds "*" or a tag
// equal to tag under the weak comparison (RFC 9110 §8.8.3.2: "W/" ignored
// on both sides).
func etagListMatches(list, tag []byte) bool {
	tag = bytes.TrimPrefix(tag, []byte("W/"))
	for len(list) > 0 {
		var elem []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			elem, list = list[:i], list[i+1:]
		} else {
			elem, list = list, nil
		}
		elem = bytes.TrimSpace(elem)
		if len(elem) == 1 && elem[0] == '*' {
			return true
		}
		if bytes.Equal(bytes.TrimPrefix(elem, []byte("W/")), tag) {
			return true
		}
	}
	return false
}

// ifRangeHolds evaluates If-Range (RFC 9110 §13.1.5): absent, it holds; an
// entity-tag must match strongly (a weak one never does); a date must equal
// Last-Modified exactly. When it does not hold the client gets the whole
// file instead of a range of a version it does not have.
func ifRangeHolds(req *fasthttp.RequestHeader, tag []byte, mtime int64) bool {
	v := bytes.TrimSpace(req.Peek("If-Range"))
	switch {
	case len(v) == 0:
		return true
	case v[0] == '"':
		return bytes.Equal(v, tag)
	case bytes.HasPrefix(v, []byte("W/")):
		return false
	}
	t, err := fasthttp.ParseHTTPDate(v)
	return err == nil && t.Unix() == mtime
}

// httpError answers status with a text/plain body "NNN Reason: detail\n"
// (or "NNN Reason\n" for a nil err), the same body format as
// handshake.AppendErrorResponse; it does not force Connection: close.
// Headers already set (Allow, Location, Content-Range) are kept.
func httpError(ctx *fasthttp.RequestCtx, status int, err error) {
	if status < 100 || status > 999 {
		status = http.StatusInternalServerError
	}
	// The body is cut from AppendErrorResponse's output rather than
	// rebuilt, so the format and its sanitising of the detail (no CR/LF,
	// printable ASCII, 200 bytes at most) live in one place.
	full := handshake.AppendErrorResponse(nil, status, err)
	body := full[bytes.Index(full, []byte("\r\n\r\n"))+4:]
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyRaw(body)
	ctx.SetStatusCode(status)
}

// encoding is a content coding the server can apply.
type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encBrotli
)

func (e encoding) String() string {
	switch e {
	case encGzip:
		return "gzip"
	case encBrotli:
		return "br"
	}
	return "identity"
}

// pickEncoding chooses br over gzip from an Accept-Encoding value (RFC 9110
// §12.5.3). A coding is acceptable when listed with a q above zero, or
// when unlisted and "*" is; "q=0" (also "0.0", "0.000") refuses it. Other
// q values do not reorder the choice: br is smaller for text at similar
// cost, so it wins whenever it is acceptable at all. No header: identity.
func pickEncoding(ae []byte) encoding {
	const unset = -1
	br, gz, star := unset, unset, unset
	for len(ae) > 0 {
		var elem []byte
		if i := bytes.IndexByte(ae, ','); i >= 0 {
			elem, ae = ae[:i], ae[i+1:]
		} else {
			elem, ae = ae, nil
		}
		name, params, _ := bytes.Cut(elem, []byte(";"))
		ok := 1
		for len(params) > 0 {
			var p []byte
			p, params, _ = bytes.Cut(params, []byte(";"))
			p = bytes.TrimSpace(p)
			if len(p) > 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' && qIsZero(p[2:]) {
				ok = 0
			}
		}
		switch name = bytes.TrimSpace(name); {
		case bytes.EqualFold(name, []byte("br")):
			br = ok
		case bytes.EqualFold(name, []byte("gzip")), bytes.EqualFold(name, []byte("x-gzip")):
			gz = ok
		case len(name) == 1 && name[0] == '*':
			star = ok
		}
	}
	acceptable := func(v int) bool { return v == 1 || (v == unset && star == 1) }
	switch {
	case acceptable(br):
		return encBrotli
	case acceptable(gz):
		return encGzip
	}
	return encIdentity
}

// qIsZero reports a qvalue of zero: "0" with at most three zero decimals.
func qIsZero(q []byte) bool {
	if len(q) == 0 || q[0] != '0' {
		return false
	}
	for _, c := range bytes.TrimPrefix(q[1:], []byte(".")) {
		if c != '0' {
			return false
		}
	}
	return true
}

// compressed returns the body of fd compressed with enc, from the cache
// when this version of the file was compressed before. It closes fd.
func (s *static) compressed(fd int, name []byte, st *unix.Stat_t, enc encoding, body []byte) ([]byte, error) {
	// The key holds what identifies a version of a file: a new deploy
	// changes mtime, size or inode, so stale entries are never served,
	// only aged out.
	k := compressKey{path: string(name), mtime: st.Mtim.Nano(), size: st.Size, ino: st.Ino, enc: enc}
	if z := s.cache.get(k); z != nil {
		closeFD(fd)
		return z, nil
	}
	raw := body
	if raw == nil {
		raw = make([]byte, st.Size)
		n, err := preadFull(fd, raw, 0)
		unix.Close(fd)
		if err != nil || n != len(raw) {
			return nil, errFileChanged
		}
	}
	var z []byte
	if enc == encBrotli {
		z = fasthttp.AppendBrotliBytesLevel(nil, raw, brotliLevel)
	} else {
		z = fasthttp.AppendGzipBytesLevel(nil, raw, gzipLevel)
	}
	s.cache.put(k, z)
	return z, nil
}

type compressKey struct {
	path  string
	mtime int64
	size  int64
	ino   uint64
	enc   encoding
}

// compressCache holds compressed bodies, at most compressCacheSize bytes
// in all, evicting the oldest first. One mutex: lookups are map reads and
// compression itself runs outside the lock. Two requests racing on a cold
// entry both compress; the second put is dropped.
type compressCache struct {
	mu      sync.Mutex
	entries map[compressKey][]byte
	order   []compressKey // insertion order, oldest first
	total   int
}

func (c *compressCache) get(k compressKey) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[k]
}

func (c *compressCache) put(k compressKey, z []byte) {
	if len(z) > compressCacheSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; ok {
		return
	}
	for c.total+len(z) > compressCacheSize && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.total -= len(c.entries[old])
		delete(c.entries, old)
	}
	c.entries[k] = z
	c.order = append(c.order, k)
	c.total += len(z)
}
