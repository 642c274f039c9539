package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStaticKeys(t *testing.T) {
	src := `
[[server]]
listen = ["127.0.0.1:8080"]
  [[server.location]]
  path = "/"
  root = "public"
  try_files = ["$uri", "$uri/", "/index.html"]
  [[server.location]]
  path = "/assets/"
  root = "/srv/assets"
  index = ["default.htm", "index.html"]
  try_files = ["$uri", "=404"]
  compress = false
`
	c, err := Parse([]byte(src), "/etc/sluice/site.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Servers[0].Locations[0], c.Servers[0].Locations[1]
	if !a.IsStatic() || a.Upstream != nil || !a.CompressOn() || strings.Join(a.Index, ",") != "index.html" {
		t.Errorf("defaults of a static location: %+v", a)
	}
	if got := c.ResolvePath(a.Root); got != "/etc/sluice/public" {
		t.Errorf("root resolves to %q", got)
	}
	if b.CompressOn() || strings.Join(b.Index, ",") != "default.htm,index.html" || strings.Join(b.TryFiles, ",") != "$uri,=404" {
		t.Errorf("static location %+v", b)
	}
	cl := c.clone()
	cl.Servers[0].Locations[1].Index[0] = "x"
	*cl.Servers[0].Locations[1].Compress = true
	if b.Index[0] != "default.htm" || b.CompressOn() {
		t.Error("clone shares state")
	}
}

func TestStaticErrors(t *testing.T) {
	base := "[[server]]\nlisten = [\"127.0.0.1:8080\"]\n  [[server.location]]\n  path = \"/\"\n%s\n"
	tests := []struct{ loc, want string }{
		{"root = \"www\"\n  proxy_pass = \"127.0.0.1:9000\"", "a.toml:5:1: server[0].location[0].root: a location serves files (root) or proxies (proxy_pass), not both"},
		{"root = \"www\"\n  try_files = [\"=404\", \"$uri\"]", "try_files[0]: \"=404\" must be the last entry"},
		{"root = \"www\"\n  try_files = [\"=99\"]", "try_files[0]: invalid status \"=99\""},
		{"root = \"www\"\n  try_files = [\"$uri.html\"]", "try_files[0]: invalid entry \"$uri.html\""},
		{"root = \"www\"\n  try_files = [\"/$uri\"]", "unsupported variable"},
		{"root = \"www\"\n  try_files = [\"/../x\"]", "climbs out of root"},
		{"root = \"www\"\n  index = [\"a/b.html\"]", "index[0]: invalid index file name"},
		{"root = \"www\"\n  index = [\"..\"]", "index[0]: invalid index file name"},
		{"", "proxy_pass: missing: name an [upstream.NAME], give \"host:port\", or serve files with root = \"DIR\""},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(strings.Replace(base, "%s", tt.loc, 1)), "a.toml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to contain %q", tt.loc, err, tt.want)
		}
	}
}

func TestStaticFlag(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Apply(nil, Overrides{Statics: []string{"/=" + dir}, Proxies: []string{"/ws/=127.0.0.1:9000"}})
	if err != nil {
		t.Fatal(err)
	}
	var static *Location
	for _, l := range c.Servers[0].Locations {
		if l.IsStatic() {
			static = l
		}
	}
	if static == nil || static.Path != "/" || static.Root != dir || strings.Join(static.TryFiles, " ") != "$uri $uri/ /index.html" {
		t.Fatalf("--static location %+v", static)
	}
	for _, tt := range []struct {
		o    Overrides
		file bool
		want string
	}{
		{Overrides{Statics: []string{"/"}}, false, `--static: "/": want PATH=DIR`},
		{Overrides{Statics: []string{"/=" + filepath.Join(dir, "nope")}}, false, "is not a directory"},
		{Overrides{Statics: []string{"/=" + dir, "/=" + dir}}, false, `path "/" is given twice`},
		{Overrides{Statics: []string{"/=" + dir}, Proxies: []string{"/=127.0.0.1:1"}}, false, `path "/" is given twice`},
		{Overrides{Statics: []string{"/=" + dir}}, true, "--static: cannot be combined with --config"},
	} {
		var file *Config
		if tt.file {
			file = Default()
		}
		_, err := Apply(file, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.o, err, tt.want)
		}
	}
}
