package testimage_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/internal/testimage"
)

func TestEnsureBuildsAndCaches(t *testing.T) {
	testimage.Ensure(t, testimage.DefaultTag)
	start := time.Now()
	testimage.Ensure(t, testimage.DefaultTag)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second Ensure took %v; expected the cached image to be reused", d)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	img, err := cli.ImageInspect(context.Background(), testimage.DefaultTag)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Labels[testimage.HashLabel] == "" {
		t.Errorf("image has no %s label", testimage.HashLabel)
	}
}

func TestBuildWASM(t *testing.T) {
	p := testimage.BuildWASM(t)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		t.Fatalf("%s is not a wasm module", p)
	}
	if p2 := testimage.BuildWASM(t); p2 != p {
		t.Errorf("BuildWASM not cached: %s then %s", p, p2)
	}
}

func TestTinyWASMPrintsHi(t *testing.T) {
	p, err := testimage.TinyWASMFile()
	if err != nil {
		t.Fatal(err)
	}
	ex, err := wasm.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	res, err := ex.Run(t.Context(), executor.Spec{TaskID: "tiny", Image: p})
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "hi\n" {
		t.Fatalf("tiny module: %v %+v", err, res)
	}
}
