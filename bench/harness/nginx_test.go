package harness

import (
	"slices"
	"testing"
)

func TestNginxTempPaths(t *testing.T) {
	for _, tc := range []struct {
		nginxV string
		want   []string
	}{
		{"configure arguments: --with-http_ssl_module", []string{"client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"}},
		{"configure arguments: --without-http_uwsgi_module --without-http_scgi_module", []string{"client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path"}},
		{"", []string{"client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"}},
	} {
		if got := NginxTempPaths(tc.nginxV); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.nginxV, got, tc.want)
		}
	}
}
