package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
)

// buildFiles is a build context: name -> content; a name ending in "*" is
// an executable file, one holding "->" a symlink (name->target).
type buildFiles map[string]string

func writeContext(t *testing.T, files buildFiles) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if link, target, ok := strings.Cut(name, "->"); ok {
			p := filepath.Join(dir, filepath.FromSlash(link))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type buildCase struct {
	files     buildFiles
	args      map[string]string
	limits    executor.Limits
	timeout   time.Duration
	isolation string
}

// contextTar writes the build context ContextTar makes of dir (with its
// Dockerfile at dockerfile) to a file and returns the file's path.
func contextTar(t *testing.T, dir, dockerfile string) string {
	t.Helper()
	tarPath := filepath.Join(t.TempDir(), "context.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := docker.ContextTar(dir, dockerfile, f, 0); err != nil {
		t.Fatal(err)
	}
	return tarPath
}

// runBuild builds the context on b and returns the result, the error, the
// image tarball's path, and checks that the build left no container and
// no image behind.
func runBuild(t *testing.T, e *docker.Executor, b *docker.Builder, c buildCase) (*executor.Result, string, error) {
	t.Helper()
	tarPath := contextTar(t, writeContext(t, c.files), "Dockerfile")
	base, err := docker.CheckContext(tarPath, "Dockerfile", c.args, 0)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", executor.ErrInvalidSpec, err)
	}
	out := t.TempDir()
	spec := executor.Spec{
		TaskID: taskID(t), Image: base, Env: c.args, Limits: c.limits, Timeout: c.timeout, Isolation: c.isolation,
		Mounts:     []executor.Mount{{Source: tarPath, Target: executor.BuildContextPath, ReadOnly: true}},
		OutputsDir: out,
	}
	res, err := b.Run(t.Context(), spec)
	assertNothingLeft(t, e, spec.TaskID)
	if res != nil {
		t.Logf("build log:\n%s%s", res.Stdout, res.Stderr)
	}
	return res, filepath.Join(out, executor.BuildOutput), err
}

func assertNothingLeft(t *testing.T, e *docker.Executor, id string) {
	t.Helper()
	assertNoContainers(t, e, id)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	imgs, err := cli.ImageList(context.Background(), client.ImageListOptions{All: true,
		Filters: make(client.Filters).Add("label", docker.LabelTask+"="+id)})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs.Items {
		t.Errorf("image %s of build %s left behind", im.ID, id)
	}
}

func newBuilder(t *testing.T, opts ...docker.BuildOption) (*docker.Executor, *docker.Builder) {
	t.Helper()
	e := newExecutor(t)
	b, err := docker.NewBuilder(e, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e, b
}

// runImage loads the tarball and runs cmd (the image's own when nil).
func runImage(t *testing.T, e *docker.Executor, tarPath string, cmd ...string) string {
	t.Helper()
	ref, err := e.LoadImage(t.Context(), tarPath)
	if err != nil {
		t.Fatalf("load the built image: %v", err)
	}
	t.Cleanup(func() {
		cli, _ := client.New(client.FromEnv)
		cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true})
		cli.Close()
	})
	res, err := run(t, e, executor.Spec{Image: ref, Cmd: cmd})
	if err != nil {
		t.Fatalf("run the built image: %v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("the built image exited %d: %s", res.ExitCode, res.Stderr)
	}
	return string(res.Stdout)
}

func TestBuildRunsTheImage(t *testing.T) {
	e, b := newBuilder(t)
	res, tarPath, err := runBuild(t, e, b, buildCase{
		args: map[string]string{"GREETING": "there"},
		files: buildFiles{
			"Dockerfile": `# a multi-step build
FROM ` + image + `
ARG GREETING=nobody
ENV MSG="hello $GREETING" \
    OTHER=x
WORKDIR /app
COPY msg.txt sub ./
RUN ["/hello", "write", "/app/made.txt", "made by RUN"]
RUN ["/hello", "copy", "/app/inner.txt", "/app/copied.txt"]
LABEL org.example.test=yes
EXPOSE 8080
USER 1000:1000
CMD ["cat", "/app/msg.txt"]
`,
			"msg.txt":       "the message\n",
			"sub/inner.txt": "inner\n",
			"unused.txt":    "not copied",
		},
	})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d", res.ExitCode)
	}
	if got := runImage(t, e, tarPath); got != "the message\n" {
		t.Errorf("default command printed %q", got)
	}
	if got := runImage(t, e, tarPath, "cat", "/app/made.txt"); got != "made by RUN" {
		t.Errorf("RUN's file: %q", got)
	}
	if got := runImage(t, e, tarPath, "cat", "/app/copied.txt"); got != "inner\n" {
		t.Errorf("a RUN reading a COPY'd file: %q", got)
	}
	env := runImage(t, e, tarPath, "env")
	if !strings.Contains(env, "MSG=hello there\n") || !strings.Contains(env, "OTHER=x\n") || strings.Contains(env, "GREETING") {
		t.Errorf("env (want MSG from the build arg, no ARG): %q", env)
	}
	if got := runImage(t, e, tarPath, "pwd"); got != "/app\n" {
		t.Errorf("workdir %q", got)
	}
	if got := runImage(t, e, tarPath, "whoami"); !strings.Contains(got, "1000") {
		t.Errorf("user: %q", got)
	}
}

func TestBuildFromScratch(t *testing.T) {
	e, b := newBuilder(t)
	bin, err := testimage.HelloBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, tarPath, err := runBuild(t, e, b, buildCase{files: buildFiles{
		"Dockerfile": "FROM scratch\nCOPY hello /bin/hello\nENTRYPOINT [\"/bin/hello\"]\nCMD [\"echo\", \"from\", \"scratch\"]\n",
		"hello*":     string(data),
	}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if got := runImage(t, e, tarPath); got != "from scratch\n" {
		t.Errorf("printed %q", got)
	}
}

func TestBuildRunHasNoNetwork(t *testing.T) {
	e, b := newBuilder(t)
	// A server on every address of the host: the step must reach none.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "reached") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "172.17.0.1", "1.1.1.1"} {
		t.Run(host, func(t *testing.T) {
			res, _, err := runBuild(t, e, b, buildCase{files: buildFiles{
				"Dockerfile": fmt.Sprintf("FROM %s\nRUN [\"/hello\", \"get\", \"http://%s:%d/\"]\n", image, host, port),
			}})
			if err == nil {
				t.Fatal("a RUN that reaches the network succeeded")
			}
			if !strings.Contains(err.Error(), "line 2") || res == nil || res.ExitCode == 0 {
				t.Errorf("error %v (want line 2), result %+v", err, res)
			}
			if res != nil && strings.Contains(string(res.Stdout), "reached") {
				t.Errorf("the step reached the host: %s", res.Stdout)
			}
		})
	}
}

// TestBuildRunSeesOnlyLoopback: without a build network a RUN step has
// the loopback interface and nothing else.
func TestBuildRunSeesOnlyLoopback(t *testing.T) {
	e, b := newBuilder(t)
	res, _, err := runBuild(t, e, b, buildCase{files: buildFiles{
		"Dockerfile": "FROM " + image + "\nRUN [\"/hello\", \"net\"]\n",
	}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if out := string(res.Stdout); !strings.Contains(out, "nonlo 0\n") || !strings.Contains(out, "loopback ok") {
		t.Errorf("the step saw more than loopback:\n%s", out)
	}
}

// TestBuildNetwork: with WithBuildNetwork("bridge") a RUN step has an
// interface on the bridge and reaches a server on the host's address on
// it (the bridge's gateway: no packet leaves this machine); the built
// image runs as a task with no network all the same.
func TestBuildNetwork(t *testing.T) {
	e, b := newBuilder(t, docker.WithBuildNetwork("bridge"))
	if b.Network() != "bridge" {
		t.Fatalf("Network() = %q", b.Network())
	}
	if err := b.Available(t.Context()); err != nil {
		t.Fatalf("Available: %v", err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ins, err := cli.NetworkInspect(t.Context(), "bridge", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var gw string
	for _, c := range ins.Network.IPAM.Config {
		if c.Gateway.Is4() {
			gw = c.Gateway.String()
		}
	}
	if gw == "" {
		t.Fatalf("the bridge network has no IPv4 gateway: %+v", ins.Network.IPAM)
	}
	ln, err := net.Listen("tcp", gw+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "reached the host") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	res, tarPath, err := runBuild(t, e, b, buildCase{files: buildFiles{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN [\"/hello\", \"net\"]\nRUN [\"/hello\", \"get\", \"http://%s/\"]\nCOPY f /f\n",
			image, ln.Addr()),
		"f": "copied",
	}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	out := string(res.Stdout)
	if !strings.Contains(out, "iface eth0\n") || strings.Contains(out, "nonlo 0\n") {
		t.Errorf("the step has no interface on the bridge:\n%s", out)
	}
	if !strings.Contains(out, "reached the host") {
		t.Errorf("the step did not reach %s:\n%s", ln.Addr(), out)
	}
	if got := runImage(t, e, tarPath, "net"); !strings.Contains(got, "nonlo 0\n") {
		t.Errorf("a task of the built image has a network:\n%s", got)
	}

	// A build that asks for gVisor keeps it, and gVisor's lack of network.
	t.Run("gvisor", func(t *testing.T) {
		if !e.GVisor(t.Context()) {
			t.Skipf("the engine has no %s runtime", docker.DefaultGVisorRuntime)
		}
		res, _, err := runBuild(t, e, b, buildCase{isolation: docker.IsolationGVisor, files: buildFiles{
			"Dockerfile": "FROM " + image + "\nRUN [\"/hello\", \"net\"]\n",
		}})
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		if out := string(res.Stdout); !strings.Contains(out, "nonlo 0\n") {
			t.Errorf("a step under gVisor has a network:\n%s", out)
		}
	})
}

// TestBuildNetworkRefused: names that would share the host's or another
// container's namespace, or are no network name, are refused when the
// builder is made (no engine needed).
func TestBuildNetworkRefused(t *testing.T) {
	e, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, name := range []string{"host", "container:x", "container:0123abcd", "service:x", "none", "default",
		"-x", ".x", "a b", "a/b", "bridge\n", strings.Repeat("n", 129)} {
		if _, err := docker.NewBuilder(e, docker.WithBuildNetwork(name)); err == nil {
			t.Errorf("WithBuildNetwork(%q) accepted", name)
		} else {
			t.Logf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "bridge", "offload-builds", "my_net.1"} {
		if _, err := docker.NewBuilder(e, docker.WithBuildNetwork(name)); err != nil {
			t.Errorf("WithBuildNetwork(%q): %v", name, err)
		}
	}
	g, err := docker.New(docker.WithRequireGVisor())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := docker.NewBuilder(g, docker.WithBuildNetwork("bridge")); err == nil {
		t.Error("a build network accepted where every step runs under gVisor (no network)")
	}
}

// TestBuildNetworkMissing: a build network that is not on the engine is
// reported by Available and by the build, before any step runs.
func TestBuildNetworkMissing(t *testing.T) {
	name := "offload-test-missing-" + strings.ToLower(strings.TrimPrefix(taskID(t), "test-TestBuildNetworkMissing-"))
	e, b := newBuilder(t, docker.WithBuildNetwork(name))
	if err := b.Available(t.Context()); !errors.Is(err, docker.ErrBuildNetwork) || !errors.Is(err, executor.ErrUnavailable) {
		t.Errorf("Available: %v, want ErrBuildNetwork and ErrUnavailable", err)
	}
	_, _, err := runBuild(t, e, b, buildCase{files: buildFiles{
		"Dockerfile": "FROM " + image + "\nRUN [\"/hello\", \"net\"]\n",
	}})
	if !errors.Is(err, docker.ErrBuildNetwork) || !strings.Contains(err.Error(), name) {
		t.Errorf("build: %v, want ErrBuildNetwork naming %s", err, name)
	}
}

func TestBuildRunMemoryLimit(t *testing.T) {
	e, b := newBuilder(t)
	_, _, err := runBuild(t, e, b, buildCase{
		limits: executor.Limits{MemoryBytes: 48 << 20},
		files: buildFiles{
			"Dockerfile": "FROM " + image + "\nRUN [\"/hello\", \"alloc\", \"256\"]\n",
		},
	})
	if !errors.Is(err, executor.ErrOutOfMemory) {
		t.Fatalf("err = %v, want ErrOutOfMemory", err)
	}
}

func TestBuildTimeLimit(t *testing.T) {
	e, b := newBuilder(t)
	start := time.Now()
	_, _, err := runBuild(t, e, b, buildCase{
		timeout: 2 * time.Second,
		files: buildFiles{
			"Dockerfile": "FROM " + image + "\nRUN [\"/hello\", \"sleep\", \"60s\"]\nRUN [\"/hello\", \"echo\", \"never\"]\n",
		},
	})
	if !errors.Is(err, executor.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("stopped after %v", d)
	}
}

func TestBuildRefusesEscapes(t *testing.T) {
	e, b := newBuilder(t)
	for name, files := range map[string]buildFiles{
		"dotdot":          {"Dockerfile": "FROM scratch\nCOPY ../x /x\n"},
		"dotdot inside":   {"Dockerfile": "FROM scratch\nCOPY a/../../x /x\n", "a/f": "x"},
		"absolute link":   {"Dockerfile": "FROM scratch\nCOPY out /x\n", "out->/etc/passwd": ""},
		"relative link":   {"Dockerfile": "FROM scratch\nCOPY out /x\n", "out->../../etc/passwd": ""},
		"link in a dir":   {"Dockerfile": "FROM scratch\nCOPY d /x\n", "d/f": "x", "d/out->../../etc": ""},
		"through a link":  {"Dockerfile": "FROM scratch\nCOPY up/passwd /x\n", "up->..": ""},
		"missing":         {"Dockerfile": "FROM scratch\nCOPY nothere /x\n"},
		"url":             {"Dockerfile": "FROM scratch\nADD http://example.com/x /x\n"},
		"unknown":         {"Dockerfile": "FROM scratch\nHEALTHCHECK CMD true\n"},
		"second stage":    {"Dockerfile": "FROM scratch\nFROM scratch\n"},
		"variable escape": {"Dockerfile": "FROM scratch\nARG P=..\nCOPY $P/x /x\n"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runBuild(t, e, b, buildCase{files: files})
			if !errors.Is(err, executor.ErrInvalidSpec) {
				t.Fatalf("err = %v, want ErrInvalidSpec", err)
			}
			t.Log(err)
		})
	}
	// A symlink that stays inside is followed.
	_, _, err := runBuild(t, e, b, buildCase{files: buildFiles{
		"Dockerfile": "FROM scratch\nCOPY in /x\n", "a/f": "x", "in->a/f": "",
	}})
	if err != nil {
		t.Errorf("a symlink inside the context: %v", err)
	}
}

func TestBuildSizeLimit(t *testing.T) {
	e := newExecutor(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	img, err := cli.ImageInspect(t.Context(), image)
	if err != nil {
		t.Fatal(err)
	}
	b, err := docker.NewBuilder(e, docker.WithMaxBuildImage(img.Size+(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3<<19) // 1.5 MiB
	for name, df := range map[string]string{
		"COPY": "FROM " + image + "\nCOPY big /big\n",
		"RUN":  "FROM " + image + "\nWORKDIR /w\nCOPY half half\nRUN [\"/hello\", \"copy\", \"/w/half\", \"/w/half2\"]\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, out, err := runBuild(t, e, b, buildCase{files: buildFiles{
				"Dockerfile": df, "big": big, "half": big[:700<<10],
			}})
			if !errors.Is(err, docker.ErrBuildTooLarge) {
				t.Fatalf("err = %v, want ErrBuildTooLarge", err)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("an image tarball was written")
			}
		})
	}
}

// TestBuildUnderGVisor: where the provider runs builds under gVisor, what
// a RUN step writes is in the committed layer (runsc must not keep the
// root filesystem's writes to itself).
func TestBuildUnderGVisor(t *testing.T) {
	e, b := newBuilder(t)
	if !e.GVisor(t.Context()) {
		t.Skipf("the engine has no %s runtime", docker.DefaultGVisorRuntime)
	}
	_, tarPath, err := runBuild(t, e, b, buildCase{isolation: docker.IsolationGVisor, files: buildFiles{
		"Dockerfile": "FROM " + image + "\nWORKDIR /w\nRUN [\"/hello\", \"write\", \"/w/f\", \"written under gVisor\"]\nCMD [\"cat\", \"/w/f\"]\n",
	}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if got := runImage(t, e, tarPath); got != "written under gVisor" {
		t.Errorf("the RUN's file holds %q", got)
	}
}
