package handshake

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// computeAcceptSlow is the obvious formula, to check ComputeAccept against.
func computeAcceptSlow(key []byte) []byte {
	sum := sha1.Sum(append(append([]byte(nil), key...), acceptGUID...))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err    error
		status int
	}{
		{nil, 0},
		{ErrIncomplete, 0},
		{ErrHeadTooLarge, 431},
		{ErrTooManyHeaders, 431},
		{ErrMalformed, 400},
		{ErrBadRequestLine, 400},
		{ErrBadMethod, 400},
		{ErrBadTarget, 400},
		{ErrBadVersion, 400},
		{ErrBareLF, 400},
		{ErrObsFold, 400},
		{ErrSpaceBeforeColon, 400},
		{ErrNoColon, 400},
		{ErrBadHeaderName, 400},
		{ErrBadHeaderValue, 400},
		{ErrControlChar, 400},
		{ErrBadHost, 400},
		{ErrBadContentLength, 400},
		{ErrBadFraming, 400},
		{ErrHTTPVersion, 505},
		{ErrNoHost, 400},
		{ErrDuplicateHost, 400},
		{ErrMethod, 400},
		{ErrNotUpgrade, 426},
		{ErrUpgradeHTTP10, 400},
		{ErrUpgradeNotWebSocket, 400},
		{ErrConnectionNotUpgrade, 400},
		{ErrBadKey, 400},
		{ErrVersion, 426},
		{ErrRequestBody, 400},
		{ErrUpstreamMalformed, 502},
		{ErrUpstreamTooLarge, 502},
		{ErrUpstreamStatus, 502},
		{ErrUpstreamUpgrade, 502},
		{ErrUpstreamConnection, 502},
		{ErrUpstreamAccept, 502},
		{upstreamErr(ErrBareLF), 502},
		{errBadStatusLine, 502},
		{fmt.Errorf("conn 7: %w", ErrBadKey), 400},
		{fmt.Errorf("conn 7: %w", ErrObsFold), 400},
		{fmt.Errorf("conn 7: %w", ErrVersion), 426},
		{errors.New("something else"), 500},
	}
	for _, tc := range tests {
		if got := StatusOf(tc.err); got != tc.status {
			t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.status)
		}
	}
	// Every upstream twin of a syntax error is a 502 and says "upstream".
	for _, u := range upstreamSyntax {
		if StatusOf(u) != 502 || !strings.Contains(u.Error(), "upstream") {
			t.Errorf("%v: status %d", u, StatusOf(u))
		}
	}
}

func TestAppendErrorResponse(t *testing.T) {
	tests := []struct {
		status int
		err    error
		want   string
	}{
		{426, ErrVersion, "HTTP/1.1 426 Upgrade Required\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 56\r\n" +
			"Connection: close\r\n" +
			"Upgrade: websocket\r\n" +
			"Connection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\n" +
			"\r\n" +
			"426 Upgrade Required: unsupported Sec-WebSocket-Version\n"},
		{426, ErrNotUpgrade, "HTTP/1.1 426 Upgrade Required\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 68\r\n" +
			"Connection: close\r\n" +
			"Upgrade: websocket\r\n" +
			"Connection: Upgrade\r\n" +
			"\r\n" +
			"426 Upgrade Required: this endpoint only accepts WebSocket upgrades\n"},
		{400, ErrMethod, "HTTP/1.1 400 Bad Request\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 50\r\n" +
			"Connection: close\r\n" +
			"\r\n" +
			"400 Bad Request: websocket handshake must use GET\n"},
		{502, nil, "HTTP/1.1 502 Bad Gateway\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 16\r\n" +
			"Connection: close\r\n" +
			"\r\n" +
			"502 Bad Gateway\n"},
		{504, errors.New("upstream timed out\r\nSet-Cookie: evil=1\x00é"), "HTTP/1.1 504 Gateway Timeout\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 63\r\n" +
			"Connection: close\r\n" +
			"\r\n" +
			"504 Gateway Timeout: upstream timed out??Set-Cookie: evil=1???\n"},
		{0, nil, "HTTP/1.1 500 Internal Server Error\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 26\r\n" +
			"Connection: close\r\n" +
			"\r\n" +
			"500 Internal Server Error\n"},
	}
	var resp Response
	for _, tc := range tests {
		got := string(AppendErrorResponse(nil, tc.status, tc.err))
		if got != tc.want {
			t.Errorf("status %d, %v:\ngot  %q\nwant %q", tc.status, tc.err, got, tc.want)
			continue
		}
		// It is a valid response head whose Content-Length is the body.
		if err := ParseResponse([]byte(got), 0, &resp); err != nil {
			t.Errorf("does not parse: %v", err)
			continue
		}
		if body := got[resp.HeadLen:]; strconv.Itoa(len(body)) != strconv.FormatInt(resp.ContentLength, 10) {
			t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
		}
	}
	// Long details are cut, never unbounded.
	long := AppendErrorResponse(nil, 400, errors.New(strings.Repeat("x", 5000)))
	if len(long) > 400 {
		t.Errorf("long detail not cut: %d bytes", len(long))
	}
}

// TestEveryErrorHasAResponse: every sentinel yields a parseable response
// with the status StatusOf gives it.
func TestEveryErrorHasAResponse(t *testing.T) {
	var resp Response
	for _, row := range statusTable {
		if row.status == 0 {
			continue
		}
		out := AppendErrorResponse(nil, row.status, row.err)
		if err := ParseResponse(out, 0, &resp); err != nil || resp.Status != row.status {
			t.Errorf("%v: %v, status %d", row.err, err, resp.Status)
		}
	}
}
