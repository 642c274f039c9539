package bench

import (
	"slices"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	tests := []struct {
		conns int
		rate  float64
	}{
		{1, 1000},
		{100, 1000},
		{3, 7},
		{1000, 100}, // fewer messages per second than connections
		{16, 250_000},
	}
	for _, tt := range tests {
		// Every connection's first message is due at i/rate, then one
		// every conns/rate.
		interval := time.Duration(float64(tt.conns) / tt.rate * float64(time.Second))
		var all []time.Duration
		for i := range tt.conns {
			s := schedule{i: i, conns: tt.conns, rate: tt.rate}
			if first, want := s.due(0), time.Duration(float64(i)/tt.rate*float64(time.Second)); first != want {
				t.Errorf("%d conns at %v/s: conn %d first due %v, want %v", tt.conns, tt.rate, i, first, want)
			}
			for k := range int64(50) {
				if k > 0 {
					if d := s.due(k) - s.due(k-1); d < interval-time.Microsecond || d > interval+time.Microsecond {
						t.Fatalf("%d conns at %v/s: conn %d interval %v, want %v", tt.conns, tt.rate, i, d, interval)
					}
				}
				all = append(all, s.due(k))
			}
		}
		// Together: message n of the run is due at n/rate, each once, so
		// the total is rate per second, evenly spread.
		slices.Sort(all)
		for n, d := range all {
			want := time.Duration(float64(n) / tt.rate * float64(time.Second))
			if d < want-time.Microsecond || d > want+time.Microsecond {
				t.Fatalf("%d conns at %v/s: message %d due %v, want %v", tt.conns, tt.rate, n, d, want)
			}
		}
	}
}

// TestScheduleCatchUp: a sender behind its schedule does not wait and does
// not skip: it sends every late message at once, in order, then waits
// again once it is ahead.
func TestScheduleCatchUp(t *testing.T) {
	s := schedule{i: 2, conns: 10, rate: 100} // due at 20ms, 120ms, 220ms, ...
	tests := []struct {
		k       int64
		elapsed time.Duration
		wait    time.Duration
	}{
		{0, 0, 20 * time.Millisecond},
		{0, 20 * time.Millisecond, 0},
		{1, 50 * time.Millisecond, 70 * time.Millisecond},
		// Stalled until 450ms: messages 1..4 are due, sent at once.
		{1, 450 * time.Millisecond, 0},
		{2, 450 * time.Millisecond, 0},
		{3, 450 * time.Millisecond, 0},
		{4, 450 * time.Millisecond, 0},
		{5, 450 * time.Millisecond, 70 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := s.wait(tt.k, tt.elapsed); got < tt.wait-time.Microsecond || got > tt.wait+time.Microsecond {
			t.Errorf("wait(%d, %v) = %v, want %v", tt.k, tt.elapsed, got, tt.wait)
		}
	}
}

func TestLatencyStart(t *testing.T) {
	t0 := time.Now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name      string
		due, woke time.Time
		want      time.Time
	}{
		{"timer woke late: its lateness is not the path's", ms(10), ms(11), ms(11)},
		{"sender behind, timer woke long ago: from the due time", ms(10), ms(2), ms(10)},
		{"never slept", ms(10), time.Time{}, ms(10)},
	}
	for _, tt := range tests {
		if got := latencyStart(tt.due, tt.woke); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got.Sub(t0), tt.want.Sub(t0))
		}
	}
}
