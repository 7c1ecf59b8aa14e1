package python_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/examples/internal/clitest"
	"github.com/offload-project/offload/internal/pyenv"
	"github.com/offload-project/offload/internal/testimage"
)

// TestPythonImage runs the examples that need the real Python image
// (Debian, python3, numpy: scripts/python-image.sh) on two provider
// processes and a requestor process; the image goes to the providers by
// CID (offload image push). Subtests: MECAnywhere's KNN in numpy, the
// RemoteMedia proxy, and a proxy whose provider is killed mid-session.
func TestPythonImage(t *testing.T) {
	tag := testimage.Python(t)
	python := pyenv.Install(t)
	dir := t.TempDir()
	var provs []*clitest.Node
	for _, name := range []string{"p1", "p2"} {
		provs = append(provs, clitest.StartNode(t, filepath.Join(dir, name), nil, []string{"--provider"}))
	}
	var boot []string
	for _, p := range provs {
		boot = append(boot, "--bootstrap", p.ID(t).Addrs[0])
	}
	req := clitest.StartNode(t, filepath.Join(dir, "req"), nil, boot)
	req.WaitPeers(t, 2)
	var pushed struct{ CID string }
	clitest.MustJSON(t, &pushed, "image", "push", "--home", req.Home, "--json", tag)
	t.Logf("%s pushed as %s", tag, pushed.CID)

	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("knn", func(t *testing.T) {
		out := runScript(t, python, req.Home, "knn.py", "--image", pushed.CID)
		if !strings.Contains(out, "accuracy 0.9") {
			t.Fatalf("knn.py did not report an accuracy of at least 0.9")
		}
	})
	t.Run("remotemedia", func(t *testing.T) {
		out := runScript(t, python, req.Home, "remotemedia.py", "--image", pushed.CID)
		if !strings.Contains(out, "all good") {
			t.Fatalf("remotemedia.py did not finish")
		}
	})
	t.Run("failover", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, filepath.Join(here, "testdata", "proxy_failover.py"), pushed.CID)
		cmd.Env = append(os.Environ(), "OFFLOAD_HOME="+req.Home, "PYTHONDONTWRITEBYTECODE=1")
		cmd.Dir = dir
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		var serving string
		for lines.Scan() {
			t.Log(lines.Text())
			if p, ok := strings.CutPrefix(lines.Text(), "serving on "); ok {
				serving = p
				break
			}
		}
		if serving == "" {
			cmd.Wait()
			t.Fatalf("the session never served:\n%s", stderr.String())
		}
		var killed *clitest.Node
		for _, p := range provs {
			if p.ID(t).ID == serving {
				killed = p
			}
		}
		if killed == nil {
			t.Fatalf("no provider process is %s", serving)
		}
		killed.Kill()
		// Restarted once the test is over, it removes what the killed
		// process left (the session's container, its task directory).
		defer killed.Restart(t)
		start := time.Now()
		io.WriteString(stdin, "go\n")
		stdin.Close()
		for lines.Scan() {
			t.Log(lines.Text())
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("the session did not move with its state: %v\n%s", err, stderr.String())
		}
		t.Logf("the call after the kill took %v (session restarted on the other provider)", time.Since(start).Round(time.Millisecond))
	})
}
