package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

func TestInputsAndOutputsThroughATask(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)

	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "sub"), 0o755)
	os.WriteFile(filepath.Join(data, "sub", "x.txt"), []byte("input bytes"), 0o644)
	in, err := req.Add(t.Context(), data, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec := helloSpec("cat", "/inputs/data/sub/x.txt")
	spec.Inputs = []wire.Input{{CID: in, Path: "/inputs/data"}}
	sub, err := req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Stdout != "input bytes" {
		t.Fatalf("input task: %s %q %q", got.State, got.Stdout, got.Error)
	}

	// The input is mounted read-only.
	spec = helloSpec("write", "/inputs/data/sub/x.txt", "overwrite")
	spec.Inputs = []wire.Input{{CID: in, Path: "/inputs/data"}}
	sub, err = req.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, req, sub.ID, time.Minute); got.State != "failed" {
		t.Fatalf("writing to an input must fail, got %s", got.State)
	}

	// Outputs come back by CID; results writes them out.
	sub, err = req.Submit(t.Context(), helloSpec("write", "/outputs/answer.txt", "42"))
	if err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || got.Outputs == "" {
		t.Fatalf("output task: %s outputs=%q %s", got.State, got.Outputs, got.Error)
	}
	dest := filepath.Join(t.TempDir(), "results")
	if _, err := req.Results(t.Context(), sub.ID, dest); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dest, "answer.txt"))
	if err != nil || string(b) != "42" {
		t.Fatalf("results: %v %q", err, b)
	}
	// The requestor pinned the outputs: they survive the provider going away.
	prov.Close()
	dest2 := filepath.Join(t.TempDir(), "again")
	if _, err := req.Results(t.Context(), sub.ID, dest2); err != nil {
		t.Fatalf("results after the provider left: %v", err)
	}
}

func TestImagePushRmiThenRunByCID(t *testing.T) {
	testimage.RequireDocker(t)
	const tag = "offload-test/pushed:1"
	ctx := t.Context()
	if err := testimage.Build(ctx, tag); err != nil {
		t.Fatal(err)
	}
	prov := startNode(t, t.TempDir(), true, nil)
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	c, err := req.PushImage(ctx, tag, node.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
		t.Fatalf("docker rmi: %v", err)
	}
	spec := node.TaskSpec{Image: c, Cmd: []string{"/hello", "echo", "from a CID"}, TimeoutMS: 60_000}
	sub, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, 2*time.Minute)
	if got.State != "completed" || got.Stdout != "from a CID\n" {
		t.Fatalf("task by image CID: %s %q %q", got.State, got.Stdout, got.Error)
	}
	// A second task uses the cached load: the bid says it already has it.
	sub, err = req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, req, sub.ID, time.Minute)
	if got.State != "completed" || len(got.Bids) == 0 || !got.Bids[0].HasImage {
		t.Fatalf("second run: %s bids=%+v", got.State, got.Bids)
	}

	// A tarball that is not an image fails clearly and is not retried
	// elsewhere as if the provider were at fault.
	junk := filepath.Join(t.TempDir(), "junk.tar")
	os.WriteFile(junk, []byte(strings.Repeat("not a tar ", 100)), 0o644)
	jc, err := req.Add(ctx, junk, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	sub, err = req.Submit(ctx, node.TaskSpec{Image: jc, Cmd: []string{"x"}, TimeoutMS: 60_000, Retries: wire.Retries(2)})
	if err != nil {
		t.Fatal(err)
	}
	got = waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "load image") || len(got.Executions) != 1 {
		t.Fatalf("junk image: %s %q executions=%d", got.State, got.Error, len(got.Executions))
	}
}

func TestWASMTaskByModuleCID(t *testing.T) {
	wasmPath := testimage.BuildWASM(t)
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.Executors = []string{"wasm"} })
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	c, err := req.Add(t.Context(), wasmPath, node.AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec := node.TaskSpec{Runtime: "wasm", Image: c, Cmd: []string{"echo", "wasm", "works"}, TimeoutMS: 60_000}
	for i := range 2 {
		sub, err := req.Submit(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		got := waitFor(t, req, sub.ID, time.Minute)
		if got.State != "completed" || got.Stdout != "wasm works\n" {
			t.Fatalf("run %d: %s %q %q", i, got.State, got.Stdout, got.Error)
		}
	}
}

func TestUnknownCIDInputFailsWithReason(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	prov := startNode(t, t.TempDir(), true, nil, func(c *node.Config) { c.ContentTimeout = 2 * time.Second })
	req := startNode(t, t.TempDir(), false, prov.Identity().Addrs)
	spec := helloSpec("ls", "/inputs/x")
	spec.Retries = wire.Retries(0)
	// A valid CID nobody has.
	spec.Inputs = []wire.Input{{CID: "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba", Path: "/inputs/x"}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sub, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, req, sub.ID, time.Minute)
	if got.State != "failed" || !strings.Contains(got.Error, "fetch input") {
		t.Fatalf("unknown input: %s %q", got.State, got.Error)
	}
}
