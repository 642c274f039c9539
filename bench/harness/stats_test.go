package harness

import (
	"slices"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
	}{
		{[]float64{5}, Stat{Median: 5, Min: 5, Max: 5, N: 1, Of: 1}},
		{[]float64{3, 1, 2}, Stat{Median: 2, Min: 1, Max: 3, N: 3, Of: 3}},
		{[]float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4, Of: 4}},
		{[]float64{7, 7, 1}, Stat{Median: 7, Min: 1, Max: 7, N: 3, Of: 3}},
		{[]float64{-3, 7, -1}, Stat{Median: -1, Min: -3, Max: 7, N: 3, Of: 3}},
	} {
		in := slices.Clone(tc.in)
		got, ok := Summarize(tc.in)
		if !ok || got != tc.want {
			t.Errorf("%v: got %+v, want %+v", in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Summarize reordered its argument: %v", tc.in)
		}
	}
	if _, ok := Summarize(nil); ok {
		t.Error("summary of nothing")
	}
}
