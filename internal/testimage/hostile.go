package testimage

import (
	"context"
	"sync"
	"testing"
	"time"
)

// HostileTag is the image tag of the hostile workload (./hostile): a program
// that attacks the provider running it, binary at /hostile, FROM scratch.
const HostileTag = "offload-test/hostile:latest"

var hostileImageOnce, hostileWASMOnce struct {
	sync.Once
	val string
	err error
}

// BuildHostile builds the hostile workload as the Docker image HostileTag
// (through the Engine API, nothing pulled; skipped when the image already
// holds the same binary) and as a WASI module, each once per test process.
// It returns the tag and the .wasm path, and skips or fails the test like
// RequireDocker when no engine answers.
func BuildHostile(tb testing.TB) (tag, wasmPath string) {
	tb.Helper()
	RequireDocker(tb)
	hostileImageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dir, err := sourceDir("hostile")
		if err == nil {
			_, err = BuildImage(ctx, HostileTag, dir)
		}
		hostileImageOnce.val, hostileImageOnce.err = HostileTag, err
	})
	if hostileImageOnce.err != nil {
		tb.Fatalf("build the hostile image: %v", hostileImageOnce.err)
	}
	return hostileImageOnce.val, HostileWASM(tb)
}

// HostileWASM compiles the hostile workload for wasip1 (once per test
// process, into the same cache directory as hello) and returns its path.
// It needs no Docker engine.
func HostileWASM(tb testing.TB) string {
	tb.Helper()
	hostileWASMOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		hostileWASMOnce.val, hostileWASMOnce.err = binary(ctx, "hostile", "wasip1", "wasm")
	})
	if hostileWASMOnce.err != nil {
		tb.Fatalf("build hostile.wasm: %v", hostileWASMOnce.err)
	}
	return hostileWASMOnce.val
}
