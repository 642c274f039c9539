package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
)

// bar is one row of a chart: a median with an optional min–max whisker.
type bar struct {
	Label  string
	Value  float64
	Min    float64
	Max    float64
	Spread bool // draw the Min–Max whisker
	// Series picks the colour (0, 1, ...): p50 and p99 in one chart.
	Series int
}

// chart is a horizontal bar chart: one row per bar, the value written at
// the end of the bar, a zero line when values go negative. Plain SVG 1.1,
// generic fonts, no script and no external resources, so it renders the
// same on GitHub, in a browser and in an image viewer.
type chart struct {
	Title string
	// Note is the second title line: the unit and which way is better.
	Note string
	Bars []bar
	Prec int
}

// Chart geometry, in px: 640 wide, each row rowH tall.
const (
	svgW      = 640
	svgLabelW = 150 // label column
	svgValueW = 90  // room right of the longest bar for its label
	svgTop    = 56  // two title lines
	svgRowH   = 28
	svgBarH   = 18
	svgBottom = 12
)

// nan marks a bar without data.
var nan = math.NaN()

var seriesColour = []string{"#4c78a8", "#f58518", "#54a24b", "#e45756"}

// scale maps values to x pixels over the plot area, which always includes
// zero so that bar lengths compare.
type scale struct{ lo, hi, x0, x1 float64 }

func newScale(bars []bar) scale {
	lo, hi := 0.0, 0.0
	for _, b := range bars {
		for _, v := range []float64{b.Value, b.Min, b.Max} {
			if !b.Spread && v != b.Value {
				continue
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if hi == lo {
		hi = lo + 1
	}
	return scale{lo: lo, hi: hi, x0: svgLabelW, x1: svgW - svgValueW}
}

func (s scale) x(v float64) float64 {
	if math.IsNaN(v) {
		v = 0
	}
	return s.x0 + (v-s.lo)/(s.hi-s.lo)*(s.x1-s.x0)
}

// svg renders the chart.
func (c chart) svg() []byte {
	sc := newScale(c.Bars)
	h := svgTop + len(c.Bars)*svgRowH + svgBottom
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, h, svgW, h)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, h)
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", esc(c.Title))
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555555">%s</text>`+"\n", esc(c.Note))
	zero := sc.x(0)
	for i, br := range c.Bars {
		y := float64(svgTop + i*svgRowH)
		mid := y + svgBarH/2
		base := mid + 4 // text baseline that centres 12 px digits on the bar
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLabelW-8, base, esc(br.Label))
		if math.IsNaN(br.Value) {
			fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f" fill="#999999">no data</text>`+"\n", zero+4, base)
			continue
		}
		x0, x1 := zero, sc.x(br.Value)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		colour := seriesColour[br.Series%len(seriesColour)]
		fmt.Fprintf(&b, `<rect class="bar" x="%.2f" y="%.1f" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			x0, y, x1-x0, svgBarH, colour, esc(br.Label+": "+fmtNum(br.Value, c.Prec)))
		right := math.Max(x1, zero)
		if br.Spread && !math.IsNaN(br.Min) && !math.IsNaN(br.Max) {
			wa, wb := sc.x(br.Min), sc.x(br.Max)
			fmt.Fprintf(&b, `<path class="whisker" d="M%.2f %.1fH%.2fM%.2f %.1fV%.1fM%.2f %.1fV%.1f" stroke="#222222" stroke-width="1.5" fill="none"/>`+"\n",
				wa, mid, wb, wa, mid-5, mid+5, wb, mid-5, mid+5)
			right = math.Max(right, math.Max(wa, wb))
		}
		fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f">%s</text>`+"\n", right+5, base, esc(fmtNum(br.Value, c.Prec)))
	}
	axisTop, axisBottom := svgTop-6, svgTop+len(c.Bars)*svgRowH-4
	fmt.Fprintf(&b, `<line x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#888888" stroke-width="1"/>`+"\n", zero, axisTop, zero, axisBottom)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// esc escapes text for XML character data and attribute values.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
