package handshake

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// v2 builds a version 2 header: cmd (0 LOCAL, 1 PROXY), family byte, body.
func v2(cmd, fam byte, body []byte) []byte {
	out := append([]byte(nil), proxyV2Sig...)
	out = append(out, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(out[14:], uint16(len(body)))
	return append(out, body...)
}

func v2v4() []byte {
	return v2(1, 0x11, []byte{203, 0, 113, 7, 10, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90})
}

func v2v6() []byte {
	b := make([]byte, 36)
	s := netip.MustParseAddr("2001:db8::7").As16()
	d := netip.MustParseAddr("2001:db8::1").As16()
	copy(b, s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[32:], 12345)
	binary.BigEndian.PutUint16(b[34:], 443)
	return v2(1, 0x21, b)
}

func TestParseProxyHeader(t *testing.T) {
	const get = "GET / HTTP/1.1\r\n"
	tlv := append(v2v4()[:16:16], append(v2v4()[16:], 0x04, 0x00, 0x01, 'x')...)
	binary.BigEndian.PutUint16(tlv[14:], 12+4)
	tests := []struct {
		name     string
		in       []byte
		src, dst string
		n        int
		err      error
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080\r\n" + get), "203.0.113.7:12345", "10.0.0.1:8080", 44, nil},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 12345 443\r\n"), "[2001:db8::7]:12345", "[2001:db8::1]:443", 46, nil},
		{"v1 unknown", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), "", "", 35, nil},
		{"v1 bare unknown", []byte("PROXY UNKNOWN\r\n"), "", "", 15, nil},
		{"v1 partial", []byte("PROXY TCP4 203.0"), "", "", 0, ErrIncomplete},
		{"v1 prefix only", []byte("PRO"), "", "", 0, ErrIncomplete},
		{"v1 tcp4 with v6 addr", []byte("PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 leading zero port", []byte("PROXY TCP4 1.2.3.4 10.0.0.1 01 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 port range", []byte("PROXY TCP4 1.2.3.4 10.0.0.1 65536 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 bad addr", []byte("PROXY TCP4 1.2.3 10.0.0.1 1 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 fields", []byte("PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 10.0.0.1 1 2\r\n"), "", "", 0, ErrProxyHeader},
		{"v1 bare lf", []byte("PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n"), "", "", 0, ErrProxyHeader},
		{"v1 too long", append([]byte("PROXY UNKNOWN "), make([]byte, 200)...), "", "", 0, ErrProxyHeader},
		{"plain http", []byte(get), "", "", 0, ErrProxyHeader},
		{"v2 tcp4", append(v2v4(), get...), "203.0.113.7:12345", "10.0.0.1:8080", 28, nil},
		{"v2 tcp6", v2v6(), "[2001:db8::7]:12345", "[2001:db8::1]:443", 52, nil},
		{"v2 tlv skipped", tlv, "203.0.113.7:12345", "10.0.0.1:8080", 32, nil},
		{"v2 local", v2(0, 0x00, nil), "", "", 16, nil},
		{"v2 udp", v2(1, 0x12, make([]byte, 12)), "", "", 28, nil},
		{"v2 partial sig", proxyV2Sig[:5], "", "", 0, ErrIncomplete},
		{"v2 partial body", v2v4()[:20], "", "", 0, ErrIncomplete},
		{"v2 bad version", append(append([]byte(nil), proxyV2Sig...), 0x11, 0x11, 0, 0), "", "", 0, ErrProxyHeader},
		{"v2 bad command", v2(2, 0x11, make([]byte, 12)), "", "", 0, ErrProxyHeader},
		{"v2 short v4", v2(1, 0x11, make([]byte, 8)), "", "", 0, ErrProxyHeader},
		{"v2 short v6", v2(1, 0x21, make([]byte, 12)), "", "", 0, ErrProxyHeader},
		{"v2 huge length", append(append([]byte(nil), proxyV2Sig...), 0x21, 0x11, 0xff, 0xff), "", "", 0, ErrProxyHeader},
		{"crlf not sig", []byte("\r\n\r\nGET"), "", "", 0, ErrProxyHeader},
		{"empty", nil, "", "", 0, ErrIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, n, err := ParseProxyHeader(tt.in)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if n != tt.n {
				t.Errorf("n %d, want %d", n, tt.n)
			}
			if got := addrOrEmpty(src); got != tt.src {
				t.Errorf("src %q, want %q", got, tt.src)
			}
			if got := addrOrEmpty(dst); got != tt.dst {
				t.Errorf("dst %q, want %q", got, tt.dst)
			}
			if err != nil && !errors.Is(err, ErrIncomplete) && StatusOf(err) != 400 {
				t.Errorf("status %d, want 400", StatusOf(err))
			}
		})
	}
}

func addrOrEmpty(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestParseProxyHeaderZeroAllocsV2(t *testing.T) {
	h := v2v4()
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = ParseProxyHeader(h) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// FuzzParseProxyHeader: never panics; n stays within buf; a valid header
// is a prefix that parses the same way on its own; every prefix of a valid
// header is ErrIncomplete or the same verdict, never a different address.
// Seeds: testdata/fuzz/FuzzParseProxyHeader.
func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 12345 8080\r\nGET / HTTP/1.1\r\n"))
	f.Add(v2v4())
	f.Add(v2v6())
	f.Fuzz(func(t *testing.T, data []byte) {
		src, dst, n, err := ParseProxyHeader(data)
		if err != nil {
			if n != 0 || src.IsValid() || dst.IsValid() {
				t.Fatalf("error %v with n=%d src=%v", err, n, src)
			}
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrProxyHeader) {
				t.Fatalf("unknown error %v", err)
			}
			return
		}
		if n <= 0 || n > len(data) || n > MaxProxyV2 {
			t.Fatalf("n %d of %d", n, len(data))
		}
		src2, dst2, n2, err2 := ParseProxyHeader(data[:n])
		if err2 != nil || n2 != n || src2 != src || dst2 != dst {
			t.Fatalf("header alone parses differently: %v %v %d", err2, src2, n2)
		}
		for i := 0; i < n; i++ {
			s, _, _, e := ParseProxyHeader(data[:i])
			if e == nil && s != src {
				t.Fatalf("prefix %d gives another address", i)
			}
		}
	})
}
