package handshake

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) lets
// an L4 balancer in front of sluice pass on the client's address: a header
// before the first byte of the client's stream. Whoever can write it
// chooses the address every allow/deny and limit sees, so the engine
// parses it only on listeners configured for it and believes it only from
// trusted peers; this file only reads bytes.

// proxyV2Sig is the 12-byte signature of a version 2 header. It cannot
// start a valid HTTP request (it begins with CRLF and holds a NUL).
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// MaxProxyV1 is the longest version 1 header the spec allows, CRLF
// included ("PROXY UNKNOWN" with two IPv6 addresses and ports).
const MaxProxyV1 = 107

// MaxProxyV2 caps a version 2 header (16 fixed bytes plus addresses and
// TLVs). The spec allows 65535 bytes of TLVs; sluice reads none of them and
// refuses more than this rather than buffer what a peer declares.
const MaxProxyV2 = 16 + 2048

// ProxyHeaderError is a malformed PROXY header; every one matches
// ErrProxyHeader (→ 400).
type ProxyHeaderError struct{ msg string }

func (e *ProxyHeaderError) Error() string { return "malformed PROXY protocol header: " + e.msg }

// Is makes every ProxyHeaderError match ErrProxyHeader.
func (e *ProxyHeaderError) Is(target error) bool { return target == ErrProxyHeader }

// ErrProxyHeader: the connection did not start with a valid PROXY protocol
// header on a listener that requires one. → 400
var ErrProxyHeader error = &ProxyHeaderError{"expected a PROXY protocol header"}

func proxyErr(msg string) error { return &ProxyHeaderError{msg} }

// ParseProxyHeader reads a PROXY protocol v1 or v2 header at the start of
// buf. It returns the source and destination the balancer saw and n, the
// header's length, which the caller discards before parsing the request.
//   - ErrIncomplete: buf is a prefix of a header that may still be valid;
//     wait for more bytes.
//   - an error matching ErrProxyHeader: not a header, or a broken one.
//   - src and dst invalid (zero) with err nil: a valid header that carries
//     no address (v1 "UNKNOWN", v2 LOCAL or an unsupported family, e.g. a
//     health check by the balancer itself): use the TCP peer's address.
//
// It never allocates from a length the peer declared.
func ParseProxyHeader(buf []byte) (src, dst netip.AddrPort, n int, err error) {
	if len(buf) == 0 {
		return src, dst, 0, ErrIncomplete
	}
	if buf[0] == '\r' {
		return parseProxyV2(buf)
	}
	return parseProxyV1(buf)
}

func parseProxyV1(buf []byte) (src, dst netip.AddrPort, n int, err error) {
	const prefix = "PROXY "
	if m := min(len(buf), len(prefix)); string(buf[:m]) != prefix[:m] {
		return src, dst, 0, ErrProxyHeader
	}
	end := bytes.Index(buf[:min(len(buf), MaxProxyV1)], []byte("\r\n"))
	if end < 0 {
		if len(buf) >= MaxProxyV1 {
			return src, dst, 0, proxyErr("v1 line too long")
		}
		if bytes.IndexByte(buf, '\n') >= 0 {
			return src, dst, 0, proxyErr("v1 line not terminated by CRLF")
		}
		return src, dst, 0, ErrIncomplete
	}
	n = end + 2
	f := bytes.Split(buf[len(prefix):end], []byte(" "))
	if len(f) >= 1 && string(f[0]) == "UNKNOWN" {
		return src, dst, n, nil // the rest of the line is ignored (spec)
	}
	if len(f) != 5 {
		return src, dst, 0, proxyErr("v1 wants PROXY TCP4|TCP6 src dst sport dport")
	}
	var v6 bool
	switch string(f[0]) {
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return src, dst, 0, proxyErr("v1 protocol is not TCP4, TCP6 or UNKNOWN")
	}
	sa, ok1 := v1Addr(f[1], v6)
	da, ok2 := v1Addr(f[2], v6)
	sp, ok3 := v1Port(f[3])
	dp, ok4 := v1Port(f[4])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return src, dst, 0, proxyErr("v1 address or port invalid")
	}
	return netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp), n, nil
}

func v1Addr(b []byte, v6 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" || a.Is4() == v6 {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// v1Port reads a decimal port without leading zeros (the spec forbids them).
func v1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	p, err := strconv.Atoi(string(b))
	if err != nil || p > 65535 {
		return 0, false
	}
	return uint16(p), true
}

func parseProxyV2(buf []byte) (src, dst netip.AddrPort, n int, err error) {
	if m := min(len(buf), len(proxyV2Sig)); !bytes.Equal(buf[:m], proxyV2Sig[:m]) {
		return src, dst, 0, ErrProxyHeader
	}
	if len(buf) < 16 {
		return src, dst, 0, ErrIncomplete
	}
	verCmd, fam := buf[12], buf[13]
	size := int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 {
		return src, dst, 0, proxyErr("v2 version is not 2")
	}
	cmd := verCmd & 0x0f
	if cmd > 1 {
		return src, dst, 0, proxyErr("v2 command is neither LOCAL nor PROXY")
	}
	if 16+size > MaxProxyV2 {
		return src, dst, 0, proxyErr("v2 header longer than sluice accepts")
	}
	if len(buf) < 16+size {
		return src, dst, 0, ErrIncomplete
	}
	n = 16 + size
	body := buf[16:n]
	if cmd == 0 { // LOCAL: the balancer's own connection
		return src, dst, n, nil
	}
	switch fam {
	case 0x11: // TCP over IPv4
		if size < 12 {
			return src, dst, 0, proxyErr("v2 IPv4 block too short")
		}
		sa := netip.AddrFrom4([4]byte(body[0:4]))
		da := netip.AddrFrom4([4]byte(body[4:8]))
		return netip.AddrPortFrom(sa, binary.BigEndian.Uint16(body[8:10])),
			netip.AddrPortFrom(da, binary.BigEndian.Uint16(body[10:12])), n, nil
	case 0x21: // TCP over IPv6
		if size < 36 {
			return src, dst, 0, proxyErr("v2 IPv6 block too short")
		}
		sa := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		da := netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		return netip.AddrPortFrom(sa, binary.BigEndian.Uint16(body[32:34])),
			netip.AddrPortFrom(da, binary.BigEndian.Uint16(body[34:36])), n, nil
	}
	// UNSPEC, UDP, unix sockets: valid, but no TCP address to believe.
	return src, dst, n, nil
}
