package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/ws/\"\n  proxy_pass = \"127.0.0.1:9000\"\n  read_timeout = \"36xx\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"version", []string{"version"}, 0, "sluice dev", ""},
		{"check example", []string{"check", "-c", "../../configs/loadbalanced.toml"}, 0, "test is successful", ""},
		{"check embedded default", []string{"check", "../../configs/default.toml"}, 0, "test is successful", ""},
		{"check bad value", []string{"check", "-c", bad}, 1, "", "bad.toml:6:3: server[0].location[0].read_timeout"},
		{"check missing file", []string{"check", "-c", filepath.Join(dir, "nope.toml")}, 1, "", "nope.toml"},
		{"check without file", []string{"check"}, 2, "", "usage: sluice check -c FILE"},
		{"unknown flag", []string{"--no-such-flag"}, 2, "", "flag provided but not defined"},
		{"bad duration flag", []string{"--read-timeout", "soon"}, 2, "", "flag -read-timeout: invalid duration"},
		{"config and proxy", []string{"--config", "../../configs/socket.toml", "--proxy", "/ws/=127.0.0.1:1"}, 1, "", "cannot be combined with --config"},
		{"bad proxy", []string{"--proxy", "ws=127.0.0.1:1"}, 1, "", "--proxy"},
		{"stray argument", []string{"serve"}, 2, "", "unexpected argument"},
		{"bench help", []string{"bench", "-h"}, 0, "Usage: sluice bench MODE [flags] ws[s]://HOST:PORT/PATH", ""},
		{"bench without mode", []string{"bench"}, 2, "", "missing MODE"},
		{"bench bad mode", []string{"bench", "flood", "ws://127.0.0.1:1/"}, 2, "", "want idle, rate, closed, handshake or bulk"},
		{"bench without URL", []string{"bench", "rate", "-c", "1"}, 2, "", "missing the target URL"},
		{"bench refused", []string{"bench", "closed", "-q", "-c", "1", "-d", "100ms", "ws://127.0.0.1:1/"}, 1, "errors   1 (dial 1)", "sluice bench: no message was echoed"},
		{"usage names bench", []string{"-h"}, 0, "", "sluice bench MODE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tt.stdout)
			}
			if !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tt.stderr)
			}
		})
	}
}
