package node_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/node"
)

// scrape reads a node's /metrics (with the API's token, as Prometheus
// sends it) into "name{labels}" → value.
func scrape(t *testing.T, home string) map[string]float64 {
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
	return scrapeURL(t, cl.HTTP, req)
}

// scrapeURL sends a scrape request and parses the answer.
func scrapeURL(t *testing.T, hc *http.Client, req *http.Request) map[string]float64 {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d", req.URL, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsAfterATask runs a WASM task between two nodes and checks the
// counters, gauges and histogram both sides export.
func TestMetricsAfterATask(t *testing.T) {
	wasmPath := testimage.BuildWASM(t)
	provHome, reqHome := t.TempDir(), t.TempDir()
	prov := startNode(t, provHome, true, nil, func(c *node.Config) { c.Executors = []string{"wasm"} })
	req := startNode(t, reqHome, false, prov.Identity().Addrs)
	mod, err := req.Add(t.Context(), wasmPath, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.Submit(t.Context(), node.TaskSpec{Runtime: "wasm", Image: mod, Cmd: []string{"echo", "metered"}, TimeoutMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); got.State != "completed" {
		t.Fatalf("task: %s %s", got.State, got.Error)
	}

	r := scrape(t, reqHome)
	for name, want := range map[string]float64{
		`offload_tasks{state="completed"}`:             1,
		`offload_tasks{state="running"}`:               0,
		`offload_tasks_ended_total{state="completed"}`: 1,
		`offload_tasks_ended_total{state="failed"}`:    0,
		`offload_bids_received_total`:                  1,
		`offload_awards_total`:                         1,
		`offload_failovers_total`:                      0,
		`offload_peers_connected`:                      1,
	} {
		if got, ok := r[name]; !ok || got != want {
			t.Errorf("requestor %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if r["offload_pool_providers"] < 1 {
		t.Errorf("requestor pool_providers = %v, want the provider", r["offload_pool_providers"])
	}
	// The pool's record and exchange counters are exported, every label
	// from the first scrape (accepted: at least the provider's record).
	for _, name := range []string{`offload_pool_records_total{result="evicted"}`, `offload_pool_exchange_total{kind="lookups"}`,
		`offload_pool_exchange_total{kind="lookup_asks"}`, `offload_pool_exchange_total{kind="unverified"}`} {
		if _, ok := r[name]; !ok {
			t.Errorf("requestor has no %s", name)
		}
	}
	if r[`offload_pool_records_total{result="accepted"}`] < 1 {
		t.Errorf("requestor pool_records_total{accepted} = %v, want the provider's record", r[`offload_pool_records_total{result="accepted"}`])
	}
	p := scrape(t, provHome)
	if got := p[`offload_execution_duration_seconds_count{result="ok",runtime="wasm"}`]; got != 1 {
		t.Errorf("provider execution_duration_seconds_count = %v, want 1", got)
	}
	if got := p[`offload_execution_duration_seconds_sum{result="ok",runtime="wasm"}`]; got <= 0 || got > 60 {
		t.Errorf("provider execution_duration_seconds_sum = %v", got)
	}
	if _, ok := p["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestMetricsListener: --metrics HOST:PORT serves /metrics without a token
// on its own address, and nothing else there; the API's /metrics still
// needs the token; a non-loopback metrics address needs
// AllowRemoteMetrics.
func TestMetricsListener(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.MetricsAddr = "127.0.0.1:0" })
	u := n.MetricsURL()
	if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.HasSuffix(u, "/metrics") {
		t.Fatalf("MetricsURL = %q", u)
	}
	req, err := http.NewRequestWithContext(t.Context(), "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := scrapeURL(t, http.DefaultClient, req) // no token
	if _, ok := m[`offload_tasks{state="pending"}`]; !ok {
		t.Errorf("metrics listener: no offload_tasks series in %d samples", len(m))
	}
	for _, path := range []string{"/", "/api/v1/id", "/openapi.json"} {
		resp, err := http.Get(strings.TrimSuffix(u, "/metrics") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("metrics listener %s: %d, want 404 (it serves /metrics only)", path, resp.StatusCode)
		}
	}
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(cl.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API /metrics without token: %d, want 401", resp.StatusCode)
	}

	// 192.0.2.1 (TEST-NET-1) is refused before any listen is tried.
	_, err = node.New(t.Context(), node.Config{Home: t.TempDir(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, MetricsAddr: "192.0.2.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--metrics-allow-remote") {
		t.Errorf("non-loopback metrics address without AllowRemoteMetrics: %v, want a refusal naming --metrics-allow-remote", err)
	}
}

// metricValue sums the samples of one counter or gauge family of a node's
// registry (through Node.Metrics, as an embedding program would).
func metricValue(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	fams, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
