package harness

import (
	"strings"
	"testing"
)

func TestSectionReplace(t *testing.T) {
	s := Section{Doc: "BENCHMARKS.md", Name: "bench-http"}
	begin, end := s.Begin(), s.End()
	if begin != "<!-- bench-http:begin -->" || end != "<!-- bench-http:end -->" {
		t.Fatalf("markers %q, %q", begin, end)
	}
	plain := "# sluice benchmarks\n\nText without a newline at the end"
	for _, tc := range []struct {
		name, doc, text, want string
	}{
		{
			"replaced, another command's section untouched",
			"# sluice benchmarks\n\nIntro.\n\n<!-- bench-compare:begin -->\nws\n<!-- bench-compare:end -->\n\n" +
				begin + "\nold table\nold chart\n" + end + "\n\n## Later section\n\nKept.\n",
			"new section",
			"# sluice benchmarks\n\nIntro.\n\n<!-- bench-compare:begin -->\nws\n<!-- bench-compare:end -->\n\n" +
				begin + "\nnew section\n" + end + "\n\n## Later section\n\nKept.\n",
		},
		{
			"indented marker lines are still markers, and stay as they were",
			"a\n  " + begin + "  \nold\n " + end + "\nb\n",
			"new\n",
			"a\n  " + begin + "  \nnew\n " + end + "\nb\n",
		},
		{
			"no markers: appended after a blank line, every existing byte kept",
			plain, "S1\n",
			plain + "\n\n" + begin + "\nS1\n" + end + "\n",
		},
		{
			"a second run replaces only the section",
			plain + "\n\n" + begin + "\nS1\n" + end + "\n", "S2\n",
			plain + "\n\n" + begin + "\nS2\n" + end + "\n",
		},
		{"empty document", "", "S", begin + "\nS\n" + end + "\n"},
		{
			"a marker quoted inside a sentence is not a marker line",
			"It writes between `" + begin + "` and the end marker.\n", "S",
			"It writes between `" + begin + "` and the end marker.\n\n" + begin + "\nS\n" + end + "\n",
		},
	} {
		got, err := s.Replace(tc.doc, tc.text)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v\ngot  %q\nwant %q", tc.name, err, got, tc.want)
			continue
		}
		if again, _ := s.Replace(got, tc.text); again != got {
			t.Errorf("%s: not idempotent:\n%q", tc.name, again)
		}
	}
	for _, tc := range []struct{ doc, err string }{
		{begin + "\nx\n", "BENCHMARKS.md has one bench-http marker without the other"},
		{"x\n" + end + "\n", "BENCHMARKS.md has one bench-http marker without the other"},
		{end + "\n" + begin + "\n", "BENCHMARKS.md has the bench-http end marker before the begin marker"},
	} {
		if _, err := s.Replace(tc.doc, "S"); err == nil || err.Error() != tc.err {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.err)
		}
	}
	// Only this command's markers count.
	other := Section{Doc: "BENCHMARKS.md", Name: "bench-compare"}
	if got, _ := other.Replace(begin+"\nx\n"+end+"\n", "S"); !strings.HasSuffix(got, other.Begin()+"\nS\n"+other.End()+"\n") {
		t.Errorf("another command's markers taken: %q", got)
	}
}
