package main

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: the profiling endpoint refuses any address that
// is not loopback, serves on loopback, writes its URL under the home and
// removes it when stopped.
func TestPprofLoopbackOnly(t *testing.T) {
	home := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "localhost:0"} {
		if stop, err := startPprof(addr, home, log); err == nil {
			stop()
			t.Fatalf("%s accepted", addr)
		}
	}
	stop, err := startPprof("127.0.0.1:0", home, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, PprofFile))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(strings.TrimSpace(string(b)) + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("cmdline: %s %q", resp.Status, body)
	}
	stop()
	if _, err := os.Stat(filepath.Join(home, PprofFile)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", PprofFile, err)
	}
}
