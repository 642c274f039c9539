package handshake

import "errors"

// Verdicts of ParseRange. Neither is in StatusOf's table: they are not
// refusals of the request but instructions to the file server, which
// branches on them.
var (
	// ErrRangeNotSatisfiable: a well-formed single byte range that selects
	// nothing of this representation (first-byte-pos at or past the end, a
	// zero-length suffix, an empty file). The caller answers 416 with
	// "Content-Range: bytes */size" (RFC 9110 §15.5.17, §14.4).
	ErrRangeNotSatisfiable = errors.New("range not satisfiable")
	// ErrRangeIgnored: a Range header ParseRange does not handle: another
	// unit, several ranges, bad syntax, first > last, numbers that overflow.
	// RFC 9110 §14.2 lets a server ignore Range entirely, so the caller
	// answers 200 with the whole representation. Ignoring several ranges
	// also avoids multipart/byteranges and the "many small overlapping
	// ranges" amplification RFC 9110 §17.15 warns about.
	ErrRangeIgnored = errors.New("range ignored")
)

// maxRangeDigits bounds a byte position: 18 decimal digits always fit in
// an int64, so no overflow check is needed per digit and a longer number
// is refused before any arithmetic.
const maxRangeDigits = 18

// ParseRange parses a Range header value holding one byte range (RFC 9110
// §14.1.2) against a representation of size bytes and returns the first
// and last byte it selects; end is inclusive and clamped to size-1, so on
// success 0 <= start <= end < size. Accepted forms, after optional
// whitespace around the value and around the range itself:
//
//	bytes=a-b   bytes a..min(b, size-1); a > b is invalid (ErrRangeIgnored)
//	bytes=a-    bytes a..size-1
//	bytes=-n    the last n bytes (all of them when n >= size)
//
// The unit name is case-insensitive (RFC 9110 §14.1). Syntax is judged
// before satisfiability, so a malformed header on an empty file is still
// ErrRangeIgnored. It never allocates.
func ParseRange(v []byte, size int64) (start, end int64, err error) {
	v = trimOWS(v)
	const unit = "bytes="
	if len(v) < len(unit) || !equalFold(v[:len(unit)], unit) {
		return 0, 0, ErrRangeIgnored
	}
	v = trimOWS(v[len(unit):])
	dash := -1
	for i, c := range v {
		switch {
		case c == '-' && dash < 0:
			dash = i
		case c == ',':
			// Several ranges (or an empty list element): not handled.
			return 0, 0, ErrRangeIgnored
		}
	}
	if dash < 0 || size < 0 {
		return 0, 0, ErrRangeIgnored
	}
	a, b := trimOWS(v[:dash]), trimOWS(v[dash+1:])
	hasFirst, hasLast := len(a) > 0, len(b) > 0
	first, okFirst := parseRangePos(a)
	last, okLast := parseRangePos(b)
	switch {
	case hasFirst && !okFirst, hasLast && !okLast, !hasFirst && !hasLast:
		return 0, 0, ErrRangeIgnored
	case !hasFirst: // suffix-range "-n"
		if last == 0 || size == 0 {
			return 0, 0, ErrRangeNotSatisfiable
		}
		return max(size-last, 0), size - 1, nil
	case hasLast && first > last:
		return 0, 0, ErrRangeIgnored
	}
	if first >= size {
		return 0, 0, ErrRangeNotSatisfiable
	}
	if !hasLast || last >= size {
		last = size - 1
	}
	return first, last, nil
}

// parseRangePos parses 1*DIGIT of at most maxRangeDigits digits.
func parseRangePos(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxRangeDigits {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
