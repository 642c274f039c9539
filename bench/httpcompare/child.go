package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// child is a process the harness started (a target or the backend), pinned
// to one CPU with taskset, its stdout and stderr going to one log file.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once Wait returned
	waitErr error
	// procs is the process tree as last seen by refresh: the started
	// process (taskset execs its command, so the PID stays) and its
	// descendants, e.g. an nginx worker.
	procs []proc
}

// children is every child still running, so that a deferred stopAll or a
// signal handler can stop them; nothing else is ever signalled.
type children struct {
	mu   sync.Mutex
	list []*child
}

// start runs argv pinned to cpu. The child gets its own process group, so
// a Ctrl-C at the terminal reaches only the harness, which then stops its
// children in order; and SIGKILL when the harness dies, so a crash leaves
// nothing behind (the signal travels across taskset's exec).
func (cs *children) start(name string, cpu int, logPath string, argv ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := append([]string{"-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
	return c, nil
}

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// refresh re-reads the child's process tree.
func (c *child) refresh() error {
	if c.exited() {
		return fmt.Errorf("%s exited: %v%s", c.name, c.waitErr, c.logTail())
	}
	ps, err := descendants(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return fmt.Errorf("%s: pid %d not in /proc", c.name, c.cmd.Process.Pid)
	}
	c.procs = ps
	return nil
}

// logTail returns the end of the child's log, for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n--- " + c.logPath + " ---\n" + string(b)
}

// stop ends the child: SIGTERM to the process it started, SIGKILL after
// stopGrace, then SIGKILL to any descendant that outlived it (an nginx
// worker whose master was killed). Descendants are the ones recorded by
// refresh and still alive with the same start time: never a process that
// merely reused a PID.
func (c *child) stop() {
	_ = c.refresh() // catch a worker born since the last look
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(stopGrace):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	for _, p := range c.procs {
		if p.PID != c.cmd.Process.Pid && p.alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// stop stops one child and forgets it.
func (cs *children) stop(c *child) {
	if c == nil {
		return
	}
	c.stop()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i, x := range cs.list {
		if x == c {
			cs.list = append(cs.list[:i], cs.list[i+1:]...)
			break
		}
	}
}

// stopAll stops every child still running, newest first.
func (cs *children) stopAll() {
	cs.mu.Lock()
	list := append([]*child(nil), cs.list...)
	cs.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		cs.stop(list[i])
	}
}

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
func waitHTTP(ctx context.Context, c *child, url string, want []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		status, body, err := get(ctx, url)
		switch {
		case err == nil && status == http.StatusOK && bytes.Equal(body, want):
			return nil
		case err == nil && status != http.StatusOK:
			return fmt.Errorf("GET %s: status %d, body %q", url, status, truncate(body, 200))
		case err == nil:
			return fmt.Errorf("GET %s: 200 with %d bytes %q, want %d bytes %q", url, len(body), truncate(body, 80), len(want), truncate(want, 80))
		case !errors.Is(err, errNotListening):
			return fmt.Errorf("GET %s: %w", url, err)
		}
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited while starting: %v%s", c.name, c.waitErr, c.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", url, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePorts hands out listen ports: a new one for every start, so a target
// never has to rebind a port that TIME_WAIT sockets of its predecessor
// still name. They are below the ephemeral range (32768-60999 by default),
// so no outgoing connection of the run takes one first.
type freePorts struct{ next int }

func (f *freePorts) take() (int, error) {
	for ; f.next < 32768; f.next++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(f.next))
		if err != nil {
			continue
		}
		_ = ln.Close()
		p := f.next
		f.next++
		return p, nil
	}
	return 0, errors.New("no free port left below 32768")
}
