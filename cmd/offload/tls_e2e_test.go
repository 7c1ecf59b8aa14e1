package main_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
)

// freeLoopbackAddr returns a loopback address with a port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestNodeTLSAndMetricsFlags runs `offload node --api-tls --metrics ADDR`:
// client commands pin the fingerprint the node wrote, a wrong pin (flag or
// environment) is refused with a clear error, the API's /metrics needs the
// token while the --metrics address serves it without one, and a
// non-loopback --metrics or half a certificate does not start.
func TestNodeTLSAndMetricsFlags(t *testing.T) {
	dir := t.TempDir()
	metricsAddr := freeLoopbackAddr(t)
	p := startNodeProc(t, filepath.Join(dir, "A"), "--api-tls", "--metrics", metricsAddr)
	fpBytes, err := os.ReadFile(filepath.Join(p.home, client.FingerprintFile))
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.TrimSpace(string(fpBytes))

	out, stderr, code := offload(t, "id", "--home", p.home)
	if code != 0 || !strings.Contains(out, "api https://127.0.0.1:") || !strings.Contains(out, "api certificate "+fp) {
		t.Fatalf("id over TLS: %d\n%s%s", code, out, stderr)
	}
	wrong := client.Fingerprint([]byte("not the node's certificate"))
	_, stderr, code = offload(t, "id", "--home", p.home, "--api-fingerprint", wrong)
	if code == 0 || !strings.Contains(stderr, "does not match the pinned fingerprint") {
		t.Fatalf("id with a wrong --api-fingerprint: exit %d: %s", code, stderr)
	}
	t.Setenv(client.FingerprintEnv, wrong)
	_, stderr, code = offload(t, "peers", "--home", p.home)
	if code == 0 || !strings.Contains(stderr, "does not match the pinned fingerprint") {
		t.Fatalf("peers with a wrong %s: exit %d: %s", client.FingerprintEnv, code, stderr)
	}
	// The flag wins over the environment.
	if _, stderr, code = offload(t, "peers", "--home", p.home, "--api-fingerprint", fp); code != 0 {
		t.Fatalf("peers with the right --api-fingerprint: %s", stderr)
	}
	t.Setenv(client.FingerprintEnv, "")

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "offload_tasks{") {
		t.Fatalf("--metrics listener: %d %.200s", resp.StatusCode, body)
	}
	cl, err := client.FromHome(p.home)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = cl.HTTP.Get(cl.BaseURL + "/metrics") // pinned, no token
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API /metrics without the token: %d, want 401", resp.StatusCode)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"remote metrics":   {[]string{"--metrics", "192.0.2.1:0"}, "--metrics-allow-remote"},
		"cert without key": {[]string{"--api-tls-cert", filepath.Join(dir, "cert.pem")}, "--api-tls-key"},
	} {
		home := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if _, _, code := offload(t, "init", "--home", home); code != 0 {
			t.Fatalf("init %s failed", home)
		}
		args := append([]string{"node", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}, tc.args...)
		_, stderr, code := offload(t, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, want a refusal naming %s: %s", name, code, tc.want, stderr)
		}
	}
}
