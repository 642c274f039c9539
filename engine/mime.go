package engine

// mimeType is what the static file server says about a file extension.
type mimeType struct {
	contentType string
	// compressible: worth gzip/brotli. Text, scripts, JSON, XML and SVG
	// shrink several-fold; images, fonts, video and wasm are either
	// compressed already or (wasm) left to a build step, as nginx's default
	// gzip_types leaves them.
	compressible bool
}

// octetStream is the type of an extension not in the table. nginx's
// default_type is the same; sniffing the content would let an uploaded
// file choose to be HTML.
var octetStream = mimeType{"application/octet-stream", false}

// mimeOf returns the type for the extension of name (the bytes after the
// last '.' of the last segment), case-insensitively. The table is small and
// fixed on purpose: a static site needs these, and a fixed table answers
// the same on every host, unlike /etc/mime.types. Text types carry
// "; charset=utf-8" so browsers do not guess the encoding. No allocation.
func mimeOf(name []byte) mimeType {
	dot := -1
	for i := len(name) - 1; i >= 0 && name[i] != '/'; i-- {
		if name[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 || len(name)-dot-1 > 5 {
		return octetStream
	}
	var buf [5]byte
	ext := buf[:len(name)-dot-1]
	for i := range ext {
		c := name[dot+1+i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		ext[i] = c
	}
	switch string(ext) { // compiled to comparisons, no conversion
	case "html", "htm":
		return mimeType{"text/html; charset=utf-8", true}
	case "css":
		return mimeType{"text/css; charset=utf-8", true}
	case "js", "mjs":
		// RFC 9239 §6: text/javascript is the one registered type.
		return mimeType{"text/javascript; charset=utf-8", true}
	case "json", "map":
		// RFC 8259 §11 defines no charset parameter: JSON is UTF-8.
		return mimeType{"application/json", true}
	case "txt":
		return mimeType{"text/plain; charset=utf-8", true}
	case "xml":
		return mimeType{"application/xml", true}
	case "svg":
		return mimeType{"image/svg+xml", true}
	case "png":
		return mimeType{"image/png", false}
	case "jpg", "jpeg":
		return mimeType{"image/jpeg", false}
	case "gif":
		return mimeType{"image/gif", false}
	case "webp":
		return mimeType{"image/webp", false}
	case "avif":
		return mimeType{"image/avif", false}
	case "ico":
		return mimeType{"image/x-icon", false}
	case "wasm":
		// Browsers refuse WebAssembly.instantiateStreaming without this type.
		return mimeType{"application/wasm", false}
	case "woff":
		return mimeType{"font/woff", false}
	case "woff2":
		return mimeType{"font/woff2", false}
	case "ttf":
		return mimeType{"font/ttf", false}
	case "pdf":
		return mimeType{"application/pdf", false}
	case "mp4":
		return mimeType{"video/mp4", false}
	case "webm":
		return mimeType{"video/webm", false}
	}
	return octetStream
}
