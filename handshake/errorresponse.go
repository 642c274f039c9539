package handshake

import (
	"errors"
	"net/http"
	"strconv"
)

// maxDetail caps the error text put in a response body.
const maxDetail = 200

// AppendErrorResponse appends a complete small HTTP/1.1 response for status:
// the status line, Content-Type text/plain; charset=utf-8, Content-Length,
// Connection: close, the headers the error requires, and a one-line body
// "<status> <reason>: <detail>\n" where detail is err's message (just
// "<status> <reason>\n" when err is nil). The reason phrase comes from
// net/http.StatusText; a status outside 100..999 is sent as 500.
//
// Extra headers:
//   - every 426 gets "Upgrade: websocket" and "Connection: Upgrade": RFC 9110
//     §15.5.22 says a 426 MUST send Upgrade, and §7.8 that Upgrade MUST come
//     with the "upgrade" connection option. Two Connection lines are one list
//     ("close, Upgrade", RFC 9110 §5.3).
//   - ErrVersion adds "Sec-WebSocket-Version: 13" (RFC 6455 §4.2.2), which
//     tells a client the version to retry with.
//
// The detail never carries client bytes: this package's messages are
// constant strings, and for any other error (a caller's wrapped one) every
// byte outside printable ASCII is replaced with '?' and the text is cut at
// 200 bytes, so no CR/LF from anywhere can end up splitting the response.
// Allocation-free for this package's errors.
func AppendErrorResponse(dst []byte, status int, err error) []byte {
	if status < 100 || status > 999 {
		status = 500
	}
	reason := http.StatusText(status)
	if reason == "" {
		reason = "Unknown Status"
	}
	var detail string
	if err != nil {
		detail = err.Error()
		if len(detail) > maxDetail {
			detail = detail[:maxDetail]
		}
	}
	// Body: "NNN Reason[: detail]\n".
	bodyLen := 3 + 1 + len(reason) + 1
	if err != nil {
		bodyLen += 2 + len(detail)
	}

	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	if status == http.StatusUpgradeRequired {
		dst = append(dst, "Upgrade: websocket\r\nConnection: Upgrade\r\n"...)
		if errors.Is(err, ErrVersion) {
			dst = append(dst, "Sec-WebSocket-Version: 13\r\n"...)
		}
	}
	dst = append(dst, "\r\n"...)

	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	if err != nil {
		dst = append(dst, ": "...)
		for i := 0; i < len(detail); i++ {
			c := detail[i]
			if c < 0x20 || c >= 0x7f {
				c = '?'
			}
			dst = append(dst, c)
		}
	}
	return append(dst, '\n')
}
