package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes r as an aligned table for people; --json is for
// programs.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	row("mode", "%s", r.Mode)
	row("target", "%s", r.URL)
	row("conns", "%d", r.Conns)
	if r.Mode == ModeRate {
		row("rate", "%s msg/s", strconv.FormatFloat(r.Rate, 'f', -1, 64))
	}
	row("payload", "%s", FormatSize(r.Payload))
	if r.Sources > 0 {
		row("sources", "%d", r.Sources)
	}
	row("elapsed", "%.2f s", r.Elapsed)
	if r.Mode == ModeIdle {
		row("open", "%d", r.Open)
		row("alive", "%d", r.Alive)
	}
	row("sent", "%d", r.Sent)
	row("echoed", "%d", r.Echoed)
	row("errors", "%s", formatErrors(r.Errors))
	if r.Mode != ModeIdle {
		row("msgs/s", "%.1f", r.MsgsPerSec)
		row("MB/s", "%.3f", r.MBPerSec)
	}
	if r.Mode == ModeHandshake {
		row("handshakes", "%d", r.Handshakes)
		row("handshakes/s", "%.1f", r.HandshakesPerSec)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "latency\tcount\tmean\tp50\tp90\tp99\tp99.9\tmax")
	lat := func(name string, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", name, l.Count,
			formatMicros(l.Mean), formatMicros(l.P50), formatMicros(l.P90),
			formatMicros(l.P99), formatMicros(l.P999), formatMicros(l.Max))
	}
	lat("echo", r.Latency)
	lat("handshake", r.HandshakeLatency)
	_ = tw.Flush()
}

// formatErrors is "0", or the total and each kind by count, largest first:
// "12 (status_404 10, dial 2)".
func formatErrors(errs map[string]int64) string {
	var total int64
	for _, v := range errs {
		total += v
	}
	if total == 0 {
		return "0"
	}
	kinds := slices.SortedFunc(maps.Keys(errs), func(a, b string) int {
		return cmp.Or(cmp.Compare(errs[b], errs[a]), strings.Compare(a, b))
	})
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, errs[k]))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// formatMicros shows a latency in µs, ms or s with its unit.
func formatMicros(us float64) string {
	switch {
	case us == 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

// FormatSize shows a byte count in the largest binary unit that divides
// it: "128 B", "16 KiB", "1 MiB".
func FormatSize(n int) string {
	switch {
	case n != 0 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
