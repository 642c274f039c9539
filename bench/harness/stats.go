package harness

import "slices"

// Stat is a figure over the repetitions: median, min, max; N is how many
// measurements counted, Of how many ran (a flagged or failed one is left
// out of the values but counted here, so a table says "2 of 3" instead of
// quietly averaging a broken run).
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
	Of     int     `json:"of"`
}

// Summarize returns the median, min and max of vs, with N and Of both
// len(vs); ok is false for none. The median of an even count is the mean
// of the two middle values. vs is left as it was.
func Summarize(vs []float64) (s Stat, ok bool) {
	if len(vs) == 0 {
		return Stat{}, false
	}
	v := slices.Clone(vs)
	slices.Sort(v)
	n := len(v)
	s = Stat{Min: v[0], Max: v[n-1], N: n, Of: n}
	if n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return s, true
}
