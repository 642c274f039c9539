package engine

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogReopenOnSIGUSR1: a real sluice writes its access log to a file;
// the file is moved away (as logrotate does) and SIGUSR1 makes sluice
// write the next lines to a new file at the configured path, while the
// moved file keeps what was written before.
func TestLogReopenOnSIGUSR1(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	sluiceBin, _ := buildBinaries(t)
	be := startBackend(t, backendOpts{})
	dir := t.TempDir()
	access := filepath.Join(dir, "access.log")
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sluice.toml")
	writeFile(t, cfg, []byte(`
workers = 1
[log]
level = "info"
error_log = "`+filepath.Join(dir, "error.log")+`"
access_log = "`+access+`"
[[server]]
listen = ["`+addr+`"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = "`+be.addr+`"
`))
	cmd := startChild(t, sluiceBin, "--config", cfg)
	waitListening(t, addr)

	tunnel := func(path string) {
		t.Helper()
		c, resp := openFrom(t, "127.0.0.1", addr, head(path))
		if statusOf(resp) != 101 {
			t.Fatalf("%s: %q", path, resp)
		}
		c.Close()
	}
	waitLine := func(file, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(file)
			if strings.Contains(string(b), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got %q; it holds:\n%s", file, want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tunnel("/ws/before")
	waitLine(access, "/ws/before")
	rotated := access + ".1"
	if err := os.Rename(access, rotated); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLine(filepath.Join(dir, "error.log"), "log files reopened")
	tunnel("/ws/after")
	waitLine(access, "/ws/after")
	old, _ := os.ReadFile(rotated)
	if !strings.Contains(string(old), "/ws/before") || strings.Contains(string(old), "/ws/after") {
		t.Fatalf("the moved file holds:\n%s", old)
	}
	if b, _ := os.ReadFile(access); strings.Contains(string(b), "/ws/before") {
		t.Fatalf("the new file holds lines from before the reopen:\n%s", b)
	}
}
