package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-project/offload/client"
)

// TestDashboardCommandAndCompletion: `offload dashboard` prints a link
// whose fragment carries the token (and the node never logs it); shell
// completion works and completes task ids from the running node.
func TestDashboardCommandAndCompletion(t *testing.T) {
	home := t.TempDir()
	p := startNodeProc(t, home)
	token, err := os.ReadFile(filepath.Join(home, client.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(token))

	out, _, code := offload(t, "dashboard", "--home", home, "--no-open")
	link := strings.TrimSpace(out)
	u, err := url.Parse(link)
	if code != 0 || err != nil || u.Fragment != "token="+tok || u.Hostname() != "127.0.0.1" {
		t.Fatalf("dashboard: %d %q", code, out)
	}
	resp, err := http.Get(link) // the fragment stays in the client
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<title>offload node</title>") {
		t.Fatalf("dashboard page: %d", resp.StatusCode)
	}
	out, _, _ = offload(t, "dashboard", "--home", home, "--json")
	var j map[string]string
	if err := json.Unmarshal([]byte(out), &j); err != nil || j["url"] != link {
		t.Errorf("dashboard --json: %q", out)
	}

	// Completion: the scripts generate, and task ids complete.
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if out, _, code := offload(t, "completion", sh); code != 0 || !strings.Contains(out, "offload") {
			t.Errorf("completion %s: %d", sh, code)
		}
	}
	out, stderr, code := offload(t, "run", "--home", home, "--image", "none:1", "--json")
	var sub map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("run: %d %s %s", code, out, stderr)
	}
	out, _, _ = offload(t, "__complete", "--home", home, "status", "")
	if !strings.Contains(out, sub["id"]+"\t") {
		t.Errorf("status completion lacks the task id:\n%s", out)
	}
	p.stop(t)
	if strings.Contains(p.log.String(), tok) {
		t.Error("the node logged its API token")
	}
}
