package configs

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic, and its
// result must be either a complete config (every location resolved) or
// errors that are all *ConfigError. Seeds live in testdata/fuzz/FuzzParse;
// the shipped example files are added here too.
func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	for _, name := range []string{"socket.toml", "chat.toml", "loadbalanced.toml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatal("config and error both returned")
			}
			for _, e := range flatten(err) {
				var ce *ConfigError
				if !errors.As(e, &ce) && e.Error() == "" {
					t.Fatalf("empty error %T", e)
				}
			}
			return
		}
		for _, s := range c.Servers {
			for _, l := range s.Locations {
				if !l.IsStatic() && (l.Upstream == nil || len(l.Upstream.Servers) == 0) {
					t.Fatalf("valid config with unresolved location %+v", l)
				}
			}
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate not idempotent: %v", err)
		}
		if _, err := Apply(c, Overrides{}); err != nil {
			t.Fatalf("Apply with no overrides failed: %v", err)
		}
	})
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// FuzzServerSpec feeds arbitrary strings to parseServerSpec, the reading of
// one upstream servers entry ("host:port" then nginx-style parameters). It
// must never panic; a refusal gives the zero spec; an accepted spec has
// every value within its documented bounds (weight 1 to 1000, max_conns
// and max_fails 0 to 2^30, fail_timeout > 0), a normalized address, and
// written back with every parameter spelled out it parses to the same
// spec. Seeds: testdata/fuzz/FuzzServerSpec.
func FuzzServerSpec(f *testing.F) {
	f.Add("10.0.0.1:9000 weight=3 max_fails=2 fail_timeout=30s backup")
	f.Add("10.0.0.1:9000 weight=0")
	f.Fuzz(func(t *testing.T, s string) {
		spec, msg := parseServerSpec(s)
		if msg != "" {
			if spec != (ServerSpec{}) {
				t.Fatalf("%q refused (%s) but returned %+v", s, msg, spec)
			}
			return
		}
		switch {
		case spec.Weight < 1 || spec.Weight > 1000,
			spec.MaxConns < 0 || spec.MaxConns > 1<<30,
			spec.MaxFails < 0 || spec.MaxFails > 1<<30,
			spec.FailTimeout <= 0:
			t.Fatalf("%q accepted out of bounds: %+v", s, spec)
		}
		if addr, msg := checkHostPort(spec.Address, true); msg != "" || addr != spec.Address {
			t.Fatalf("%q: address %q not normalized (%q, %s)", s, spec.Address, addr, msg)
		}
		out := fmt.Sprintf("%s weight=%d max_conns=%d max_fails=%d fail_timeout=%s",
			spec.Address, spec.Weight, spec.MaxConns, spec.MaxFails, spec.FailTimeout)
		if spec.Backup {
			out += " backup"
		}
		if spec.Down {
			out += " down"
		}
		if again, msg := parseServerSpec(out); msg != "" || again != spec {
			t.Fatalf("%q -> %+v -> %q -> %+v (%s)", s, spec, out, again, msg)
		}
	})
}
