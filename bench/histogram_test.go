package bench

import (
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestMerge(t *testing.T) {
	hist := func(vs ...int64) *hdrhistogram.Histogram {
		h := newHistogram()
		for _, v := range vs {
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	tests := []struct {
		name  string
		in    []*hdrhistogram.Histogram
		count int64
		min   int64
		max   int64
		p50   int64
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one", []*hdrhistogram.Histogram{hist(10, 20, 30)}, 3, 10, 30, 20},
		{"empty ones are neutral", []*hdrhistogram.Histogram{hist(), hist(5), hist()}, 1, 5, 5, 5},
		{"disjoint ranges", []*hdrhistogram.Histogram{hist(1, 2, 3), hist(1000, 2000), hist(59_000_000)}, 6, 1, 59_000_000, 3},
		{"same values add up", []*hdrhistogram.Histogram{hist(7, 7), hist(7)}, 3, 7, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := merge(tt.in...)
			if m.TotalCount() != tt.count {
				t.Errorf("count %d, want %d", m.TotalCount(), tt.count)
			}
			if tt.count == 0 {
				return
			}
			if !m.ValuesAreEquivalent(m.Min(), tt.min) || !m.ValuesAreEquivalent(m.Max(), tt.max) || !m.ValuesAreEquivalent(m.ValueAtQuantile(50), tt.p50) {
				t.Errorf("min/p50/max %d/%d/%d, want %d/%d/%d", m.Min(), m.ValueAtQuantile(50), m.Max(), tt.min, tt.p50, tt.max)
			}
			for _, h := range tt.in {
				if h.TotalCount() > m.TotalCount() {
					t.Errorf("an input lost values")
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 1000; v++ {
		_ = h.RecordValue(v)
	}
	l := summarize(h)
	near := func(got, want float64) bool { return got >= want*0.999 && got <= want*1.001+1 }
	if l.Count != 1000 || !near(l.Mean, 500.5) || !near(l.P50, 500) || !near(l.P90, 900) ||
		!near(l.P99, 990) || !near(l.P999, 999) || !near(l.Max, 1000) {
		t.Errorf("summary %+v", l)
	}
	if (summarize(newHistogram()) != Latency{}) {
		t.Errorf("empty histogram: want the zero Latency")
	}
}

// TestRecorder records from more goroutines than shards, clamps out of
// range values, and loses nothing (run it with -race).
func TestRecorder(t *testing.T) {
	const goroutines, each = 64, 500
	r := newRecorder(goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r.record(g, time.Duration(i)*time.Microsecond)
			}
		})
	}
	wg.Wait()
	r.record(0, 0)             // below 1 µs: counted as 1 µs
	r.record(0, 2*time.Minute) // above 60 s: counted as 60 s
	l := r.summary()
	if l.Count != goroutines*each+2 {
		t.Errorf("count %d, want %d", l.Count, goroutines*each+2)
	}
	if l.Max < 59_900_000 || l.Max > 60_100_000 {
		t.Errorf("max %v µs, want 60 s", l.Max)
	}
}
