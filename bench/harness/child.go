package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Child is a process the harness started (a target or the backend), pinned
// to one CPU with taskset, its stdout and stderr going to one log file.
type Child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once Wait returned
	waitErr error
	// procs is the process tree as last seen by Refresh: the started
	// process (taskset execs its command, so the PID stays) and its
	// descendants, e.g. an nginx worker.
	procs []Proc
}

// Name is the name the child was started under, for messages.
func (c *Child) Name() string { return c.name }

// LogPath is the file that holds the child's stdout and stderr.
func (c *Child) LogPath() string { return c.logPath }

// Procs is the child's process tree as the last Refresh saw it, the
// started process first.
func (c *Child) Procs() []Proc { return c.procs }

// Children is every child still running, so that a deferred StopAll or a
// signal handler can stop them; nothing else is ever signalled. The zero
// value is ready to use.
type Children struct {
	mu   sync.Mutex
	list []*Child
}

// Start runs argv pinned to cpu, its output going to a new file at
// logPath. The child gets its own process group, so a Ctrl-C at the
// terminal reaches only the harness, which then stops its children in
// order; and SIGKILL when the harness dies, so a crash leaves nothing
// behind (the signal travels across taskset's exec).
func (cs *Children) Start(name string, cpu int, logPath string, argv ...string) (*Child, error) {
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
	c := &Child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
	return c, nil
}

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// WaitErr is what waiting for the child returned (an *exec.ExitError for
// a non-zero exit), nil while it runs.
func (c *Child) WaitErr() error {
	select {
	case <-c.done:
		return c.waitErr
	default:
		return nil
	}
}

// Refresh re-reads the child's process tree into Procs. It fails when the
// child has exited, with the end of its log in the message.
func (c *Child) Refresh() error {
	if c.Exited() {
		return fmt.Errorf("%s exited: %v%s", c.name, c.waitErr, c.LogTail())
	}
	ps, err := Descendants(c.cmd.Process.Pid)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return fmt.Errorf("%s: pid %d not in /proc", c.name, c.cmd.Process.Pid)
	}
	c.procs = ps
	return nil
}

// LogTail returns the end of the child's log (2,000 bytes at most) under
// a header line naming the file, for error messages; "" for an empty log.
func (c *Child) LogTail() string {
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

// Logs is what the child wrote to its log file and, for nginx, to
// error.log beside it, trimmed and joined, cut to 4,000 bytes: for the
// report once the child is stopped.
func (c *Child) Logs() string {
	var logs []string
	for _, f := range []string{c.logPath, filepath.Join(filepath.Dir(c.logPath), "error.log")} {
		if b, err := os.ReadFile(f); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				logs = append(logs, s)
			}
		}
	}
	s := strings.Join(logs, "\n")
	if len(s) > 4000 {
		s = s[:4000] + "\n[...]"
	}
	return s
}

// stop ends the child: SIGTERM to the process it started, SIGKILL after
// stopGrace, then SIGKILL to any descendant that outlived it (an nginx
// worker whose master was killed). Descendants are the ones recorded by
// Refresh and still alive with the same start time: never a process that
// merely reused a PID.
func (c *Child) stop() {
	_ = c.Refresh() // catch a worker born since the last look
	if !c.Exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(stopGrace):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	for _, p := range c.procs {
		if p.PID != c.cmd.Process.Pid && p.Alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// Stop stops one child and forgets it; a nil c is a no-op.
func (cs *Children) Stop(c *Child) {
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

// StopAll stops every child still running, newest first.
func (cs *Children) StopAll() {
	cs.mu.Lock()
	list := append([]*Child(nil), cs.list...)
	cs.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		cs.Stop(list[i])
	}
}

// NotifyContext returns a context that the first SIGINT or SIGTERM
// cancels, so the current measurement ends and the caller's deferred
// cleanup stops every child; it says so on log, prefixed with prog. A
// second signal stops the children at once and exits with status 130.
// The returned func stops the signal handling and cancels the context.
func (cs *Children) NotifyContext(log io.Writer, prog string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for s := range sig {
			n++
			if n == 1 {
				fmt.Fprintf(log, "\n%s: %v: stopping (again to force)\n", prog, s)
				cancel()
				continue
			}
			cs.StopAll()
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}
