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

// scrape reads a node's /metrics (no token) into "name{labels}" → value.
func scrape(t *testing.T, home string) map[string]float64 {
	t.Helper()
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(cl.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
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
