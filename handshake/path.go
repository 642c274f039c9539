package handshake

import "errors"

// ErrBadPath: the request path cannot name a file under a root: it climbs
// above "/" with "..", or holds a NUL, a backslash, a control byte or a
// malformed percent-escape (raw or once decoded). One sentinel for every
// rule on purpose: a prober learns "refused", not which rule it tripped. → 403
var ErrBadPath = errors.New("path not allowed")

// NormalizePath turns raw, the path of a request-target exactly as sent
// (starting with '/', no query), into the path nginx's location matching
// and static module see, and appends it to dst:
//
//   - percent-escapes are decoded once (RFC 3986 §2.1); "%252e" becomes the
//     literal name "%2e", never a second round of decoding, because the file
//     system sees names, not URLs;
//   - a decoded "%2F" is a separator like a literal '/', as in nginx, so
//     "/a%2F..%2F.." is resolved (and refused) like "/a/../..";
//   - "//" collapses to "/", "." segments go, ".." removes the previous
//     segment (RFC 3986 §5.2.4) and one that would climb above "/" is
//     ErrBadPath, never silently clamped: a request that tries is hostile;
//   - a trailing slash stays: "/dir/" and "/dir" mean different things to
//     try_files. A trailing "." or ".." leaves one too ("/a/b/.." is "/a/").
//
// It refuses with ErrBadPath a raw or decoded NUL (it would end the name
// the kernel sees: "/x.html%00.js"), a raw or decoded backslash (a
// separator on Windows and in some backends, so "..\" can smuggle a
// traversal past a check that only knows '/'), any other control byte and
// 0x7f, and a malformed escape ("%4", "%zz"). Bytes >= 0x80 are kept as
// they are: file names may be UTF-8.
//
// When raw is already clean (no '%', no "//", no "." or ".." segment, no
// backslash or control byte) NormalizePath returns raw itself, not a copy,
// and allocates nothing: the common request costs one scan. Otherwise the
// result is dst with the path appended; on error dst is returned unchanged.
func NormalizePath(dst, raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, ErrBadPath
	}
	if pathIsClean(raw) {
		return raw, nil
	}
	base := len(dst)
	dst = append(dst, '/')
	seg := len(dst) // start of the segment being decoded
	var err error
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return dst[:base], ErrBadPath
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return dst[:base], ErrBadPath
			}
			c = hi<<4 | lo
			i += 2
		}
		// One check covers raw and decoded bytes alike: a NUL, a
		// backslash or a control byte is refused wherever it came from.
		if c < 0x20 || c == 0x7f || c == '\\' {
			return dst[:base], ErrBadPath
		}
		if c != '/' {
			dst = append(dst, c)
			continue
		}
		if dst, err = endSegment(dst, base, seg); err != nil {
			return dst[:base], err
		}
		seg = len(dst)
	}
	// The last segment has no '/' after it. A name stays without one; a
	// "." or ".." leaves the directory it names, slash included.
	switch string(dst[seg:]) {
	case ".":
		dst = dst[:seg]
	case "..":
		if dst, err = popSegment(dst, base, seg); err != nil {
			return dst[:base], err
		}
	}
	return dst, nil
}

// endSegment closes the segment dst[seg:] at a '/': an empty one (from
// "//") and "." vanish, ".." removes itself and the segment before it, a
// name gets its '/'. dst[seg-1] is always the '/' before the segment.
func endSegment(dst []byte, base, seg int) ([]byte, error) {
	switch string(dst[seg:]) { // no allocation: the compiler compares in place
	case "", ".":
		return dst[:seg], nil
	case "..":
		return popSegment(dst, base, seg)
	}
	return append(dst, '/'), nil
}

// popSegment drops the ".." at dst[seg:] and the segment before it, keeping
// the '/' that ends the parent. Above the root is ErrBadPath.
func popSegment(dst []byte, base, seg int) ([]byte, error) {
	end := seg - 1 // the '/' before ".."
	if end == base {
		return dst, ErrBadPath
	}
	i := end - 1
	for dst[i] != '/' {
		i--
	}
	return dst[:i+1], nil
}

// pathIsClean reports whether NormalizePath would return p unchanged: no
// escape, no backslash or control byte, and no empty, "." or ".." segment
// except an empty last one (the trailing slash). p starts with '/'.
func pathIsClean(p []byte) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
		if c != '/' {
			continue
		}
		rest := p[i+1:]
		switch {
		case len(rest) > 0 && rest[0] == '/':
			return false
		case len(rest) > 0 && rest[0] == '.' && (len(rest) == 1 || rest[1] == '/'):
			return false
		case len(rest) > 1 && rest[0] == '.' && rest[1] == '.' && (len(rest) == 2 || rest[2] == '/'):
			return false
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
