package upstream

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// KeyKind says which part of a request the hash method hashes.
type KeyKind uint8

const (
	// KeyNone: the method hashes nothing (round_robin, least_conn, random).
	KeyNone KeyKind = iota
	// KeyClientNet: ip_hash, the first three octets of the client's IPv4
	// address or its whole IPv6 address. Not written in a hash_key.
	KeyClientNet
	// KeyRemoteAddr: $remote_addr, the client's address as text.
	KeyRemoteAddr
	// KeyHeader: $http_NAME, the first header NAME ("_" matches "-",
	// case-insensitively).
	KeyHeader
	// KeyCookie: $cookie_NAME, the value of cookie NAME.
	KeyCookie
	// KeyArg: $arg_NAME, the raw value of query argument NAME.
	KeyArg
	// KeyURI: $uri, the request path as sent (without the query; nginx
	// hashes its normalized, decoded path).
	KeyURI
)

// KeySource is a parsed hash_key: what the engine extracts from each
// request before it hashes it with KeyOf.
type KeySource struct {
	Kind KeyKind
	// Name is the header, cookie or argument name for KeyHeader,
	// KeyCookie and KeyArg. For KeyHeader it is already in header form:
	// "x-user-id" for $http_x_user_id.
	Name string
}

// ParseHashKey reads a hash_key written in nginx variable syntax:
// "$remote_addr", "$http_NAME", "$cookie_NAME", "$arg_NAME" or "$uri".
// One variable only: nginx's hash takes any string with variables in it,
// sluice the five that make sense for a WebSocket upgrade.
func ParseHashKey(s string) (KeySource, error) {
	switch s {
	case "$remote_addr":
		return KeySource{Kind: KeyRemoteAddr}, nil
	case "$uri", "$request_uri", "$document_uri":
		return KeySource{Kind: KeyURI}, nil
	}
	for _, p := range []struct {
		prefix string
		kind   KeyKind
	}{{"$http_", KeyHeader}, {"$cookie_", KeyCookie}, {"$arg_", KeyArg}} {
		name, ok := strings.CutPrefix(s, p.prefix)
		if !ok {
			continue
		}
		if !validKeyName(name) {
			return KeySource{}, fmt.Errorf("hash key %q: invalid name %q", s, name)
		}
		if p.kind == KeyHeader {
			name = strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		}
		return KeySource{Kind: p.kind, Name: name}, nil
	}
	return KeySource{}, fmt.Errorf("hash key %q: want $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME or $uri", s)
}

func validKeyName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return n != ""
}

// Key is what one request contributes to a hashing method, reduced to a
// few words: the request's bytes are not kept. The zero Key means "no
// key", and the hashing methods then balance that request round robin
// (nginx does the same for an empty hash key).
type Key struct {
	crc   uint32   // crc32 (IEEE) of the key bytes
	shift uint32   // x^(8·len) mod the CRC polynomial: lets rehashes prepend bytes (crc32Combine)
	net   [16]byte // ip_hash: the bytes of the client's network
	netN  uint8    // 3 for IPv4, 16 for IPv6
	set   bool
}

// KeyOf returns the Key of b for the hash method. An empty b is no key.
// It does not allocate and does not keep b.
func KeyOf(b []byte) Key {
	if len(b) == 0 {
		return Key{}
	}
	return Key{crc: crcUpdate(0, b), shift: x8nModP(uint64(len(b))), set: true}
}

// AddrKey returns the ip_hash Key of a client address: nginx hashes the
// first three octets of an IPv4 address, so that a client whose address
// changes inside its /24 (a carrier NAT pool) keeps its server, and all
// sixteen bytes of an IPv6 one. An IPv4-mapped IPv6 address counts as
// IPv4. An invalid address is no key.
func AddrKey(a netip.Addr) Key {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		k := Key{netN: 3, set: true}
		copy(k.net[:], b[:3])
		return k
	case a.Is6():
		return Key{net: a.As16(), netN: 16, set: true}
	}
	return Key{}
}

// crcUpdate is crc32 (IEEE) of b continued from crc, byte by byte. Keys
// are short, and unlike crc32.Update it keeps b on the caller's stack.
func crcUpdate(crc uint32, b []byte) uint32 {
	crc = ^crc
	for _, c := range b {
		crc = crc32.IEEETable[byte(crc)^c] ^ (crc >> 8)
	}
	return ^crc
}

// multModP multiplies two polynomials modulo the (reflected) CRC-32
// polynomial, as zlib's multmodp.
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crc32.IEEE
		} else {
			b >>= 1
		}
	}
	return p
}

// x2nTable[k] is x^(2^k) mod P, as zlib's x2n_table.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for n := 1; n < 32; n++ {
		p = multModP(p, p)
		t[n] = p
	}
	return t
}()

// x8nModP is x^(8·n) mod P: the operator that shifts a CRC over n zero
// bytes (zlib's x2nmodp(n, 3)).
func x8nModP(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	k := 3
	for n != 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}

// crc32Combine returns crc32(A || B) from crc32(A), crc32(B) and the
// operator of len(B) (zlib's crc32_combine_op).
func crc32Combine(crcA, crcB, opB uint32) uint32 { return multModP(opB, crcA) ^ crcB }

// rehashCRC is crc32 of the decimal of n followed by the key, which is
// what ngx_http_upstream_hash_module hashes on its n-th rehash; only the
// key's crc is kept, so the prefix is combined in rather than rehashed.
func (k *Key) rehashCRC(n uint32) uint32 {
	if n == 0 {
		return k.crc
	}
	var d [10]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return crc32Combine(crcUpdate(0, d[i:]), k.crc, k.shift)
}

// ring is a ketama continuum, nginx's "hash ... consistent"
// (ngx_http_upstream_hash_module.c, compatible with Cache::Memcached::Fast):
// every server gets 160 points per unit of weight; point j of a server is
// crc32(HOST "\0" PORT PREV), PREV being point j-1 as 4 little-endian
// bytes (0 for the first). A key goes to the first point at or after its
// crc32, wrapping around.
//
// It depends on nothing but the servers' identities and weights, never on
// a per-process seed or a map's order, so every sluice instance with the
// same servers maps a key to the same server, before and after restarts;
// adding or removing one of N servers moves about 1/N of the keys.
type ring struct {
	hash []uint32 // sorted
	srv  []uint16 // tier-local server index of each point
}

// maxRingPoints bounds a ring's memory (6 bytes a point). Past it, every
// server gets proportionally fewer points than nginx's 160 per weight.
const maxRingPoints = 1 << 20

func newRing(servers []*Server) ring {
	total := int64(0)
	for _, s := range servers {
		if !s.down {
			total += s.weight
		}
	}
	per := int64(160)
	if total*per > maxRingPoints {
		per = max(1, maxRingPoints/total)
	}
	type point struct {
		hash uint32
		srv  uint16
	}
	var pts []point
	var prev [4]byte
	for i, s := range servers {
		if s.down {
			continue // nginx keeps them and skips them; their keys move either way
		}
		host, port := s.id, ""
		if j := strings.LastIndexByte(s.id, ':'); j >= 0 {
			host, port = s.id[:j], s.id[j+1:]
		}
		base := crcUpdate(0, []byte(host))
		base = crcUpdate(base, []byte{0})
		base = crcUpdate(base, []byte(port))
		binary.LittleEndian.PutUint32(prev[:], 0)
		for j := int64(0); j < s.weight*per; j++ {
			h := crcUpdate(base, prev[:])
			pts = append(pts, point{h, uint16(i)})
			binary.LittleEndian.PutUint32(prev[:], h)
		}
	}
	// Equal hashes keep the first server in configuration order (nginx's
	// qsort leaves that order unspecified; a stable sort fixes it).
	slices.SortStableFunc(pts, func(a, b point) int { return cmp.Compare(a.hash, b.hash) })
	r := ring{hash: make([]uint32, 0, len(pts)), srv: make([]uint16, 0, len(pts))}
	for i, p := range pts {
		if i > 0 && p.hash == pts[i-1].hash {
			continue
		}
		r.hash = append(r.hash, p.hash)
		r.srv = append(r.srv, p.srv)
	}
	return r
}

// find returns the index of the first point at or after h (len when none:
// the caller wraps).
func (r *ring) find(h uint32) int {
	lo, hi := 0, len(r.hash)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hash[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// ringID is a server's identity on the ring: the configured "host:port"
// when host is an IP literal (so the ring is nginx's for the same
// config), the resolved "ip:port" when it is a name, so that instances
// which got the addresses of a name in different orders still agree.
func ringID(configured string, addr netip.AddrPort) string {
	host, _, err := net.SplitHostPort(configured)
	if err == nil {
		if _, err := netip.ParseAddr(host); err == nil {
			return configured
		}
	}
	return addr.String()
}
