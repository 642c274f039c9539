package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/bench/harness"
)

// upgradeProbe is a minimal WebSocket upgrade (RFC 6455 section 1.3's
// sample key): a 101 back means the whole path, proxy and backend, is up.
const upgradeProbe = "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// probe tries one upgrade through addr and returns nil on a 101.
func probe(addr, path string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(conn, upgradeProbe, path, addr); err != nil {
		return err
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if f := strings.Fields(status); len(f) < 2 || f[1] != "101" {
		return fmt.Errorf("upgrade answered %q", strings.TrimSpace(status))
	}
	return nil
}

// waitReady probes addr until an upgrade succeeds, the child exits or
// timeout passes. Every failure is worth another try: a proxy that is
// still starting refuses the connection or answers 502.
func waitReady(ctx context.Context, c *harness.Child, addr, path string, timeout time.Duration) error {
	name := addr
	if c != nil {
		name = c.Name()
	}
	return harness.WaitReady(ctx, c, name, timeout, func(context.Context) error { return probe(addr, path) })
}
