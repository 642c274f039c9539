package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// parsedSVG is what the tests read back from a chart.
type parsedSVG struct {
	bars  []xml.StartElement // <rect class="bar">
	texts []string
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func num(t *testing.T, e xml.StartElement, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(attr(e, name), 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, attr(e, name), err)
	}
	return v
}

// parseSVG decodes the whole document strictly: any XML error fails.
func parseSVG(t *testing.T, b []byte) parsedSVG {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var p parsedSVG
	depth, root := 0, ""
	inText := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = e.Name.Local
				if e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", e.Name.Space)
				}
			}
			depth++
			if e.Name.Local == "rect" && attr(e, "class") == "bar" {
				p.bars = append(p.bars, e.Copy())
			}
			inText = e.Name.Local == "text"
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				p.texts = append(p.texts, string(e))
			}
		}
	}
	if root != "svg" || depth != 0 {
		t.Errorf("root %q, depth %d at the end", root, depth)
	}
	return p
}

func TestChartProportionalAndLabelled(t *testing.T) {
	c := chart{
		Title: "Proxy CPU per round trip, 128 B <at> 20,000 msg/s & more",
		Note:  "µs, median with min–max; lower is better",
		Prec:  1,
		Bars: []bar{
			{Label: "nginx", Value: 24, Min: 23, Max: 25, Spread: true},
			{Label: "haproxy", Value: 48, Min: 40, Max: 60, Spread: true},
			{Label: "sluice", Value: 12, Min: 12, Max: 12},
			{Label: "idle", Value: 0},
		},
	}
	p := parseSVG(t, c.svg())
	if len(p.bars) != 4 {
		t.Fatalf("%d bars", len(p.bars))
	}
	w0, w1, w2 := num(t, p.bars[0], "width"), num(t, p.bars[1], "width"), num(t, p.bars[2], "width")
	if math.Abs(w1/w0-2) > 0.01 || math.Abs(w2/w0-0.5) > 0.01 {
		t.Errorf("widths %v %v %v not proportional to 24, 48, 12", w0, w1, w2)
	}
	if w := num(t, p.bars[3], "width"); w != 0 {
		t.Errorf("zero value drawn %v wide", w)
	}
	all := strings.Join(p.texts, "\n")
	for _, s := range []string{c.Title, c.Note, "nginx", "haproxy", "sluice", "24.0", "48.0", "12.0", "lower is better"} {
		if !strings.Contains(all, s) {
			t.Errorf("text %q missing from %q", s, all)
		}
	}
	// The longest whisker (60) must fit: the plot never runs past the
	// value column.
	if x := num(t, p.bars[1], "x") + w1; x > svgW-svgValueW+0.01 {
		t.Errorf("bar ends at %v", x)
	}
}

func TestChartNegativeValues(t *testing.T) {
	c := chart{Title: "Latency p50 added over direct", Note: "µs", Bars: []bar{
		{Label: "nginx p50", Value: 30, Min: 20, Max: 40, Spread: true},
		{Label: "sluice p50", Value: -10, Min: -15, Max: 5, Spread: true, Series: 1},
		{Label: "haproxy p50", Value: nan},
	}}
	p := parseSVG(t, c.svg())
	if len(p.bars) != 2 {
		t.Fatalf("%d bars (the NaN one must have none)", len(p.bars))
	}
	pos, neg := p.bars[0], p.bars[1]
	// Both bars start or end at the zero line.
	zero := num(t, pos, "x")
	if negEnd := num(t, neg, "x") + num(t, neg, "width"); math.Abs(negEnd-zero) > 0.01 {
		t.Errorf("negative bar ends at %v, zero line at %v", negEnd, zero)
	}
	if num(t, neg, "width") <= 0 {
		t.Error("negative bar has no positive width")
	}
	if r := num(t, pos, "width") / num(t, neg, "width"); math.Abs(r-3) > 0.01 {
		t.Errorf("30 vs -10 drawn in ratio %v", r)
	}
	if num(t, neg, "x") < svgLabelW-0.01 {
		t.Errorf("negative bar runs into the labels: x=%v", num(t, neg, "x"))
	}
	all := strings.Join(p.texts, "\n")
	for _, s := range []string{"−10", "30", "no data"} {
		if !strings.Contains(all, s) {
			t.Errorf("text %q missing", s)
		}
	}
}

func TestChartAllZeroOrEmpty(t *testing.T) {
	parseSVG(t, chart{Title: "empty"}.svg())
	p := parseSVG(t, chart{Title: "zeros", Bars: []bar{{Label: "a"}, {Label: "b"}}}.svg())
	for _, b := range p.bars {
		if w := num(t, b, "width"); w != 0 {
			t.Errorf("zero drawn %v wide", w)
		}
	}
}
