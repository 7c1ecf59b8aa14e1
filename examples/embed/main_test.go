package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun runs the example as `go run ./examples/embed` would: two nodes in
// this process, one WASM task through the market, the result printed.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{"stdout    hello from an embedded swarm", "→ completed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
