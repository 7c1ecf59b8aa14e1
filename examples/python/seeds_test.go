package python_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"

	"github.com/offload-project/offload/examples/internal/clitest"
	"github.com/offload-project/offload/internal/pyenv"
	"github.com/offload-project/offload/internal/testimage"
)

// TestSeedScripts runs the script of each seed (mecanywhere.py, hwf.py,
// golem.py, dphi.py), written with that seed's own call names, with the
// offload package installed in a fresh venv, against real `offload node`
// processes on loopback: two providers (the cheaper one labelled
// fpga=xilinx, the other also building images) and a requestor. The
// first three run WASM tasks (no Docker needed); DPhi's volumes, image
// loads and builds run Docker tasks.
func TestSeedScripts(t *testing.T) {
	python := pyenv.Install(t)
	type swarm struct {
		req         *clitest.Node
		cheap, dear string // provider peer ids
	}
	start := func(t *testing.T, cheapArgs, dearArgs []string) swarm {
		dir := t.TempDir()
		cheap := clitest.StartNode(t, filepath.Join(dir, "cheap"), nil,
			append([]string{"--provider", "--price", "0", "--labels", "fpga=xilinx"}, cheapArgs...))
		cheapID := cheap.ID(t)
		dear := clitest.StartNode(t, filepath.Join(dir, "dear"), nil,
			append([]string{"--provider", "--price", "0.5", "--bootstrap", cheapID.Addrs[0]}, dearArgs...))
		dearID := dear.ID(t)
		req := clitest.StartNode(t, filepath.Join(dir, "req"), nil,
			[]string{"--bootstrap", cheapID.Addrs[0], "--bootstrap", dearID.Addrs[0]})
		req.WaitPeers(t, 2)
		waitPool(t, req, 2)
		return swarm{req: req, cheap: cheapID.ID, dear: dearID.ID}
	}
	run := func(t *testing.T, s swarm, script string, args ...string) {
		t.Helper()
		out := runScript(t, python, s.req.Home, script, args...)
		if !strings.HasSuffix(strings.TrimSpace(out), "done") {
			t.Fatalf("%s did not finish", script)
		}
	}

	t.Run("wasm", func(t *testing.T) {
		wasm := []string{"--executors", "wasm"}
		s := start(t, wasm, wasm)
		var mod struct{ CID string }
		clitest.MustJSON(t, &mod, "add", "--home", s.req.Home, "--json", testimage.BuildWASM(t))
		image := []string{"--runtime", "wasm", "--image", mod.CID}
		t.Run("mecanywhere", func(t *testing.T) { run(t, s, "mecanywhere.py", image...) })
		t.Run("hwf", func(t *testing.T) { run(t, s, "hwf.py", image...) })
		// The cheaper provider is distrusted: every piece it runs first is
		// rejected and reruns on the other.
		t.Run("golem", func(t *testing.T) { run(t, s, "golem.py", append(image, "--distrust", s.cheap)...) })
	})
	t.Run("dphi", func(t *testing.T) {
		testimage.Ensure(t, testimage.DefaultTag)
		tar := saveImage(t, testimage.DefaultTag)
		s := start(t, nil, []string{"--build"})
		run(t, s, "dphi.py", "--tar", tar, "--fpga-provider", s.cheap)
	})
}

// waitPool waits until the requestor's pool lists n providers, so that a
// script's hardware and label choices see every provider.
func waitPool(t *testing.T, req *clitest.Node, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pool []struct{ Peer string }
		clitest.MustJSON(t, &pool, "pool", "--home", req.Home, "--json")
		if len(pool) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the requestor's pool lists %d providers after 30s, want %d", len(pool), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// saveImage writes `docker save` of tag (through the Engine API) to a file,
// the tarball a DPhi user uplinks for image_load.
func saveImage(t *testing.T, tag string) string {
	t.Helper()
	cli, err := dockerclient.New(dockerclient.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rc, err := cli.ImageSave(t.Context(), []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	path := filepath.Join(t.TempDir(), "hello.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
