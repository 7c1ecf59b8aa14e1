package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublicFlags: `init --public` marks the home, refuses to mix with a
// private swarm; `node` refuses bad reachability flags before it starts.
func TestPublicFlags(t *testing.T) {
	home := t.TempDir()
	out, errOut, code := offload(t, "init", "--home", home, "--public")
	if code != 0 || !strings.Contains(out, "public network") {
		t.Fatalf("init --public: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(home, "public")); err != nil {
		t.Fatalf("init --public left no mark: %v", err)
	}
	if _, _, code := offload(t, "init", "--home", t.TempDir(), "--public", "--private"); code == 0 {
		t.Error("init --public --private was accepted")
	}
	priv := t.TempDir()
	if _, _, code := offload(t, "init", "--home", priv, "--private"); code != 0 {
		t.Fatal("init --private failed")
	}
	if _, errOut, code := offload(t, "init", "--home", priv, "--public"); code == 0 || !strings.Contains(errOut, "private swarm") {
		t.Errorf("init --public on a private swarm's home: %d %q", code, errOut)
	}
	for _, bad := range [][]string{
		{"--dht-mode", "both"},
		{"--reachability", "sometimes"},
		{"--relay-max-data", "lots"},
		{"--relay-max-duration", "1ms"},
		{"--public", "--swarm-key", filepath.Join(priv, "swarm.key")},
	} {
		args := append([]string{"node", "--home", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}, bad...)
		if _, errOut, code := offload(t, args...); code == 0 || errOut == "" {
			t.Errorf("node %v: exit %d, stderr %q", bad, code, errOut)
		}
	}
}
