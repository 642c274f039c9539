package harness

import (
	"fmt"
	"strings"
)

// Section is the part of a Markdown document that a command generates,
// between two marker lines, "<!-- Name:begin -->" and "<!-- Name:end -->";
// everything else in the document belongs to its authors. Two commands
// share docs/BENCHMARKS.md, each with its own Name.
type Section struct {
	// Doc names the document in errors: "BENCHMARKS.md".
	Doc string
	// Name is the generator's name in the markers: "bench-compare".
	Name string
}

// Begin is the line that opens the section.
func (s Section) Begin() string { return "<!-- " + s.Name + ":begin -->" }

// End is the line that closes the section.
func (s Section) End() string { return "<!-- " + s.Name + ":end -->" }

// Replace puts text between the marker lines of doc, replacing what was
// there, and leaves every other byte of doc alone, the marker lines
// included (indented ones stay indented). Without markers the section is
// appended at the end, after a blank line, markers included, so the next
// run finds them. A lone marker, or an end before the begin, is an error:
// guessing would overwrite the authors' text. Running it twice with the
// same text gives the same document.
func (s Section) Replace(doc, text string) (string, error) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	begin, end := s.Begin(), s.End()
	b := markerLine(doc, begin)
	e := markerLine(doc, end)
	switch {
	case b < 0 && e < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + begin + "\n" + text + end + "\n", nil
	case b < 0 || e < 0:
		return "", fmt.Errorf("%s has one %s marker without the other", s.Doc, s.Name)
	case e < b:
		return "", fmt.Errorf("%s has the %s end marker before the begin marker", s.Doc, s.Name)
	}
	// The section starts on the line after the begin marker's line.
	afterBegin := len(doc)
	if nl := strings.IndexByte(doc[b:], '\n'); nl >= 0 {
		afterBegin = b + nl + 1
	}
	return doc[:afterBegin] + text + doc[e:], nil
}

// markerLine returns the offset of the line that is exactly marker
// (surrounding spaces allowed), or -1. A marker quoted inside a sentence
// does not count.
func markerLine(doc, marker string) int {
	off := 0
	for line := range strings.Lines(doc) {
		if strings.TrimSpace(line) == marker {
			return off
		}
		off += len(line)
	}
	return -1
}
