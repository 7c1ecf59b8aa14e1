package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// BenchmarkWASMTaskThroughput runs trivial WASM tasks through one requestor
// and four providers, all embedded in this process, with 32 tasks in flight,
// and reports tasks/s and CPU per task. It is the in-process twin of the
// harness's tasks_per_second, for `go test -cpuprofile`: every node's work
// lands in one profile.
func BenchmarkWASMTaskThroughput(b *testing.B) {
	dir := b.TempDir()
	start := func(name string, provider bool, boot []string) *node.Node {
		cfg := node.Config{Home: filepath.Join(dir, name), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Bootstrap: boot, APIAddr: "127.0.0.1:0", Provider: provider, Logger: quiet}
		if provider {
			cfg.Executors = []string{"wasm"}
		}
		n, err := node.New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		return n
	}
	first := start("p0", true, nil)
	boot := first.Identity().Addrs
	for i := 1; i < 4; i++ {
		start(fmt.Sprintf("p%d", i), true, boot)
	}
	req := start("req", false, boot)
	testwait.For(b, time.Minute, 20*time.Millisecond, "the requestor to see four providers", func() bool {
		return len(req.Pool(client.PoolFilter{})) >= 4
	})
	wasm, err := testimage.TinyWASMFile()
	if err != nil {
		b.Fatal(err)
	}
	cid, err := req.Add(context.Background(), wasm, node.AddOptions{})
	if err != nil {
		b.Fatal(err)
	}
	spec := node.TaskSpec{Runtime: "wasm", Image: cid, Cmd: []string{"echo", "hi"}, TimeoutMS: 60_000, Retries: wire.Retries(2)}
	run := func(n, par int) {
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				t, err := req.Submit(context.Background(), spec)
				if err != nil {
					b.Error(err)
					return
				}
				t, err = req.Wait(context.Background(), t.ID)
				if err != nil || t.State != "completed" {
					b.Errorf("task: %v %+v", err, t)
				}
			}()
		}
		wg.Wait()
	}
	run(8, 8) // every provider fetches the module
	b.ResetTimer()
	t0 := time.Now()
	run(b.N, 32)
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "tasks/s")
}
