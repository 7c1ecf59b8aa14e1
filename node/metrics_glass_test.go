package node

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
)

// glassNode starts a requestor node on loopback with a short provider wait
// (a task nobody bids on fails within it).
func glassNode(t *testing.T, home string) *Node {
	t.Helper()
	n, err := New(t.Context(), Config{
		Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		ProviderWait: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// tasksGauge reads offload_tasks{state} from the node's registry.
func tasksGauge(n *Node) map[market.State]float64 {
	out := map[market.State]float64{}
	for _, st := range market.States {
		var m dto.Metric
		if err := n.metrics.tasks.WithLabelValues(string(st)).Write(&m); err != nil {
			panic(err)
		}
		out[st] = m.GetGauge().GetValue()
	}
	return out
}

// checkTasksGauge compares the gauge with want and with a full scan of the
// store (the truth the gauge stands in for).
func checkTasksGauge(t *testing.T, n *Node, want map[market.State]float64) {
	t.Helper()
	got := tasksGauge(n)
	ts, err := n.req.List()
	if err != nil {
		t.Fatal(err)
	}
	scan := map[market.State]float64{}
	for _, tk := range ts {
		scan[tk.State]++
	}
	for _, st := range market.States {
		if got[st] != want[st] {
			t.Errorf("offload_tasks{state=%q} = %v, want %v", st, got[st], want[st])
		}
		if got[st] != scan[st] {
			t.Errorf("offload_tasks{state=%q} = %v, but the store holds %v", st, got[st], scan[st])
		}
	}
}

// scrapeAPI GETs the API's /metrics with the token and returns the body.
func scrapeAPI(t *testing.T, home string) string {
	t.Helper()
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "GET", cl.BaseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestTasksGaugeFollowsTransitionsWithoutScan: offload_tasks{state} is
// right after submits, a failure, a cancel, a refused transition and a
// restart, and no scrape lists the store.
func TestTasksGaugeFollowsTransitionsWithoutScan(t *testing.T) {
	home := t.TempDir()
	n := glassNode(t, home)
	later := time.Now().Add(time.Hour).UnixMilli()
	// Two tasks held until later (they stay pending), one that nobody
	// bids on (it fails after ProviderWait).
	held1, err := n.Submit(t.Context(), TaskSpec{Image: "x:1", NotBefore: later})
	if err != nil {
		t.Fatal(err)
	}
	held2, err := n.Submit(t.Context(), TaskSpec{Image: "x:1", NotBefore: later})
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := n.Submit(t.Context(), TaskSpec{Image: "x:1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := n.Wait(t.Context(), doomed.ID); err != nil || got.State != string(market.StateFailed) {
		t.Fatalf("doomed task: %+v %v", got, err)
	}
	if _, err := n.Cancel(t.Context(), held2.ID); err != nil {
		t.Fatal(err)
	}
	// A transition the task refuses (it ended) moves nothing.
	if _, err := n.Cancel(t.Context(), doomed.ID); !errors.Is(err, market.ErrInvalidTransition) {
		t.Fatalf("cancel of a failed task: %v", err)
	}
	want := map[market.State]float64{market.StatePending: 1, market.StateFailed: 1, market.StateCanceled: 1}
	checkTasksGauge(t, n, want)

	// Scrapes read the gauge, never the store: List is not called.
	lists := n.metrics.tasksStore.lists.Load()
	for range 3 {
		body := scrapeAPI(t, home)
		if want := `offload_tasks{state="pending"} 1`; !strings.Contains(body, want) {
			t.Fatalf("scrape lacks %q:\n%s", want, body)
		}
	}
	if got := n.metrics.tasksStore.lists.Load(); got != lists {
		t.Fatalf("3 scrapes listed the task store %d times, want 0", got-lists)
	}
	// The counter does see List (the test would otherwise prove nothing).
	if _, err := n.List(); err != nil {
		t.Fatal(err)
	}
	if got := n.metrics.tasksStore.lists.Load(); got != lists+1 {
		t.Fatalf("List counted %d times, want 1", got-lists)
	}

	// After a restart the gauge starts from the stored tasks, and keeps
	// following transitions.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = glassNode(t, home)
	checkTasksGauge(t, n, want)
	if _, err := n.Cancel(t.Context(), held1.ID); err != nil {
		t.Fatal(err)
	}
	checkTasksGauge(t, n, map[market.State]float64{market.StateFailed: 1, market.StateCanceled: 2})
}
