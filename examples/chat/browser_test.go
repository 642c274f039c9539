package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/engine"
)

// The browser test's budgets: the whole test, and one expected change on a
// page (a connection opening, a message arriving).
const (
	browserTimeout = 60 * time.Second
	pageWait       = 15 * time.Second
)

// TestBrowserChat runs the demo as a user would: sluice serves public/ and
// proxies /ws/ to the chat backend, and two tabs of headless Chromium chat
// through it. A message typed in one tab must appear in the other, with its
// sender's name; a screenshot of the receiving tab is saved to
// artifacts/chat-browser.png at the repository root.
func TestBrowserChat(t *testing.T) {
	chromium := findChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()

	publicDir, err := filepath.Abs("public")
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, Options{})
	page := startSluice(t, publicDir, b.addr) + "/#lobby"

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // required when running as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profileDir(t)),
		chromedp.WindowSize(900, 640),
	)
	defer cancelAlloc() // stops Chromium and waits for it, before TempDir's cleanup
	tab1, cancel1 := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancel1()
	open := func(tab context.Context, n int) {
		t.Helper()
		if err := chromedp.Run(tab, chromedp.Navigate(page), waitJS(`document.querySelector('#status').textContent === 'connected'`)); err != nil {
			t.Fatalf("tab %d: open %s: %v", n, page, err)
		}
	}
	open(tab1, 1) // starts the browser
	// Only now, with tab1's browser running, does a context derived from
	// it open a tab in that browser instead of starting another one.
	tab2, cancel2 := chromedp.NewContext(tab1)
	defer cancel2()
	open(tab2, 2)

	// bob names himself; Enter in the name field reconnects under the new
	// name. Once his own join notice is shown he is in the room.
	if err := chromedp.Run(tab2,
		chromedp.SendKeys("#name", "bob"+kb.Enter),
		waitJS(`[...document.querySelectorAll('#messages li.notice')].some(li => li.textContent.startsWith('bob joined'))`),
	); err != nil {
		t.Fatalf("tab 2: join as bob: %v", err)
	}

	// alice names herself and sends at once: the page reconnects under the
	// new name and sends the message after its hello. The text carries
	// markup that must be shown, not parsed.
	const text = `hello bob, <b>this</b> stays text`
	if err := chromedp.Run(tab1,
		chromedp.SendKeys("#name", "alice"),
		chromedp.SendKeys("#text", text),
		chromedp.Click("#send"),
	); err != nil {
		t.Fatalf("tab 1: send: %v", err)
	}
	arrived := fmt.Sprintf(`[...document.querySelectorAll('#messages li.msg')].some(li =>
		li.querySelector('.name').textContent === 'alice' &&
		li.querySelector('.text').textContent === %q &&
		li.querySelector('.text').children.length === 0)`, text)
	if err := chromedp.Run(tab2, waitJS(arrived)); err != nil {
		var items []string
		_ = chromedp.Run(tab2, chromedp.Evaluate(`[...document.querySelectorAll('#messages li')].map(li => li.className + ': ' + li.textContent)`, &items))
		t.Fatalf("tab 2: alice's message did not arrive: %v; the list holds %q", err, items)
	}

	var png []byte
	if err := chromedp.Run(tab2, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join(repoRoot(t), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "chat-browser.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of tab 2: %s", shot)
}

// waitJS polls expression on the page until it is true, for pageWait at
// most.
func waitJS(expression string) chromedp.Action {
	return chromedp.Poll(expression, nil, chromedp.WithPollingTimeout(pageWait))
}

// findChromium returns the Chromium binary. Without one the test is skipped
// on a developer's machine and fails in CI, where its absence is a broken
// image, not a choice.
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	t.Fatal("chromium not installed (CI is set, so this is an error): apt-get install chromium")
	return ""
}

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

// startSluice runs sluice in-process in front of the chat: it serves
// publicDir at / (unknown paths fall back to index.html) and proxies /ws/
// to backendAddr, as in configs/chat.toml. It returns the base URL,
// http://127.0.0.1:PORT, once sluice accepts connections.
func startSluice(t *testing.T, publicDir, backendAddr string) (url string) {
	t.Helper()
	addr := freeAddr(t)
	tomlText := fmt.Sprintf(`
[log]
access_log = "off"

[[server]]
listen = [%q]

  [[server.location]]
  path = "/"
  root = %q
  try_files = ["$uri", "$uri/", "/index.html"]

  [[server.location]]
  path = "/ws/"
  proxy_pass = %q
`, addr, publicDir, backendAddr)
	cfg, err := configs.Parse([]byte(tomlText), "chat-browser.toml")
	if err != nil {
		t.Fatalf("sluice config: %v", err)
	}
	eng, err := engine.New(cfg, engine.Logs{})
	if err != nil {
		t.Fatalf("sluice: %v", err)
	}
	if err := eng.Start(); err != nil {
		t.Fatalf("sluice start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			t.Errorf("sluice stop: %v", err)
		}
	})
	waitAccepts(t, addr)
	return "http://" + addr
}

// freeAddr returns a loopback address with a port nobody listens on right
// now (the kernel's choice for port 0, released again).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitAccepts dials addr until a connection succeeds, for waitShort at
// most, each attempt bounded by its own timeout.
func waitAccepts(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitShort)
	for attempt := 1; ; attempt++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing accepts on %s after %d attempts: %v", addr, attempt, err)
		}
		time.Sleep(20 * time.Millisecond) // connection refused returns at once: pace the retries
	}
}

// profileDir is a fresh Chromium profile directory. Not t.TempDir: a
// Chromium helper process can still be writing into it for a moment after
// the browser has exited, and TempDir's cleanup then fails the test. This
// one is removed with retries, and a leftover is only logged.
func profileDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-chat-profile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 50; i++ {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("Chromium profile %s not removed: %v", dir, err)
	})
	return dir
}
