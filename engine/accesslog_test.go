package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-proxy/sluice/configs"
)

// TestAccessLog checks one line per finished tunnel and per refused
// handshake, with the fields an operator needs.
func TestAccessLog(t *testing.T) {
	be := startBackend(t, backendOpts{})
	addr := freeAddr(t)
	cfg, err := configs.Parse([]byte(strings.ReplaceAll(simpleConfig(be.addr), "{{listen}}", addr)), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	e, err := New(cfg, Logs{Access: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	}()
	waitListening(t, addr)
	p := &proxy{addr: addr, e: e}

	c := dialWS(t, p, "/ws/room", nil, nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("12345"))
	_, _, _ = c.ReadMessage()
	c.Close()
	rawExchange(t, addr, strings.Replace(upgradeHead, "/ws/chat", "/nowhere", 1)+"\r\n", time.Second)

	deadline := time.Now().Add(3 * time.Second)
	for logs.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var tunnel, refused map[string]any
	for _, e := range logs.All() {
		switch e.Message {
		case "tunnel":
			tunnel = e.ContextMap()
		case "refused":
			refused = e.ContextMap()
		}
	}
	if tunnel == nil || refused == nil {
		t.Fatalf("want a tunnel line and a refused line, got %v", logs.All())
	}
	for k, want := range map[string]any{
		"path": "/ws/room", "upstream": be.addr, "status": "101", "end": "client_closed",
	} {
		if tunnel[k] != want {
			t.Errorf("tunnel %s = %v, want %v (line %v)", k, tunnel[k], want, tunnel)
		}
	}
	// The client sent one 5-byte frame (11 bytes masked) and got it back (7 bytes).
	if in, _ := tunnel["bytes_in"].(int64); in < 11 {
		t.Errorf("bytes_in = %v", tunnel["bytes_in"])
	}
	if out, _ := tunnel["bytes_out"].(int64); out < 7+129 {
		t.Errorf("bytes_out = %v, want the 101 head and the echo", tunnel["bytes_out"])
	}
	if !strings.HasPrefix(tunnel["client"].(string), "127.0.0.1:") {
		t.Errorf("client = %v", tunnel["client"])
	}
	if refused["status"] != int64(404) || refused["path"] != "/nowhere" {
		t.Errorf("refused line %v", refused)
	}
}
