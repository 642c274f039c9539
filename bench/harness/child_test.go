package harness

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWaitReady(t *testing.T) {
	errRefused := errors.New("connection refused")
	errWrong := errors.New("status 404")
	for _, tc := range []struct {
		name  string
		fails int   // probes that fail before one succeeds
		err   error // what a failing probe returns
		want  string
	}{
		{"at once", 0, errRefused, ""},
		{"after retries", 3, errRefused, ""},
		{"permanent failure returned at once, unmarked", 1000, Permanent(errWrong), "status 404"},
		{"timeout names what and the last error", 1000, errRefused, "thing not ready after 200ms: connection refused"},
	} {
		calls := 0
		err := WaitReady(context.Background(), nil, "thing", 200*time.Millisecond, func(context.Context) error {
			calls++
			if calls > tc.fails {
				return nil
			}
			return tc.err
		})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if errors.Is(tc.err, errWrong) && calls != 1 {
			t.Errorf("%s: %d probes after a permanent error", tc.name, calls)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := WaitReady(ctx, nil, "thing", time.Minute, func(context.Context) error { return errRefused })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestPortsTake(t *testing.T) {
	// Hold a port, then ask from it: Take must skip it and never hand out
	// the same port twice.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := ln.Addr().(*net.TCPAddr).Port
	if held >= 32767 {
		t.Skipf("kernel gave port %d, at the top of the range", held)
	}
	p := Ports{Next: held}
	a, err := p.Take()
	if err != nil || a == held {
		t.Fatalf("first take: %d, %v (port %d is held)", a, err, held)
	}
	b, err := p.Take()
	if err != nil || b <= a {
		t.Errorf("second take: %d, %v after %d", b, err, a)
	}
	full := Ports{Next: 32768}
	if _, err := full.Take(); err == nil {
		t.Error("a port at or above 32768 handed out")
	}
}

func TestChildren(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset not installed")
	}
	var kids Children
	defer kids.StopAll()
	dir := t.TempDir()
	// A child that forks a grandchild and waits: Stop must end both.
	c, err := kids.Start("sh", 0, filepath.Join(dir, "sh.log"), "sh", "-c", "echo started; sleep 60 & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := c.Refresh(); err != nil {
			t.Fatal(err)
		}
		if len(c.Procs()) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	procs := c.Procs()
	if len(procs) < 2 {
		t.Fatalf("tree of sh -c 'sleep & wait': %+v", procs)
	}
	if c.Exited() || c.WaitErr() != nil {
		t.Fatalf("exited early: %v%s", c.WaitErr(), c.LogTail())
	}
	kids.Stop(c)
	if !c.Exited() {
		t.Error("still running after Stop")
	}
	// A killed grandchild stays in /proc as a zombie until init reaps it.
	for _, p := range procs {
		for end := time.Now().Add(5 * time.Second); p.Alive(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Errorf("%s (pid %d) outlived Stop", p.Comm, p.PID)
				break
			}
		}
	}
	if tail := c.LogTail(); !strings.Contains(tail, "started") || !strings.Contains(tail, c.LogPath()) {
		t.Errorf("log tail: %q", tail)
	}
	if err := os.WriteFile(filepath.Join(dir, "error.log"), []byte("\n[warn] nginx said\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if logs := c.Logs(); logs != "started\n[warn] nginx said" {
		t.Errorf("logs: %q", logs)
	}
	if err := c.Refresh(); err == nil || !strings.HasPrefix(err.Error(), "sh exited") {
		t.Errorf("Refresh after Stop: %v", err)
	}
	kids.Stop(nil) // a no-op
}
