package configs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string: Go's forms
// ("3600s", "1h", "1h30m", "500ms") plus nginx's bare number of seconds
// ("60"). nginx's space-separated form ("1h 30m") and a TOML integer
// (read_timeout = 60, seconds, as nginx's proxy_read_timeout 60;) are also
// accepted. Negative durations are rejected; zero parses, but every
// timeout must be > 0 and zero means "unset, use the default" in a file.
//
// Duration implements flag.Value, so a command line can take the same forms.
type Duration time.Duration

// ParseDuration parses the forms described on Duration.
func ParseDuration(s string) (Duration, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if t == "" {
		return 0, fmt.Errorf("invalid duration %q (want e.g. \"60s\", \"1h\")", s)
	}
	if isDigits(t) {
		// nginx: a time without a unit is in seconds.
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, fmt.Errorf("invalid duration %q (too long)", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. \"60s\", \"1h\")", s)
	}
	return Duration(d), nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the way time.Duration does ("1h0m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// Set implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler, so a Config can be written
// back as TOML or JSON with durations in the form they are read.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

// Size is a byte count written in TOML as an integer (4096) or a string with
// an optional nginx unit suffix: "4096", "16k" or "16K" (×1024), "1m" or "1M"
// (×1024²), "1g" or "1G" (×1024³). Negative sizes are rejected.
//
// Size implements flag.Value, so a command line can take the same forms.
type Size int64

// ParseSize parses the forms described on Size.
func ParseSize(s string) (Size, error) {
	bad := fmt.Errorf("invalid size %q (want e.g. \"16k\", \"1m\", 4096)", s)
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, bad
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	if !isDigits(t) {
		return 0, bad
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q (too large)", s)
	}
	return Size(n * mult), nil
}

// String formats s with the largest unit that divides it exactly ("16k",
// "1m", "1000"), so it parses back to the same value.
func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s>>30), 10) + "g"
	case s != 0 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s>>20), 10) + "m"
	case s != 0 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s>>10), 10) + "k"
	}
	return strconv.FormatInt(int64(s), 10)
}

// Set implements flag.Value.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error { return s.Set(string(b)) }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
