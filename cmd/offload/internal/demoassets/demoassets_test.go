package demoassets_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/cmd/offload/internal/demoassets"
	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/wasm"
)

// demoCmd is the command `offload demo` gives its task, and want what the
// demo expects the task to print.
var (
	demoCmd = []string{demoassets.Program, "echo", "hello from the swarm"}
	want    = "hello from the swarm\n"
)

// committed maps each embedded file to its program, as gen.go names them.
func committed(t *testing.T) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	w, err := demoassets.WASM()
	if err != nil {
		t.Fatal(err)
	}
	m["hello.wasm.gz"] = w
	for _, arch := range demoassets.Arches() {
		b, err := demoassets.Static(arch)
		if err != nil {
			t.Fatal(err)
		}
		m["hello-linux-"+arch+".gz"] = b
	}
	return m
}

// TestWASMRuns runs the embedded module with the repository's WASM executor
// the way a demo provider does, and checks it prints what the demo expects.
func TestWASMRuns(t *testing.T) {
	module, err := demoassets.WASM()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(path, module, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := wasm.New(wasm.WithTempRoot(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := e.Run(ctx, executor.Spec{TaskID: "demoassets-test", Image: path, Cmd: demoCmd, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || string(res.Stdout) != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0, stdout %q", res.ExitCode, res.Stdout, res.Stderr, want)
	}
}

// TestStaticPrograms checks that every embedded linux build is a static ELF
// executable for its architecture, and runs the one for this machine.
func TestStaticPrograms(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range demoassets.Arches() {
		bin, err := demoassets.Static(arch)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: not ELF: %v", arch, err)
		}
		if f.Machine != machines[arch] || f.Type != elf.ET_EXEC {
			t.Errorf("%s: machine %v, type %v; want %v, ET_EXEC", arch, f.Machine, f.Type, machines[arch])
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: not static (%v segment)", arch, p.Type)
			}
		}
		if arch != runtime.GOARCH || runtime.GOOS != "linux" {
			continue
		}
		path := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(path, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path, demoCmd...)
		cmd.Env = []string{}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Errorf("%s %v: %v, stdout %q, stderr %q; want %q", path, demoCmd, err, out, stderr.String(), want)
		}
	}
	if _, err := demoassets.Static("mips"); err == nil {
		t.Error("Static(mips): no error for an architecture that is not embedded")
	}
}

// TestBuildContext checks the image's build context: FROM scratch, nothing
// else to fetch, and the program executable at Program.
func TestBuildContext(t *testing.T) {
	r, err := demoassets.BuildContext([]byte("program"))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(r)
	got := map[string]string{}
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name], modes[h.Name] = string(b), h.Mode
	}
	df := got["Dockerfile"]
	if !strings.HasPrefix(df, "FROM scratch\n") || strings.Count(df, "FROM") != 1 || !strings.Contains(df, "COPY hello "+demoassets.Program+"\n") {
		t.Errorf("Dockerfile:\n%s", df)
	}
	if got["hello"] != "program" || modes["hello"]&0o111 == 0 {
		t.Errorf("program in context: %q mode %o", got["hello"], modes["hello"])
	}
}

// TestGenerateReproducible regenerates the programs into a temporary
// directory with gen.go (what `go generate` runs) and compares them byte for
// byte with the committed ones. The builds depend only on the Go version, so
// the test skips when the toolchain here is not the one the committed files
// were built with (regenerate them after upgrading Go).
func TestGenerateReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo program three times")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goBin, "env", "GOVERSION", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := strings.Fields(string(out))
	if len(env) != 2 {
		t.Fatalf("go env: %q", out)
	}
	toolchain, goroot := env[0], env[1]
	amd64, err := demoassets.Static("amd64")
	if err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.Read(bytes.NewReader(amd64))
	if err != nil {
		t.Fatalf("build info of the committed linux/amd64 program: %v", err)
	}
	if info.GoVersion != toolchain {
		t.Skipf("committed programs were built with %s, this toolchain is %s: run go generate ./cmd/offload/internal/demoassets to refresh them", info.GoVersion, toolchain)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", "gen.go", "-out", dir)
	cmd.Env = append(os.Environ(), "GOROOT="+goroot)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, b)
	}
	want := committed(t)
	for name := range want {
		committedGz, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committedGz) {
			t.Errorf("%s: regenerated file differs from the committed one (%d vs %d bytes): run go generate ./cmd/offload/internal/demoassets and commit the result", name, len(fresh), len(committedGz))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("gen.go wrote %d files, the package embeds %d", len(entries), len(want))
	}
}
