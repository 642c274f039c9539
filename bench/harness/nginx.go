package harness

import "strings"

// NginxTempPaths returns the *_temp_path directives the nginx binary
// supports, judged from the text of `nginx -V` (a module built
// --without-X has no X_temp_path directive, and nginx rejects a config
// that names it). The commands point each one into the run's own
// directory, so that nginx needs nothing from /var/lib/nginx.
func NginxTempPaths(nginxV string) []string {
	out := []string{"client_body_temp_path", "proxy_temp_path"}
	for _, m := range []string{"fastcgi", "uwsgi", "scgi"} {
		if !strings.Contains(nginxV, "--without-http_"+m+"_module") {
			out = append(out, m+"_temp_path")
		}
	}
	return out
}
