package configs

import (
	"errors"
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
				if l.Upstream == nil || len(l.Upstream.Servers) == 0 {
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
