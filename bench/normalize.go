package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// modeDefaults are the zero-value defaults of each mode.
var modeDefaults = map[Mode]struct {
	conns    int
	rate     float64
	payload  int
	duration time.Duration
}{
	ModeIdle:      {conns: 1000, payload: 16, duration: 5 * time.Second},
	ModeRate:      {conns: 100, rate: 1000, payload: 128, duration: 10 * time.Second},
	ModeClosed:    {conns: 50, payload: 128, duration: 10 * time.Second},
	ModeHandshake: {conns: 16, payload: 16, duration: 10 * time.Second},
	ModeBulk:      {conns: 4, payload: 1 << 20, duration: 10 * time.Second},
}

// DefaultTimeout is Options.Timeout when it is zero.
const DefaultTimeout = 10 * time.Second

// Connections one source address is given, and what a handshake worker is
// assumed to cycle per second, for the default of Options.Sources. A
// source has about 28,000 ephemeral ports towards one destination and a
// closed connection may hold its port in TIME_WAIT for 60 s, so 10,000
// leaves room.
const (
	connsPerSource      = 10_000
	handshakesPerWorker = 1000
	minHandshakeSources = 8
)

// Normalize fills zero fields with the defaults of o.Mode and checks the
// rest, returning an error that names the setting to fix.
//
//	mode       conns  rate  payload  duration
//	idle        1000     -      16       5s
//	rate         100  1000     128      10s
//	closed        50     -     128      10s
//	handshake     16     -      16      10s
//	bulk           4     -    1MiB      10s
//
// Timeout defaults to 10s, Warmup to 0 (idle has no warmup and ignores
// it). Sources defaults to one source address per 10,000 connections the
// run may open, at least 1, and at least 8 in handshake mode (which opens
// one connection per cycle: estimated at 1,000 cycles/s per worker); it must
// stay 0 for a target that is not on 127.0.0.0/8, since loopback sources
// cannot reach it.
func (o *Options) Normalize() error {
	d, ok := modeDefaults[o.Mode]
	if !ok {
		return fmt.Errorf("unknown mode %q (want one of %s)", o.Mode, modeList())
	}
	t, err := parseTarget(o.URL, o.Host, o.Origin, o.TLS)
	if err != nil {
		return err
	}
	switch {
	case o.Conns < 0:
		return fmt.Errorf("conns %d: want 1 or more", o.Conns)
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("rate %v: want messages per second > 0", o.Rate)
	case o.Rate != 0 && o.Mode != ModeRate:
		return fmt.Errorf("rate is for rate mode only (%s mode sends as fast as the path echoes)", o.Mode)
	case o.Payload < 0 || o.Payload > MaxPayload:
		return fmt.Errorf("payload %d bytes: want 0..%d (64 MiB)", o.Payload, MaxPayload)
	case o.Duration < 0:
		return fmt.Errorf("duration %v: want > 0", o.Duration)
	case o.Warmup < 0:
		return fmt.Errorf("warmup %v: want 0 or more", o.Warmup)
	case o.Timeout < 0:
		return fmt.Errorf("timeout %v: want > 0", o.Timeout)
	case o.Sources < 0 || o.Sources > MaxSources:
		return fmt.Errorf("sources %d: want 1..%d, or 0 for the default", o.Sources, MaxSources)
	case o.Sources > 0 && !t.loopback:
		return fmt.Errorf("sources %d: source addresses are on 127.0.0.0/8 and only reach a loopback target, not %s", o.Sources, t.addr)
	}
	if o.Conns == 0 {
		o.Conns = d.conns
	}
	if o.Rate == 0 {
		o.Rate = d.rate
	}
	if o.Payload == 0 {
		o.Payload = d.payload
	}
	if o.Duration == 0 {
		o.Duration = d.duration
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Mode == ModeIdle {
		o.Warmup = 0
	}
	if o.Sources == 0 && t.loopback {
		o.Sources = defaultSources(o)
	}
	return nil
}

// defaultSources is the Sources default Normalize documents.
func defaultSources(o *Options) int {
	conns := float64(o.Conns)
	lowest := 1
	if o.Mode == ModeHandshake {
		conns *= handshakesPerWorker * (o.Warmup + o.Duration).Seconds()
		lowest = minHandshakeSources
	}
	n := int(math.Min(math.Ceil(conns/connsPerSource), MaxSources))
	return max(n, lowest)
}

// modeList is "idle, rate, closed, handshake or bulk".
func modeList() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
