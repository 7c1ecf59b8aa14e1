package node_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/node"
)

// apiCall is one request to a node's API.
type apiCall struct {
	method, path string
	body         string
	noToken      bool
}

func (c apiCall) do(t *testing.T, cl *client.Client) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, cl.BaseURL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if !c.noToken {
		req.Header.Set("Authorization", "Bearer "+cl.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, b
}

// TestAPIStatusCodes runs every route through its success and error
// statuses on a live node (no Docker needed).
func TestAPIStatusCodes(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) {
		c.ProviderWait = 200 * time.Millisecond
		c.ContentTimeout = time.Second
	})
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	// Fixtures: content the node holds, a finished (failed) task, a file
	// on the node's disk.
	have, err := cl.AddReader(t.Context(), strings.NewReader("hello api"), "hello.txt", 1)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitFor(t, n, sub.ID, 10*time.Second)
	if failed.State != "failed" {
		t.Fatalf("fixture task: %s", failed.State)
	}
	file := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(file, []byte("on disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	const missing = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba" // valid, held by nobody
	dest := func() string { return filepath.Join(t.TempDir(), "out") }
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	huge := `{"path":"` + strings.Repeat("a", 2<<20) + `"}`

	cases := []struct {
		name string
		call apiCall
		want int
	}{
		{"dashboard", apiCall{method: "GET", path: "/", noToken: true}, 200},
		{"openapi", apiCall{method: "GET", path: "/openapi.json", noToken: true}, 200},
		{"metrics", apiCall{method: "GET", path: "/metrics", noToken: true}, 200},
		{"no token", apiCall{method: "GET", path: "/api/v1/id", noToken: true}, 401},
		{"id", apiCall{method: "GET", path: "/api/v1/id"}, 200},
		{"peers", apiCall{method: "GET", path: "/api/v1/peers"}, 200},
		{"unknown route", apiCall{method: "GET", path: "/api/v1/nope"}, 404},
		{"wrong method", apiCall{method: "DELETE", path: "/api/v1/tasks"}, 405},
		{"submit malformed", apiCall{method: "POST", path: "/api/v1/tasks", body: "{nope"}, 400},
		{"submit unknown field", apiCall{method: "POST", path: "/api/v1/tasks", body: `{"image":"a","colour":1}`}, 400},
		{"submit invalid", apiCall{method: "POST", path: "/api/v1/tasks", body: `{"image":"a","timeout_ms":-5}`}, 400},
		{"submit too large", apiCall{method: "POST", path: "/api/v1/tasks", body: huge}, 413},
		{"list", apiCall{method: "GET", path: "/api/v1/tasks"}, 200},
		{"list by state", apiCall{method: "GET", path: "/api/v1/tasks?state=failed,running"}, 200},
		{"list by unknown state", apiCall{method: "GET", path: "/api/v1/tasks?state=sleeping"}, 400},
		{"get", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID}, 200},
		{"get unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope"}, 404},
		{"events of ended task", apiCall{method: "GET", path: "/api/v1/tasks/" + sub.ID + "/events"}, 200},
		{"events unknown", apiCall{method: "GET", path: "/api/v1/tasks/nope/events"}, 404},
		{"cancel unknown", apiCall{method: "POST", path: "/api/v1/tasks/nope/cancel"}, 404},
		{"cancel ended", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/cancel"}, 409},
		{"results unknown", apiCall{method: "POST", path: "/api/v1/tasks/nope/results", body: js(map[string]string{"dest": dest()})}, 404},
		{"results relative", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: `{"dest":"rel"}`}, 400},
		{"results malformed", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: `[`}, 400},
		{"results of a task without outputs", apiCall{method: "POST", path: "/api/v1/tasks/" + sub.ID + "/results", body: js(map[string]string{"dest": dest()})}, 409},
		{"all events bad snapshot", apiCall{method: "GET", path: "/api/v1/events?snapshot=yes"}, 400},
		{"pool", apiCall{method: "GET", path: "/api/v1/pool?gpus=any"}, 200},
		{"pool bad filter", apiCall{method: "GET", path: "/api/v1/pool?cpus=lots"}, 400},
		{"pool stats", apiCall{method: "GET", path: "/api/v1/pool/stats"}, 200},
		{"ledger", apiCall{method: "GET", path: "/api/v1/ledger"}, 200},
		{"add path", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]string{"path": file})}, 200},
		{"add relative path", apiCall{method: "POST", path: "/api/v1/content/add", body: `{"path":"f.txt"}`}, 400},
		{"add missing path", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]string{"path": file + ".gone"})}, 400},
		{"add bad cid version", apiCall{method: "POST", path: "/api/v1/content/add", body: js(map[string]any{"path": file, "cid_version": 7})}, 400},
		{"add malformed", apiCall{method: "POST", path: "/api/v1/content/add", body: `{"path":`}, 400},
		{"add too large", apiCall{method: "POST", path: "/api/v1/content/add", body: huge}, 413},
		{"add body", apiCall{method: "POST", path: "/api/v1/content?name=x", body: "bytes"}, 200},
		{"add body bad cid version", apiCall{method: "POST", path: "/api/v1/content?cid_version=2", body: "bytes"}, 400},
		{"cat", apiCall{method: "GET", path: "/api/v1/content/" + have}, 200},
		{"cat bad cid", apiCall{method: "GET", path: "/api/v1/content/notacid"}, 400},
		{"cat missing", apiCall{method: "GET", path: "/api/v1/content/" + missing}, 404},
		{"get content", apiCall{method: "POST", path: "/api/v1/content/" + have + "/get", body: js(map[string]string{"dest": dest()})}, 200},
		{"get content bad cid", apiCall{method: "POST", path: "/api/v1/content/notacid/get", body: js(map[string]string{"dest": dest()})}, 400},
		{"get content relative", apiCall{method: "POST", path: "/api/v1/content/" + have + "/get", body: `{"dest":"x"}`}, 400},
		{"pins", apiCall{method: "GET", path: "/api/v1/pins"}, 200},
		{"unpin bad cid", apiCall{method: "DELETE", path: "/api/v1/pins/notacid"}, 400},
		{"image push without ref", apiCall{method: "POST", path: "/api/v1/images/push", body: `{}`}, 400},
		{"image push malformed", apiCall{method: "POST", path: "/api/v1/images/push", body: `{"ref":1}`}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.call.do(t, cl)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.call.method, tc.call.path, resp.StatusCode, tc.want, body)
			}
			if resp.StatusCode >= 400 {
				var e client.Error
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error without a JSON message: %q", body)
				}
			}
		})
	}
	ts, err := cl.List(t.Context())
	if err != nil || len(ts) != 1 {
		t.Errorf("bad requests created tasks: %v, %d tasks", err, len(ts))
	}
}

// TestListTasksByState: ?state= keeps only the tasks in those states.
func TestListTasksByState(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 200 * time.Millisecond })
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, n, sub.ID, 10*time.Second)
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	for state, want := range map[string]int{"failed": 1, "running": 0, "running,FAILED": 1, "": 1} {
		var got []client.Task
		_, body := apiCall{method: "GET", path: "/api/v1/tasks?state=" + state}.do(t, cl)
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("state=%s: %v %s", state, err, body)
		}
		if len(got) != want {
			t.Errorf("state=%s: %d tasks, want %d", state, len(got), want)
		}
	}
}

// TestAllEventsStream: GET /api/v1/events sends the snapshot, then every
// change of any task, ending with its terminal state.
func TestAllEventsStream(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.ProviderWait = 300 * time.Millisecond })
	old, err := n.Submit(t.Context(), node.TaskSpec{Image: "old:1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, n, old.ID, 10*time.Second)
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", cl.BaseURL+"/api/v1/events?snapshot=1", nil)
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	events := make(chan client.Task)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
			if !ok {
				continue
			}
			var task client.Task
			if json.Unmarshal(data, &task) == nil {
				select {
				case events <- task:
				case <-t.Context().Done():
					return
				}
			}
		}
	}()
	next := func() client.Task {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return client.Task{}
	}
	if ev := next(); ev.ID != old.ID || ev.State != "failed" {
		t.Fatalf("snapshot: %s %s", ev.ID, ev.State)
	}
	sub, err := n.Submit(t.Context(), node.TaskSpec{Image: "new:1"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		ev := next()
		if ev.ID != sub.ID {
			t.Fatalf("event of another task: %s", ev.ID)
		}
		seen = append(seen, ev.State)
		if ev.State == "failed" {
			break
		}
	}
	t.Logf("states seen: %v", seen)
}

func TestPostTaskRefusesTrailingData(t *testing.T) {
	home := t.TempDir()
	startNode(t, home, false, nil)
	c, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"image":"a"} {"image":"b"}`, `{"image":"a"}x000`} {
		req, _ := http.NewRequest("POST", c.BaseURL+"/api/v1/tasks", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", body, resp.StatusCode)
		}
	}
	if ts, _ := c.List(t.Context()); len(ts) != 0 {
		t.Errorf("trailing data created %d tasks", len(ts))
	}
}
