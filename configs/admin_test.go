package configs

import (
	"strings"
	"testing"
)

func TestAdminKey(t *testing.T) {
	base := "[admin]\nlisten = %q\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/ws/\"\n  proxy_pass = \"127.0.0.1:9000\"\n"
	for _, tt := range []struct{ listen, want string }{
		{"127.0.0.1:9901", ""},
		{"", ""},
		{"127.0.0.1", "a.toml:2:1: admin.listen: invalid address"},
		{"127.0.0.1:8080", "is also a server's listen address"},
	} {
		c, err := Parse([]byte(strings.Replace(base, "%q", `"`+tt.listen+`"`, 1)), "a.toml")
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.listen, err)
		case tt.want == "" && c.Admin.Listen != tt.listen:
			t.Errorf("%q: Admin.Listen = %q", tt.listen, c.Admin.Listen)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want %q", tt.listen, err, tt.want)
		}
	}
	c, err := Apply(nil, Overrides{Admin: "127.0.0.1:9901"})
	if err != nil || c.Admin.Listen != "127.0.0.1:9901" {
		t.Fatalf("--admin: %v, %v", c, err)
	}
	if _, err := Apply(nil, Overrides{Admin: "nowhere"}); err == nil || !strings.Contains(err.Error(), "--admin") {
		t.Fatalf("bad --admin: %v", err)
	}
}
