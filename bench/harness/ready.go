package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// permanent is a probe error that waiting will not cure.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as a probe failure that waiting will not cure (a 404
// from a target that does not serve the path will not turn into a 200):
// WaitReady returns err at once instead of probing again.
func Permanent(err error) error { return permanent{err} }

// WaitReady calls probe every 50 ms until it returns nil. It gives up at
// once on an error marked Permanent (returning the error unmarked), when
// c exits (with the end of its log), when ctx is done, or when timeout
// passes (naming what, with the last probe error). c may be nil for a
// process the harness did not start.
func WaitReady(ctx context.Context, c *Child, what string, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if p := (permanent{}); errors.As(err, &p) {
			return p.err
		}
		if c != nil && c.Exited() {
			return fmt.Errorf("%s exited while starting: %v%s", c.name, c.WaitErr(), c.LogTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ports hands out listen ports on 127.0.0.1, from Next up: a new one for
// every start, so a target never has to rebind a port that TIME_WAIT
// sockets of its predecessor still name. They are below the ephemeral
// range (32768-60999 by default), so no outgoing connection of the run
// takes one first.
type Ports struct {
	// Next is the lowest port not handed out yet.
	Next int
}

// Take returns the next port that nothing listens on, or an error when
// none is left below 32768.
func (f *Ports) Take() (int, error) {
	for ; f.Next < 32768; f.Next++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(f.Next))
		if err != nil {
			continue
		}
		_ = ln.Close()
		p := f.Next
		f.Next++
		return p, nil
	}
	return 0, errors.New("no free port left below 32768")
}
