package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/handshake"
)

// FuzzParseHashKey: ParseHashKey never panics; a refused key gives the zero
// KeySource; an accepted one is one of the five variables, has a valid
// name exactly when the variable takes one (a header name lowercased, with
// "-" for "_"), and written back in its canonical form it parses to the
// same KeySource. Seeds: testdata/fuzz/FuzzParseHashKey.
func FuzzParseHashKey(f *testing.F) {
	for _, s := range []string{"$remote_addr", "$http_x_user_id", "$cookie_session", "$arg_", "$host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ks, err := ParseHashKey(s)
		if err != nil {
			if ks != (KeySource{}) {
				t.Fatalf("refused %q but returned %+v", s, ks)
			}
			return
		}
		var canon string
		switch ks.Kind {
		case KeyRemoteAddr:
			canon = "$remote_addr"
		case KeyURI:
			canon = "$uri"
		case KeyHeader:
			if ks.Name != strings.ToLower(ks.Name) || strings.Contains(ks.Name, "_") {
				t.Fatalf("%q: header name %q not in header form", s, ks.Name)
			}
			canon = "$http_" + ks.Name
		case KeyCookie:
			canon = "$cookie_" + ks.Name
		case KeyArg:
			canon = "$arg_" + ks.Name
		default:
			t.Fatalf("%q: kind %d", s, ks.Kind)
		}
		named := ks.Kind == KeyHeader || ks.Kind == KeyCookie || ks.Kind == KeyArg
		if named != validKeyName(ks.Name) || !named && ks.Name != "" {
			t.Fatalf("%q: kind %d with name %q", s, ks.Kind, ks.Name)
		}
		if ks.Kind == KeyCookie || ks.Kind == KeyArg || ks.Kind == KeyRemoteAddr {
			if canon != s {
				t.Fatalf("%q parsed as %+v, which reads back as %q", s, ks, canon)
			}
		}
		if again, err := ParseHashKey(canon); err != nil || again != ks {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, ks, canon, again, err)
		}
	})
}

// fuzzStream is what a fuzzed server sends: data, then, if endless, its
// last byte forever.
type fuzzStream struct {
	data    []byte
	endless bool
}

func (s *fuzzStream) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	if len(s.data) == 1 && s.endless {
		for i := range p {
			p[i] = s.data[0]
		}
		return len(p), nil
	}
	n := copy(p, s.data)
	if s.endless && n == len(s.data) {
		n-- // keep the last byte to repeat
	}
	s.data = s.data[n:]
	return n, nil
}

// fuzzConn is a net.Conn (readHead only reads) that hands out at most max
// bytes a read (0: no limit) and counts them.
type fuzzConn struct {
	net.Conn
	r      io.Reader
	max    int
	served int
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	if c.max > 0 && len(p) > c.max {
		p = p[:c.max]
	}
	n, err := c.r.Read(p)
	c.served += n
	return n, err
}

// healthCheckErr reports whether err is one awaitFrame may return: a
// check failure, or the end of the stream.
func healthCheckErr(err error) bool {
	for _, e := range []error{errCheckFrame, errCheckPong, errCheckClose, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzReadHead: readHead never panics and always returns, even on an
// endless stream (reads of at most chunk bytes, 0 for no limit; 512 more
// when endless): it reads a bounded amount; it fails with the handshake
// package's 502 errors or ErrUnexpectedEOF; on success its reader yields
// exactly the bytes after the head. Whatever follows a head then goes
// through awaitFrame as a WebSocket check does (pong, then close).
// Seeds: testdata/fuzz/FuzzReadHead.
func FuzzReadHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), uint8(0), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nX: a"), uint8(0), true)
	want := []byte("sluice-health-check")
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, endless bool) {
		conn := &fuzzConn{r: &fuzzStream{data: data, endless: endless}, max: int(chunk)}
		if endless {
			// readHead parses its whole buffer again after each read, so
			// 16 KiB a byte at a time takes a second; the bound is what
			// an endless stream is here for.
			conn.max = 512 + int(chunk)
		}
		var resp handshake.Response
		br, err := readHead(conn, &resp)
		// The buffer at most doubles past checkHead before the parse
		// refuses it.
		if conn.served > 2*checkHead+1024 {
			t.Fatalf("read %d bytes for a head", conn.served)
		}
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && handshake.StatusOf(err) != 502 {
				t.Fatalf("error %v (status %d)", err, handshake.StatusOf(err))
			}
			return
		}
		if resp.HeadLen > conn.served || resp.HeadLen > checkHead {
			t.Fatalf("HeadLen %d, %d bytes read", resp.HeadLen, conn.served)
		}
		if endless {
			return
		}
		rest, err := io.ReadAll(br)
		if err != nil || !bytes.Equal(rest, data[resp.HeadLen:]) {
			t.Fatalf("after the head: %q, %v; want %q", rest, err, data[resp.HeadLen:])
		}
		br = bufio.NewReader(bytes.NewReader(rest))
		err = awaitFrame(br, opPong, want)
		if err == nil {
			err = awaitFrame(br, opClose, nil)
		}
		if err != nil && !healthCheckErr(err) {
			t.Fatalf("awaitFrame: untyped error %v", err)
		}
	})
}

// FuzzAwaitFrame: awaitFrame never panics and always returns, endless
// stream or not, having read at most maxCheckFrames frames of at most
// 1 MiB of payload each; its error is a check failure or the end of the
// stream; a pong is accepted only with the expected payload.
// Seeds: testdata/fuzz/FuzzAwaitFrame.
func FuzzAwaitFrame(f *testing.F) {
	f.Add([]byte("\x8a\x13sluice-health-check"), false)
	f.Add([]byte("\x88\x02\x03\xe8"), false)
	want := []byte("sluice-health-check")
	f.Fuzz(func(t *testing.T, data []byte, endless bool) {
		for _, op := range []byte{opPong, opClose} {
			conn := &fuzzConn{r: &fuzzStream{data: data, endless: endless}}
			err := awaitFrame(bufio.NewReaderSize(conn, 4096), op, want)
			if conn.served > maxCheckFrames*(14+1<<20)+4096 {
				t.Fatalf("read %d bytes", conn.served)
			}
			if err != nil {
				if !healthCheckErr(err) {
					t.Fatalf("op %#x: untyped error %v", op, err)
				}
				continue
			}
			if op == opPong && !bytes.Contains(data, want) {
				// The endless tail repeats one byte; want ends "ck", so a
				// pong's payload lies in data either way.
				t.Fatalf("pong accepted without the payload: %q", data)
			}
		}
	})
}
