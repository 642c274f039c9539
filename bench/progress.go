package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress draws what a run is doing: on a terminal, one line redrawn in
// place five times a second; elsewhere (a pipe, a file, a test's buffer),
// one plain line per second, which logs read well.
type progress struct {
	w     io.Writer
	r     *run
	tty   bool
	every time.Duration
	total time.Duration // warmup + window

	lastEchoes int64
	lastAt     time.Time
	rate       float64
}

func newProgress(w io.Writer, r *run) *progress {
	p := &progress{w: w, r: r, every: time.Second, total: r.o.Warmup + r.o.Duration}
	if isTerminal(w) {
		p.tty, p.every = true, 200*time.Millisecond
	}
	return p
}

// isTerminal reports whether w is an *os.File on a terminal (TCGETS
// works only on one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// loop draws until done is closed, then finishes the line.
func (p *progress) loop(done <-chan struct{}) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	p.lastAt = time.Now()
	for {
		select {
		case <-t.C:
			p.draw(time.Now())
		case <-done:
			if p.tty {
				p.draw(time.Now())
				fmt.Fprintln(p.w)
			}
			return
		}
	}
}

// draw writes one progress line for now.
func (p *progress) draw(now time.Time) {
	r := p.r
	echoes := r.echoes.Load()
	if dt := now.Sub(p.lastAt).Seconds(); dt > 0 {
		p.rate = float64(echoes-p.lastEchoes) / dt
	}
	p.lastEchoes, p.lastAt = echoes, now
	ph := phase(r.phase.Load())
	var elapsed time.Duration
	if start := r.loadStart.Load(); start != 0 {
		elapsed = min(now.Sub(time.Unix(0, start)), p.total)
	}
	status := fmt.Sprintf("%-7s %9.0f msg/s %7d open %6d errors", ph, p.rate, r.open.Load(), r.errs.total())
	if !p.tty {
		fmt.Fprintf(p.w, "bench: %5.1fs/%.0fs %s\n", elapsed.Seconds(), p.total.Seconds(), status)
		return
	}
	fmt.Fprintf(p.w, "\r%s %3.0f%% %s\x1b[K", bar(elapsed, p.total, 24), 100*frac(elapsed, p.total), status)
}

// bar is a progress bar of width cells for done out of total.
func bar(done, total time.Duration, width int) string {
	n := int(frac(done, total)*float64(width) + 0.5)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func frac(done, total time.Duration) float64 {
	if total <= 0 {
		return 0
	}
	return min(max(float64(done)/float64(total), 0), 1)
}
