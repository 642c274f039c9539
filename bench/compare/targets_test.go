package main

import (
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/bench/harness"
	"github.com/sluice-proxy/sluice/configs"
)

func TestNginxConfig(t *testing.T) {
	c := nginxConfig("/tmp/p", 21001, "127.0.0.1:21000", true, harness.NginxTempPaths("configure arguments: --with-http_ssl_module --without-http_uwsgi_module"))
	for _, d := range []string{
		"user root;",
		"worker_processes 1;",
		"worker_rlimit_nofile 20000;",
		"worker_connections 19900;",
		"pid /tmp/p/nginx.pid;",
		"error_log /tmp/p/error.log warn;",
		"access_log off;",
		"map $http_upgrade $connection_upgrade {",
		"default upgrade;",
		"''      close;",
		"server 127.0.0.1:21000;",
		"listen 127.0.0.1:21001;",
		"location /ws/ {",
		"proxy_pass http://backend;",
		"proxy_http_version 1.1;",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_set_header Host $host;",
		"proxy_set_header X-Real-IP $remote_addr;",
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
		"proxy_connect_timeout 60s;",
		"proxy_read_timeout 3600s;",
		"proxy_send_timeout 3600s;",
		"proxy_buffer_size 16k;",
		"proxy_buffers 4 16k;",
		"client_body_temp_path /tmp/p/client_body;",
		"proxy_temp_path /tmp/p/proxy;",
		"fastcgi_temp_path /tmp/p/fastcgi;",
		"scgi_temp_path /tmp/p/scgi;",
	} {
		if !strings.Contains(c, d) {
			t.Errorf("nginx.conf lacks %q:\n%s", d, c)
		}
	}
	if strings.Contains(c, "uwsgi_temp_path") {
		t.Error("uwsgi_temp_path for a build without the uwsgi module")
	}
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Error("unbalanced braces")
	}
	if strings.Contains(nginxConfig("/p", 1, "b:2", false, nil), "user ") {
		t.Error("user directive when not root")
	}
}

func TestHAProxyConfig(t *testing.T) {
	want := []string{
		"nbthread 1", "maxconn 9700", "mode http", "timeout connect 60s", "timeout client 3600s",
		"timeout server 3600s", "timeout tunnel 3600s", "timeout http-request 10s", "option forwardfor",
		"bind 127.0.0.1:21002", "http-request set-header X-Real-IP %[src]", "server echo1 127.0.0.1:21000 maxconn 0",
	}
	for _, splice := range []bool{false, true} {
		c := haproxyConfig(21002, "127.0.0.1:21000", splice)
		for _, d := range want {
			if !strings.Contains(c, d) {
				t.Errorf("splice=%v: haproxy.cfg lacks %q:\n%s", splice, d, c)
			}
		}
		if got := strings.Contains(c, "option splice-auto"); got != splice {
			t.Errorf("splice=%v: option splice-auto present = %v", splice, got)
		}
		if got := strings.Contains(c, "maxpipes 256"); got != splice {
			t.Errorf("splice=%v: maxpipes present = %v", splice, got)
		}
		if strings.Contains(c, "\n    log ") || strings.Contains(c, "option httplog") {
			t.Errorf("haproxy.cfg logs:\n%s", c)
		}
	}
}

func TestSluiceConfigParses(t *testing.T) {
	src := sluiceConfig(21003, "127.0.0.1:21000")
	c, err := configs.Parse([]byte(src), "bench.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	if c.Workers != 1 || c.Log.Level != "warn" || c.Log.AccessLog != "off" {
		t.Errorf("workers %d, log %+v", c.Workers, c.Log)
	}
	if len(c.Servers) != 1 || len(c.Servers[0].Listen) != 1 || c.Servers[0].Listen[0] != "127.0.0.1:21003" {
		t.Fatalf("servers: %+v", c.Servers)
	}
	l := c.Servers[0].Locations
	if len(l) != 1 {
		t.Fatalf("locations: %+v", l)
	}
	if l[0].Path != "/ws/" || l[0].ProxyPass != "127.0.0.1:21000" ||
		l[0].ConnectTimeout != configs.Duration(60e9) || l[0].ReadTimeout != configs.Duration(3600e9) ||
		l[0].SendTimeout != configs.Duration(3600e9) || l[0].BufferSize != 16<<10 {
		t.Errorf("location: %+v", l[0])
	}
}

func TestPickTargetsAndRotate(t *testing.T) {
	ts, err := pickTargets("sluice, nginx")
	if err != nil || strings.Join(ts, ",") != "nginx,sluice" {
		t.Errorf("pickTargets: %v, %v", ts, err)
	}
	if _, err := pickTargets("nginx,caddy"); err == nil {
		t.Error("unknown target accepted")
	}
	all, _ := pickTargets("")
	if len(all) != 5 {
		t.Errorf("all targets: %v", all)
	}
	if got := strings.Join(rotate([]string{"a", "b", "c"}, 4), ""); got != "bca" {
		t.Errorf("rotate by 4: %s", got)
	}
}
