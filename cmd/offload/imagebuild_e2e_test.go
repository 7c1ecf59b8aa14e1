package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-project/offload/internal/testimage"
)

// TestImageBuildOnAProvider: `offload image build` on a requestor without
// Docker building builds on the one provider that builds (another provider
// does not), and a task then runs the image by its CID.
func TestImageBuildOnAProvider(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	builder := startNodeProc(t, filepath.Join(dir, "builder"), "--provider", "--build")
	boot := builder.id(t).Addrs[0]
	plain := startNodeProc(t, filepath.Join(dir, "plain"), "--provider", "--executors", "docker", "--bootstrap", boot)
	req := startNodeProc(t, filepath.Join(dir, "requestor"), "--bootstrap", boot)

	ctxDir := filepath.Join(dir, "app")
	os.MkdirAll(filepath.Join(ctxDir, "sub"), 0o755)
	os.WriteFile(filepath.Join(ctxDir, "msg.txt"), []byte("built on a provider\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "sub", "build.Dockerfile"), []byte(`FROM `+testimage.DefaultTag+`
WORKDIR /app
COPY msg.txt .
RUN ["/hello", "copy", "/app/msg.txt", "/app/copied.txt"]
CMD ["cat", "/app/copied.txt"]
`), 0o644)

	out, stderr, code := offload(t, "image", "build", "--home", req.home, ctxDir, "-f", filepath.Join(ctxDir, "sub", "build.Dockerfile"), "--timeout", "1m", "--json")
	if code != 0 {
		t.Fatalf("image build exited %d\nstdout: %s\nstderr: %s\nbuilder:\n%s", code, out, stderr, builder.log)
	}
	var built struct{ CID, Task string }
	if err := json.Unmarshal([]byte(out), &built); err != nil || built.CID == "" || built.Task == "" {
		t.Fatalf("image build --json: %v: %s", err, out)
	}
	status, _, _ := offload(t, "status", built.Task, "--json", "--home", req.home)
	var task struct {
		Provider, Image string
		Spec            struct{ Runtime string }
	}
	if err := json.Unmarshal([]byte(status), &task); err != nil {
		t.Fatal(err)
	}
	if task.Provider != builder.id(t).ID || task.Image != built.CID || task.Spec.Runtime != "build" {
		t.Errorf("the build ran on %s (builder %s, plain %s), image %q, runtime %q", task.Provider, builder.id(t).ID, plain.id(t).ID, task.Image, task.Spec.Runtime)
	}

	out, stderr, code = offload(t, "run", "--home", req.home, "--wait", "--image", built.CID)
	if code != 0 || out != "built on a provider\n" {
		t.Fatalf("run --image CID: %d %q %s", code, out, stderr)
	}

	// A build FROM the built image, by its CID.
	next := filepath.Join(dir, "next")
	os.MkdirAll(next, 0o755)
	os.WriteFile(filepath.Join(next, "Dockerfile"), []byte("FROM "+built.CID+"\nCMD [\"cat\", \"/app/msg.txt\"]\n"), 0o644)
	out, stderr, code = offload(t, "image", "build", "--home", req.home, next)
	if code != 0 {
		t.Fatalf("a build FROM a CID exited %d: %s\nbuilder:\n%s", code, stderr, builder.log)
	}
	out, stderr, code = offload(t, "run", "--home", req.home, "--wait", "--image", strings.TrimSpace(out))
	if code != 0 || out != "built on a provider\n" {
		t.Fatalf("run the image built FROM a CID: %d %q %s", code, out, stderr)
	}

	// Refused before anything is submitted: no Dockerfile, an unknown
	// instruction, a Dockerfile outside the context.
	os.WriteFile(filepath.Join(dir, "outside.Dockerfile"), []byte("FROM scratch\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{ctxDir}, "Dockerfile is not in the build context"},
		{[]string{filepath.Join(dir, "nothere")}, "no such file"},
		{[]string{ctxDir, "-f", filepath.Join(dir, "outside.Dockerfile")}, "must lie inside the context"},
	} {
		_, stderr, code := offload(t, append([]string{"image", "build", "--home", req.home}, c.args...)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("image build %v: exit %d, stderr %q (want %q)", c.args, code, stderr, c.want)
		}
	}
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nSHELL [\"/bin/bash\"]\n"), 0o644)
	if _, stderr, code := offload(t, "image", "build", "--home", req.home, ctxDir); code == 0 || !strings.Contains(stderr, `line 2: unknown or unsupported instruction "SHELL"`) {
		t.Errorf("unknown instruction: exit %d, stderr %q", code, stderr)
	}
	// A step that fails: non-zero exit, the provider's error and log.
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+testimage.DefaultTag+"\nRUN [\"/hello\", \"exit\", \"3\"]\n"), 0o644)
	if _, stderr, code := offload(t, "image", "build", "--home", req.home, ctxDir); code == 0 || !strings.Contains(stderr, "line 2: RUN") || !strings.Contains(stderr, "exit code 3") {
		t.Errorf("failing step: exit %d, stderr %q", code, stderr)
	}
}
