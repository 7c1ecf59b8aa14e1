package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
)

// rawRun is the baseline: a plain Engine API run of the same container
// (create, start, wait, logs, remove), as `docker run --rm --network none`
// does it.
func rawRun(ctx context.Context, cli *client.Client, image string, cmd []string) error {
	c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: cmd},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return err
	}
	defer cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	wait := cli.ContainerWait(ctx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		return err
	}
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		return err
	}
	logs, err := cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, logs)
	logs.Close()
	return err
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkDockerExecutorOverhead runs the same trivial container through
// the Docker executor (sandbox, limits, cgroup accounting, log capture) and
// through a plain Engine API run, alternating, and reports the ratio of the
// medians. Target: under 1.10.
func BenchmarkDockerExecutorOverhead(b *testing.B) {
	testimage.RequireDocker(b)
	testimage.Ensure(b, testimage.DefaultTag)
	ctx := context.Background()
	ex, err := docker.New()
	if err != nil {
		b.Fatal(err)
	}
	defer ex.Close()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	cmd := []string{"echo", "hi"}
	var ours, raw []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := rawRun(ctx, cli, testimage.DefaultTag, append([]string{"/hello"}, cmd...)); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))
		t0 = time.Now()
		res, err := ex.Run(ctx, executor.Spec{TaskID: "bench", Image: testimage.DefaultTag, Cmd: cmd})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("executor run: %v", err)
		}
		ours = append(ours, time.Since(t0))
	}
	ratio := float64(median(ours)) / float64(median(raw))
	b.ReportMetric(float64(median(ours).Milliseconds()), "executor_ms")
	b.ReportMetric(float64(median(raw).Milliseconds()), "raw_api_ms")
	b.ReportMetric(ratio, "overhead_ratio")
	b.Logf("docker executor median %s, plain Engine API median %s, ratio %.3f (n=%d)", median(ours), median(raw), ratio, len(ours))
}

// BenchmarkWASMStart measures a trivial WASM task's cold start (a new
// executor: compile and run) and warm start (compiled module cached).
// Target: warm under 5 ms.
func BenchmarkWASMStart(b *testing.B) {
	mod := testimage.BuildWASM(b)
	ctx := context.Background()
	out := b.TempDir()
	spec := executor.Spec{TaskID: "bench", Image: mod, Cmd: []string{"echo", "hi"}, OutputsDir: out}
	var cold, warm []time.Duration
	for i := 0; i < b.N; i++ {
		cache := filepath.Join(b.TempDir(), "cache")
		os.MkdirAll(cache, 0o700)
		ex, err := wasm.New(wasm.WithCacheDir(cache))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := ex.Run(ctx, spec); err != nil {
			b.Fatal(err)
		}
		cold = append(cold, time.Since(t0))
		for range 5 {
			t0 = time.Now()
			if _, err := ex.Run(ctx, spec); err != nil {
				b.Fatal(err)
			}
			warm = append(warm, time.Since(t0))
		}
		ex.Close()
	}
	b.ReportMetric(float64(median(cold).Microseconds())/1000, "cold_ms")
	b.ReportMetric(float64(median(warm).Microseconds())/1000, "warm_ms")
	b.Logf("wasm cold start median %s, warm start median %s (Go hello module, %d cold / %d warm runs)", median(cold), median(warm), len(cold), len(warm))
}
