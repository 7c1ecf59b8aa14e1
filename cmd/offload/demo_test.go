package main_test

import (
	"strings"
	"testing"

	"github.com/offload-project/offload/internal/testimage"
)

// TestDemo runs `offload demo` as a user would, with Docker when an engine
// answers and with WASM when none does (DOCKER_HOST pointed at nothing).
func TestDemo(t *testing.T) {
	cases := map[string][]string{"wasm": {"DOCKER_HOST=unix:///nonexistent/docker.sock"}}
	if testimage.DockerAvailable(t.Context()) == nil {
		cases["docker"] = nil
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			out, stderr, code := offload(t, "demo")
			if code != 0 {
				t.Fatalf("demo exited %d\n%s\n%s", code, out, stderr)
			}
			for _, want := range []string{"discovery: the requestor sees 2 providers", "won: lowest price", "hello from the swarm", "done: the task crossed the swarm"} {
				if !strings.Contains(out, want) {
					t.Errorf("demo output lacks %q:\n%s", want, out)
				}
			}
			if name == "wasm" && !strings.Contains(out, "using the WASM runtime") {
				t.Errorf("without Docker the demo must say it uses WASM:\n%s", out)
			}
		})
	}
}
