package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
	"time"
)

// FuzzPostTask sends arbitrary bodies to POST /api/v1/tasks through the
// API's real handler (token check, mux, decoder, validation, Submit) on a
// live requestor node without providers. A body must never get a 5xx, a 4xx
// must not create a task, and a 201 must create exactly one.
func FuzzPostTask(f *testing.F) {
	for _, s := range []string{
		`{"image":"hello:1","cmd":["echo","hi"]}`,
		`{"runtime":"wasm","image":"bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba","cmd":["echo","hi"],"timeout_ms":1000}`,
		`{"image":"a","timeout_ms":-5}`,
		`{"image":"a","resources":{"cpus":1e308,"memory_bytes":-1}}`,
		`{"image":"a","inputs":[{"cid":"notacid","path":"relative"}]}`,
		`{"image":"a","env":{"":"x"}}`,
		`{"image":"a","retries":101}`,
		`{"image":"a","colour":1}`,
		`{"image":"a"} {"image":"b"}`,
		`{"image":"a","stages":[{"cmd":[]}]}`,
		`[`,
		`null`,
		`{}`,
		``,
	} {
		f.Add([]byte(s))
	}
	// A fresh node every few hundred created tasks keeps List, which the
	// invariant needs twice per input, cheap however long the fuzzer runs.
	var n *Node
	var h http.Handler
	created := 0
	base := f.TempDir()
	fresh := func(tb testing.TB) {
		if n != nil {
			n.Close()
		}
		home, err := os.MkdirTemp(base, "node")
		if err != nil {
			tb.Fatal(err)
		}
		n, err = New(context.Background(), Config{
			Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			ProviderWait: 50 * time.Millisecond,
		})
		if err != nil {
			tb.Fatalf("start node: %v", err)
		}
		h = n.api.routes()
		created = 0
	}
	fresh(f)
	f.Cleanup(func() { n.Close() })
	count := func(t *testing.T) int {
		ts, err := n.List()
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		return len(ts)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if created >= 300 {
			fresh(t)
		}
		before := count(t)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/tasks", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+n.api.token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("no answer after 10s for %q; goroutines:\n%s", body, buf[:runtime.Stack(buf, true)])
		}
		after := count(t)
		switch code := rec.Code; {
		case code >= 500:
			t.Fatalf("status %d for %q: %s", code, body, rec.Body)
		case code == http.StatusCreated:
			created++
			if after != before+1 {
				t.Fatalf("201 but %d tasks before, %d after, for %q", before, after, body)
			}
		case code >= 400:
			if after != before {
				t.Fatalf("status %d created a task for %q: %s", code, body, rec.Body)
			}
		default:
			t.Fatalf("unexpected status %d for %q: %s", code, body, rec.Body)
		}
	})
}
