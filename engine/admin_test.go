package engine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAdminMetrics drives known traffic through a real sluice and checks
// that /metrics moved by exactly that: tunnels opened, bytes relayed each
// way, refusals by rule and status, plain requests; and that the page is
// valid Prometheus text.
func TestAdminMetrics(t *testing.T) {
	be := startBackend(t, backendOpts{})
	root := t.TempDir()
	if err := os.WriteFile(root+"/hello.txt", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// On an address no client of the test suite connects from (see
	// TestReloadUnderLoad): a free 127.0.0.1 port can be taken as the
	// local port of another test's outgoing connection before sluice binds it.
	adminAddr := "127.0.0.250:" + strings.Split(freeAddr(t), ":")[1]
	p := startProxy(t, fmt.Sprintf(`
[log]
access_log = "off"
[admin]
listen = %q
[[server]]
listen = ["{{listen}}"]
  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
  origins = ["https://ok.test"]
  [[server.location]]
  path = "/"
  root = %q
`, adminAddr, be.addr, root))
	if p.e.AdminAddr() != adminAddr {
		t.Fatalf("AdminAddr %q, want %q", p.e.AdminAddr(), adminAddr)
	}

	const tunnels, payload = 3, 100
	var conns []net.Conn
	var up, down int
	for i := 0; i < tunnels; i++ {
		c, resp := openFrom(t, "127.0.0.1", p.addr, head("/ws/", "Origin: https://ok.test"))
		if statusOf(resp) != 101 {
			t.Fatalf("tunnel %d: %q", i, resp)
		}
		conns = append(conns, c)
		frame := append([]byte{0x82, 0x80 | payload, 1, 2, 3, 4}, make([]byte, payload)...)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, 2+payload)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadFull(c, echo); err != nil {
			t.Fatal(err)
		}
		up += len(frame)
		down += len(resp) + len(echo)
	}
	for i := 0; i < 2; i++ {
		if got, _ := statusFrom(t, "127.0.0.1", p.addr, head("/ws/", "Origin: https://evil.test")); got != 403 {
			t.Fatalf("evil origin: %d", got)
		}
		c, r := dialProxy(t, p.addr)
		if resp, body := exchange(t, c, r, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("static: %d %q", resp.StatusCode, body)
		}
	}

	during := scrape(t, adminAddr)
	loc := `server="_",location="/ws/"`
	wantMetric(t, during, "sluice_tunnels{"+loc+"}", tunnels)
	wantMetric(t, during, `sluice_upstream_tunnels{group="`+be.addr+`",server="`+be.addr+`",address="`+be.addr+`"}`, tunnels)
	wantMetric(t, during, `sluice_upstream_up{group="`+be.addr+`",server="`+be.addr+`",address="`+be.addr+`"}`, 1)
	jobs := 0.0
	for series, v := range during {
		if strings.HasPrefix(series, "sluice_relay_loop_jobs{") {
			jobs += v
		}
	}
	if jobs != tunnels {
		t.Errorf("relay loops own %v jobs, want the %d tunnels", jobs, tunnels)
	}

	// /tunnels lists the three, oldest first, a page at a time, with the
	// bytes each has relayed so far.
	type page struct {
		Total   int `json:"total"`
		Tunnels []struct {
			ID           uint64  `json:"id"`
			Client       string  `json:"client"`
			Location     string  `json:"location"`
			UpstreamAddr string  `json:"upstream_addr"`
			AgeSeconds   float64 `json:"age_seconds"`
			BytesUp      int64   `json:"bytes_up"`
			BytesDown    int64   `json:"bytes_down"`
		} `json:"tunnels"`
	}
	getPage := func(query string) (page, int) {
		resp, err := http.Get("http://" + adminAddr + "/tunnels" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pg page
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&pg); err != nil {
				t.Fatal(err)
			}
		}
		return pg, resp.StatusCode
	}
	first, _ := getPage("?limit=2")
	rest, _ := getPage("?offset=2&limit=2")
	if first.Total != tunnels || len(first.Tunnels) != 2 || len(rest.Tunnels) != 1 || first.Tunnels[1].ID >= rest.Tunnels[0].ID {
		t.Fatalf("/tunnels pages: %+v then %+v", first, rest)
	}
	for i, tn := range append(first.Tunnels, rest.Tunnels...) {
		if tn.Location != "/ws/" || tn.UpstreamAddr != be.addr || !strings.HasPrefix(tn.Client, "127.0.0.1:") ||
			tn.BytesUp != int64(up/tunnels) || tn.BytesDown != int64(down/tunnels) || tn.AgeSeconds <= 0 {
			t.Errorf("/tunnels entry %d: %+v (want up %d, down %d)", i, tn, up/tunnels, down/tunnels)
		}
	}
	if _, code := getPage("?limit=0"); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}

	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "tunnels to end", func() bool { return p.e.Tunnels() == 0 })
	// The event loops let go of every connection (closes are
	// asynchronous: poll).
	heads, loops := `sluice_listener_heads{listen="`+p.addr+`"}`, `sluice_listener_event_loop_connections{listen="`+p.addr+`"}`
	waitFor(t, "event loops to hold nothing", func() bool {
		m := scrape(t, adminAddr)
		_, h := m[heads]
		_, l := m[loops]
		return h && l && m[heads] == 0 && m[loops] == 0
	})
	after := scrape(t, adminAddr)
	wantMetric(t, after, "sluice_tunnels{"+loc+"}", 0)
	wantMetric(t, after, "sluice_handshakes_total{"+loc+`,status="101"}`, tunnels)
	wantMetric(t, after, "sluice_tunnel_bytes_total{"+loc+`,direction="up"}`, float64(up))
	wantMetric(t, after, "sluice_tunnel_bytes_total{"+loc+`,direction="down"}`, float64(down))
	wantMetric(t, after, `sluice_refusals_total{rule="origin"}`, 2)
	wantMetric(t, after, `sluice_refused_total{status="403"}`, 2)
	wantMetric(t, after, `sluice_http_requests_total{server="_",location="/",status="200"}`, 2)
	wantMetric(t, after, "sluice_handshake_duration_seconds_count", tunnels)
	wantMetric(t, after, "sluice_tunnel_duration_seconds_count", tunnels)
	wantMetric(t, after, `sluice_upstream_handshakes_total{group="`+be.addr+`",server="`+be.addr+`",address="`+be.addr+`"}`, tunnels)
	if after["sluice_open_fds"] <= 0 || after["sluice_max_fds"] < after["sluice_open_fds"] {
		t.Errorf("fds %v of %v", after["sluice_open_fds"], after["sluice_max_fds"])
	}

	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Version   string           `json:"version"`
		Refusals  map[string]int64 `json:"refusals"`
		Upstreams []struct {
			State      string `json:"state"`
			Handshakes int64  `json:"handshakes"`
		} `json:"upstreams"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st.Version == "" || st.Refusals["origin"] != 2 || len(st.Upstreams) != 1 || st.Upstreams[0].State != "up" || st.Upstreams[0].Handshakes != tunnels {
		t.Fatalf("/status: %+v", st)
	}
	resp, err = http.Get("http://" + adminAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}
}

func wantMetric(t *testing.T, m map[string]float64, series string, want float64) {
	t.Helper()
	got, ok := m[series]
	if !ok {
		t.Errorf("%s missing", series)
		return
	}
	if got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// Prometheus text format 0.0.4, strictly enough to catch what would break
// a scraper: every sample belongs to a family declared by a TYPE line
// before it, names and labels are well formed, values parse, no series
// repeats, and histograms are cumulative with +Inf equal to _count.
var (
	promName   = `[a-zA-Z_:][a-zA-Z0-9_:]*`
	promLabels = `(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?`
	promSample = regexp.MustCompile(`^(` + promName + `)(\{` + promLabels + `\})? (\S+)$`)
	promType   = regexp.MustCompile(`^# TYPE (` + promName + `) (counter|gauge|histogram|summary|untyped)$`)
	promHelp   = regexp.MustCompile(`^# HELP (` + promName + `) .*$`)
)

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	types := map[string]string{}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case promType.MatchString(line):
			m := promType.FindStringSubmatch(line)
			if types[m[1]] != "" {
				t.Errorf("line %d: family %s declared twice", n, m[1])
			}
			types[m[1]] = m[2]
		case promHelp.MatchString(line):
		case promSample.MatchString(line):
			m := promSample.FindStringSubmatch(line)
			name := m[1]
			family := name
			if types[family] == "" {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if base := strings.TrimSuffix(name, suf); base != name && types[base] == "histogram" {
						family = base
					}
				}
			}
			if types[family] == "" {
				t.Errorf("line %d: sample %s before its TYPE", n, name)
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil || math.IsNaN(v) {
				t.Errorf("line %d: value %q", n, m[3])
			}
			series := name + m[2]
			if _, dup := out[series]; dup {
				t.Errorf("line %d: series %s repeated", n, series)
			}
			out[series] = v
		default:
			t.Errorf("line %d is not Prometheus text: %q", n, line)
		}
	}
	for name, typ := range types {
		if typ != "histogram" {
			continue
		}
		prev := -1.0
		for _, le := range []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1", "10", "60", "300", "1800", "3600", "14400", "86400", "+Inf"} {
			v, ok := out[name+`_bucket{le="`+le+`"}`]
			if !ok {
				continue
			}
			if v < prev {
				t.Errorf("%s: bucket le=%s = %v below the previous %v", name, le, v, prev)
			}
			prev = v
		}
		if out[name+`_bucket{le="+Inf"}`] != out[name+"_count"] {
			t.Errorf("%s: +Inf bucket %v != count %v", name, out[name+`_bucket{le="+Inf"}`], out[name+"_count"])
		}
	}
	return out
}
