package node_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/node"
)

// requireChromium returns a headless Chromium, installing it with
// scripts/ensure-chromium.sh when missing. Without one the test skips, or
// fails when CI is "true".
func requireChromium(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "bash", filepath.Join("..", "scripts", "ensure-chromium.sh")).Output()
	path := strings.TrimSpace(string(out))
	if err != nil || path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no chromium (scripts/ensure-chromium.sh: %v)", err)
		}
		t.Skipf("no chromium and it could not be installed (%v): run scripts/ensure-chromium.sh as root", err)
	}
	return path
}

// chromium runs a headless browser on url with extra flags and returns
// its stdout.
func chromium(t *testing.T, browser, link string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900", "--virtual-time-budget=5000"}, flags...)
	cmd := exec.CommandContext(ctx, browser, append(args, link)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", flags, err, stderr.String())
	}
	return string(out)
}

// TestDashboardInHeadlessChromium opens the dashboard of a requestor with
// a finished task in a real browser: the page must take the token from
// the fragment, list the task with its state, the connected provider, and
// the task's bids, executions and output.
func TestDashboardInHeadlessChromium(t *testing.T) {
	browser := requireChromium(t)
	wasmPath := testimage.BuildWASM(t)
	reqHome := t.TempDir()
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Executors = []string{"wasm"} })
	req := startNode(t, reqHome, false, prov.Identity().Addrs)
	mod, err := req.Add(t.Context(), wasmPath, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "shown-in-the-browser"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); got.State != "completed" {
		t.Fatalf("task: %s %s", got.State, got.Error)
	}
	cl, err := client.FromHome(reqHome)
	if err != nil {
		t.Fatal(err)
	}

	// The page itself is public and confined by its CSP.
	resp, err := http.Get(cl.BaseURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("dashboard CSP = %q", csp)
	}

	link := cl.BaseURL + "/#token=" + url.QueryEscape(cl.Token) + "&task=" + sub.ID
	dom := chromium(t, browser, link, "--dump-dom")
	for _, want := range []string{
		`data-task="` + sub.ID + `" data-state="completed"`, // the task list, filled by the API
		`data-peer="` + prov.ID().String() + `"`,            // the peers panel
		`id="stdout">shown-in-the-browser`,                  // the selected task's stdout
		"won: ",                                             // its bid outcome
		`id="live" class="on"`,                              // the event stream is connected
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, cl.Token) {
		t.Error("the token is left in the page")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	// A running task's output is shown live as it is written.
	running, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"tick", "100", "100ms"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if !testwait.Until(t.Context(), 30*time.Second, 50*time.Millisecond, func() bool {
		cur, err := req.Get(running.ID)
		return err == nil && cur.State == "running"
	}) {
		t.Fatal("the ticking task never ran")
	}
	liveDOM := chromium(t, browser, cl.BaseURL+"/#token="+url.QueryEscape(cl.Token)+"&task="+running.ID, "--dump-dom")
	if !strings.Contains(liveDOM, `id="livelog">tick 1 `) {
		t.Errorf("the running task's live output is not shown:\n%s", liveDOM)
	}
	if _, err := req.Cancel(t.Context(), running.ID); err != nil {
		t.Fatal(err)
	}

	// Without a token the page says how to get one.
	if dom := chromium(t, browser, cl.BaseURL+"/", "--dump-dom"); !strings.Contains(dom, "offload dashboard") || strings.Contains(dom, `id="notoken" class="notice" hidden`) {
		t.Error("without a token the page does not point to `offload dashboard`")
	}

	// A screenshot to look at: kept in $OFFLOAD_SCREENSHOT_DIR when set.
	dir := os.Getenv("OFFLOAD_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "dashboard.png")
	chromium(t, browser, link, "--screenshot="+shot, "--hide-scrollbars")
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot: %s", shot)
}
