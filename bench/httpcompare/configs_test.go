package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/sluice-proxy/sluice/bench/harness"
)

func TestSmallText(t *testing.T) {
	b := smallText()
	if len(b) != 1024 {
		t.Errorf("small.txt is %d bytes, want 1 KiB", len(b))
	}
	dir := filepath.Join(t.TempDir(), "root")
	if err := writeDocRoot(dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "small.txt"))
	if err != nil || string(got) != string(b) {
		t.Errorf("small.txt on disk: %v, %d bytes", err, len(got))
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("document root mode: %v %v (nginx's worker may run as another user)", st.Mode(), err)
	}
}

func TestSluiceConfig(t *testing.T) {
	cfg := sluiceConfig(23001, "/tmp/bench-http-x/root", "127.0.0.1:23000")
	var got struct {
		Workers int `toml:"workers"`
		Log     struct {
			AccessLog string `toml:"access_log"`
			Level     string `toml:"level"`
		} `toml:"log"`
		Server []struct {
			Listen   []string `toml:"listen"`
			Location []struct {
				Path      string   `toml:"path"`
				Root      string   `toml:"root"`
				TryFiles  []string `toml:"try_files"`
				ProxyPass string   `toml:"proxy_pass"`
			} `toml:"location"`
		} `toml:"server"`
	}
	if err := toml.Unmarshal([]byte(cfg), &got); err != nil {
		t.Fatalf("%v\n%s", err, cfg)
	}
	if got.Workers != 1 || got.Log.AccessLog != "off" || got.Log.Level != "warn" || len(got.Server) != 1 {
		t.Fatalf("top level: %+v", got)
	}
	s := got.Server[0]
	if !slices.Equal(s.Listen, []string{"127.0.0.1:23001"}) || len(s.Location) != 2 {
		t.Fatalf("server: %+v", s)
	}
	static, proxy := s.Location[0], s.Location[1]
	if static.Path != "/" || static.Root != "/tmp/bench-http-x/root" || !slices.Equal(static.TryFiles, []string{"$uri", "$uri/", "/index.html"}) || static.ProxyPass != "" {
		t.Errorf("static location: %+v", static)
	}
	if proxy.Path != "/api/" || proxy.ProxyPass != "127.0.0.1:23000" || proxy.Root != "" {
		t.Errorf("proxy location: %+v", proxy)
	}
}

// nginxDirectives are the lines the issue asks of the nginx under test,
// the same work the sluice config asks of sluice.
var nginxDirectives = []string{
	"worker_processes 1;", "daemon off;", "master_process on;", "worker_connections 4096;",
	"access_log off;", "sendfile on;", "tcp_nopush on;", "keepalive_requests 100000;",
	"listen 127.0.0.1:23001;", "root /srv/root;", "try_files $uri $uri/ /index.html;",
	"location /api/ {", "proxy_pass http://backend;", "proxy_http_version 1.1;",
	`proxy_set_header Connection "";`, "proxy_set_header Host $host;",
	"proxy_set_header X-Real-IP $remote_addr;", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
	"proxy_set_header X-Forwarded-Proto $scheme;", "server 127.0.0.1:23000;", "keepalive 64;",
	"error_log /p/error.log warn;", "pid /p/nginx.pid;",
}

func TestNginxConfig(t *testing.T) {
	cfg := nginxConfig("/p", 23001, "/srv/root", "127.0.0.1:23000", false, []string{"proxy_temp_path"})
	for _, d := range nginxDirectives {
		if !strings.Contains(cfg, d) {
			t.Errorf("nginx config lacks %q", d)
		}
	}
	if strings.Contains(cfg, "user root;") {
		t.Error("user root without asRoot")
	}
	if !strings.Contains(cfg, "proxy_temp_path /p/proxy;") {
		t.Error("temp path not inside the prefix")
	}
	balanced(t, cfg)

	be := backendConfig("/b", 23000, true, nil)
	for _, d := range []string{"user root;", "listen 127.0.0.1:23000;", `return 200 "hello from backend\n";`, "access_log off;", "keepalive_requests 100000;"} {
		if !strings.Contains(be, d) {
			t.Errorf("backend config lacks %q:\n%s", d, be)
		}
	}
	balanced(t, be)
}

func balanced(t *testing.T, cfg string) {
	t.Helper()
	if strings.Count(cfg, "{") != strings.Count(cfg, "}") {
		t.Errorf("unbalanced braces:\n%s", cfg)
	}
}

// TestNginxAccepts has nginx itself check both generated configs, when an
// nginx is installed (nginx -t parses and opens files; it binds nothing).
func TestNginxAccepts(t *testing.T) {
	nginx, err := findTool("nginx")
	if err != nil {
		t.Skip("no nginx here")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := writeDocRoot(root); err != nil {
		t.Fatal(err)
	}
	temp := harness.NginxTempPaths(harness.CombinedOutput(nginx, "-V"))
	for name, cfg := range map[string]string{
		"target":  nginxConfig(dir, 23001, root, "127.0.0.1:23000", os.Geteuid() == 0, temp),
		"backend": backendConfig(dir, 23000, os.Geteuid() == 0, temp),
	} {
		file := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", file).CombinedOutput(); err != nil {
			t.Errorf("nginx -t %s: %v\n%s\n%s", name, err, out, cfg)
		}
	}
}
