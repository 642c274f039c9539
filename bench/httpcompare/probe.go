package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// errNotListening is a probe that found nothing accepting on the port yet:
// the one failure waitHTTP keeps retrying.
var errNotListening = errors.New("not listening")

// probeClient makes one request per connection, so a probe never leaves
// an idle keep-alive connection in the target during the measurement.
var probeClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// get fetches url once and returns the status and up to 64 KiB of body.
func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		if opErr := (*net.OpError)(nil); errors.As(err, &opErr) && opErr.Op == "dial" {
			return 0, nil, fmt.Errorf("%w: %v", errNotListening, err)
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

// waitHTTP polls url until it answers 200 with exactly want, and fails at
// once on any other answer (a 404 from a target that does not serve the
// path will not turn into a 200 by waiting). It gives up when c exits or
// timeout passes.
func waitHTTP(ctx context.Context, c *harness.Child, url string, want []byte, timeout time.Duration) error {
	return harness.WaitReady(ctx, c, url, timeout, func(ctx context.Context) error {
		status, body, err := get(ctx, url)
		switch {
		case err == nil && status == http.StatusOK && bytes.Equal(body, want):
			return nil
		case err == nil && status != http.StatusOK:
			return harness.Permanent(fmt.Errorf("GET %s: status %d, body %q", url, status, truncate(body, 200)))
		case err == nil:
			return harness.Permanent(fmt.Errorf("GET %s: 200 with %d bytes %q, want %d bytes %q", url, len(body), truncate(body, 80), len(want), truncate(want, 80)))
		case !errors.Is(err, errNotListening):
			return harness.Permanent(fmt.Errorf("GET %s: %w", url, err))
		}
		return err
	})
}

// truncate cuts b to at most n bytes, for error messages.
func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
