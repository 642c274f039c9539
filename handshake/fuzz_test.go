package handshake

import (
	"bytes"
	"testing"
)

// FuzzParseRequest: ParseRequest never panics on any bytes; what it accepts
// stays within buf and limit; the rewrite of anything accepted is a valid
// head with no stray CR/LF; a request CheckUpgrade accepts is rewritten into
// one CheckUpgrade still accepts. Seeds: testdata/fuzz/FuzzParseRequest.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(browserHead))
	f.Add([]byte(ws()))
	var req, again Request
	fwd := &Forward{ClientAddr: []byte("2001:db8::1"), Proto: "https", Host: []byte("backend:9000")}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Two limits: the usual one, and one that cuts most inputs short so
		// the too-large paths get exercised too.
		for _, limit := range []int{8192, len(data)/2 + 1} {
			err := ParseRequest(data, limit, &req)
			if st := StatusOf(err); st == 500 {
				t.Fatalf("unknown error %v", err)
			}
			if err != nil {
				continue
			}
			if req.HeadLen > len(data) || req.HeadLen > limit || req.HeadLen < 4 {
				t.Fatalf("HeadLen %d, len %d, limit %d", req.HeadLen, len(data), limit)
			}
			if !bytes.HasSuffix(data[:req.HeadLen], []byte("\r\n\r\n")) {
				t.Fatalf("head does not end in CRLFCRLF")
			}
			upgradeOK := CheckUpgrade(&req) == nil
			out := AppendUpstreamRequest(nil, &req, fwd)
			checkUpstreamRequest(t, out)
			if err := ParseRequest(out, len(out), &again); err != nil {
				if err == ErrTooManyHeaders {
					continue // over the cap by sluice's own fields; checkUpstreamRequest vetted it
				}
				t.Fatalf("rewrite does not re-parse: %v\n%q", err, out)
			}
			if upgradeOK {
				if err := CheckUpgrade(&again); err != nil {
					t.Fatalf("rewrite of a valid upgrade fails CheckUpgrade: %v\n%q", err, out)
				}
			}
		}
	})
}

// FuzzParseResponse: ParseResponse never panics; what it accepts stays
// within buf and limit; the relayed head re-parses with the same status and
// body length; VerifyUpgrade never panics.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(upstream101))
	f.Add([]byte(resp101()))
	var resp, again Response
	key := []byte(rfcKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, limit := range []int{16384, len(data)/2 + 1} {
			err := ParseResponse(data, limit, &resp)
			if st := StatusOf(err); st != 0 && st != 502 {
				t.Fatalf("upstream error %v maps to %d", err, st)
			}
			if err != nil {
				continue
			}
			if resp.HeadLen > len(data) || resp.HeadLen > limit {
				t.Fatalf("HeadLen %d, len %d, limit %d", resp.HeadLen, len(data), limit)
			}
			_ = VerifyUpgrade(&resp, key)
			out := AppendRelayedResponse(nil, &resp)
			if err := ParseResponse(out, len(out), &again); err != nil {
				t.Fatalf("relayed head does not re-parse: %v\n%q", err, out)
			}
			if again.HeadLen != len(out) || again.Status != resp.Status || BodyLength(&again) != BodyLength(&resp) {
				t.Fatalf("relayed head differs: status %d/%d body %d/%d", again.Status, resp.Status, BodyLength(&again), BodyLength(&resp))
			}
			for i := range again.Headers {
				if k := again.kinds[i]; k == kUpgrade || k == kHopByHop {
					t.Fatalf("hop-by-hop header relayed: %q", out)
				}
			}
		}
	})
}
