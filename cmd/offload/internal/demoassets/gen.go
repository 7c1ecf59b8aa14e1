//go:build ignore

// Command gen compiles the demo program in ./hello for every target that
// `offload demo` carries and writes each, gzip-compressed, next to this file
// (or into the directory given by -out): hello.wasm.gz (wasip1/wasm) and
// hello-linux-ARCH.gz (static linux binaries, CGO_ENABLED=0).
//
// The builds are reproducible: -trimpath, -buildvcs=false, -ldflags="-s -w",
// the target's architecture level pinned, GOFLAGS and GOEXPERIMENT cleared,
// and gzip headers without names or times. The same Go version writes the
// same bytes; TestGenerateReproducible checks the committed files.
//
// Run it with `go generate ./cmd/offload/internal/demoassets` (or
// `go run gen.go [-out DIR]` in this directory).
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// targets is what the demo carries; keep in step with demoassets.go.
var targets = []struct{ goos, goarch, file string }{
	{"wasip1", "wasm", "hello.wasm.gz"},
	{"linux", "amd64", "hello-linux-amd64.gz"},
	{"linux", "arm64", "hello-linux-arm64.gz"},
}

func main() {
	out := flag.String("out", ".", "directory to write the compressed programs to")
	src := flag.String("src", "hello", "directory of the demo program's main package")
	flag.Parse()
	if err := run(*out, *src); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, src string) error {
	tmp, err := os.MkdirTemp("", "offload-demoassets-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	srcAbs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	for _, t := range targets {
		bin := filepath.Join(tmp, t.goos+"-"+t.goarch)
		cmd := exec.Command(goTool(), "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, ".")
		cmd.Dir = srcAbs
		cmd.Env = append(env(), "CGO_ENABLED=0", "GOOS="+t.goos, "GOARCH="+t.goarch,
			"GOAMD64=v1", "GOARM64=v8.0", "GOWASM=", "GOFLAGS=", "GOEXPERIMENT=")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build for %s/%s: %w\n%s", t.goos, t.goarch, err, b)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		var z bytes.Buffer
		zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		dst := filepath.Join(out, t.file)
		if err := os.WriteFile(dst+".tmp", z.Bytes(), 0o644); err != nil {
			return err
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			return err
		}
		fmt.Printf("gen: %s (%s/%s): %d bytes, %d compressed\n", dst, t.goos, t.goarch, len(data), z.Len())
	}
	return nil
}

// env is this process's environment less the variables the builds set.
func env() []string {
	var kept []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOWASM", "GOFLAGS", "GOEXPERIMENT":
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

// goTool is the go command of the toolchain in $GOROOT (go generate sets
// it), else the one on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
