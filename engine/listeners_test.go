package engine

import (
	"os"
	"testing"
)

// TestLoopsListenerLeavesNoFile: the listener gnet insists on must not
// land in the working directory (read-only under systemd's
// ProtectSystem=strict, and where a killed process used to leave socket
// files behind) and must be gone from the filesystem once Start returns,
// so that neither a kill nor a local process can make use of it.
func TestLoopsListenerLeavesNoFile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	wd := t.TempDir()
	t.Chdir(wd)

	b := startBackend(t, backendOpts{})
	p := startProxy(t, simpleConfig(b.addr))
	for _, dir := range []string{tmp, wd} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("%s holds %s after Start", dir, e.Name())
		}
	}
	// The loops serve all the same.
	c := dialWS(t, p, "/ws/", nil, nil)
	defer c.Close()
	if err := c.WriteMessage(1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hi" {
		t.Fatalf("echo: %q, %v", msg, err)
	}
}
