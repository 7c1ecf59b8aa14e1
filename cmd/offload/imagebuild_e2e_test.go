package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
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

// TestImageBuildWithNetwork: `offload image build --network` goes to the
// provider started with --build-network (not to a builder without one),
// and its RUN step reaches a server on the Docker bridge's gateway, an
// address of this machine: the network is there end to end, and no
// packet leaves the machine.
func TestImageBuildWithNetwork(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	gw, err := exec.Command("docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		t.Fatalf("docker network inspect bridge: %v", err)
	}
	addr := strings.Fields(string(gw))
	if len(addr) == 0 {
		t.Fatal("the bridge network has no gateway")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr[0], "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "reached") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	plain := startNodeProc(t, filepath.Join(dir, "builder"), "--provider", "--build", "--executors", "build")
	boot := plain.id(t).Addrs[0]
	netb := startNodeProc(t, filepath.Join(dir, "netbuilder"), "--provider", "--build", "--executors", "build",
		"--build-network", "bridge", "--bootstrap", boot)
	req := startNodeProc(t, filepath.Join(dir, "requestor"), "--bootstrap", boot)
	if !testwait.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() bool {
		return len(poolOf(t, req.home, "--executor", "build")) == 2
	}) {
		t.Fatal("the requestor's pool never listed both builders")
	}
	if got := poolOf(t, req.home, "--label", "build-network=bridge"); len(got) != 1 || got[0].Peer != netb.id(t).ID {
		t.Fatalf("pool --label build-network=bridge: %+v", got)
	}

	ctxDir := filepath.Join(dir, "app")
	os.MkdirAll(ctxDir, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+testimage.DefaultTag+"\nRUN [\"/hello\", \"get\", \"http://"+ln.Addr().String()+"/\"]\n"), 0o644)
	for i := range 2 {
		out, stderr, code := offload(t, "image", "build", "--home", req.home, "--network", ctxDir, "--timeout", "1m", "--json")
		if code != 0 {
			t.Fatalf("build %d with --network exited %d: %s\nnetbuilder:\n%s", i, code, stderr, netb.log)
		}
		var built struct{ CID, Task string }
		if err := json.Unmarshal([]byte(out), &built); err != nil || built.CID == "" {
			t.Fatalf("image build --json: %v: %s", err, out)
		}
		status, _, _ := offload(t, "status", built.Task, "--json", "--home", req.home)
		var task struct{ Provider string }
		if err := json.Unmarshal([]byte(status), &task); err != nil || task.Provider != netb.id(t).ID {
			t.Fatalf("build %d with --network ran on %s, not the network builder %s (%v)", i, task.Provider, netb.id(t).ID, err)
		}
	}
}

// TestImageBuildDockerignore: what the context's .dockerignore excludes
// never leaves the requestor's machine. The provider's `COPY . /app`
// finds the Dockerfile, the .dockerignore and main.txt, and no .env, .git
// or secret/; a COPY of an excluded file is refused before anything is
// submitted, naming the pattern that excluded it.
func TestImageBuildDockerignore(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	builder := startNodeProc(t, filepath.Join(dir, "builder"), "--provider", "--build") // builds, and runs what it built
	req := startNodeProc(t, filepath.Join(dir, "requestor"), "--bootstrap", builder.id(t).Addrs[0])

	ctxDir := filepath.Join(dir, "app")
	for name, body := range map[string]string{
		"Dockerfile":     "FROM " + testimage.DefaultTag + "\nCOPY . /app\nCMD [\"ls\", \"/app\"]\n",
		".dockerignore":  "# never sent to a provider\n.env\n.git\nsecret/\n",
		".env":           "TOKEN=hunter2\n",
		".git/config":    "[core]\n",
		"secret/key.pem": "PRIVATE\n",
		"main.txt":       "hello\n",
	} {
		p := filepath.Join(ctxDir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code := offload(t, "image", "build", "--home", req.home, ctxDir, "--timeout", "1m")
	if code != 0 {
		t.Fatalf("image build exited %d: %s\nbuilder:\n%s", code, stderr, builder.log)
	}
	out, stderr, code = offload(t, "run", "--home", req.home, "--wait", "--image", strings.TrimSpace(out))
	if code != 0 || out != ".dockerignore\nDockerfile\nmain.txt\n" {
		t.Fatalf("ls /app in the built image: exit %d, %q (want .dockerignore, Dockerfile and main.txt only) %s", code, out, stderr)
	}

	leak := filepath.Join(ctxDir, "leak.Dockerfile")
	os.WriteFile(leak, []byte("FROM "+testimage.DefaultTag+"\nCOPY .env /app/\n"), 0o644)
	_, stderr, code = offload(t, "image", "build", "--home", req.home, ctxDir, "-f", leak)
	if want := `.env is not in the build context: .dockerignore line 2 (".env") leaves it out`; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("COPY of an excluded file: exit %d, stderr %q (want %q)", code, stderr, want)
	}
}
