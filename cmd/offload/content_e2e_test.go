package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testimage"
)

func TestContentAcrossNodeProcesses(t *testing.T) {
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"))
	aid := a.id(t)
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0])

	hello := filepath.Join(dir, "hello.txt")
	os.WriteFile(hello, []byte("hello\n"), 0o644)
	out, stderr, code := offload(t, "add", "--home", a.home, "--cid-version", "0", hello)
	if code != 0 || strings.TrimSpace(out) != "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN" {
		t.Fatalf("add --cid-version 0 of hello\\n: %d %q %s", code, out, stderr)
	}

	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(tree, "top.txt"), []byte("top"), 0o644)
	os.WriteFile(filepath.Join(tree, "a", "b", "deep.bin"), []byte(strings.Repeat("x", 600_000)), 0o644)
	// Published, so B (another peer) may fetch it.
	out, stderr, code = offload(t, "add", "--home", a.home, "--json", "--public", tree)
	var added map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added["cid"] == "" {
		t.Fatalf("add dir: %d %s %s", code, out, stderr)
	}
	dest := filepath.Join(dir, "fetched")
	if _, stderr, code := offload(t, "get", "--home", b.home, added["cid"], "-o", dest); code != 0 {
		t.Fatalf("get on B: %s", stderr)
	}
	got, err := os.ReadFile(filepath.Join(dest, "a", "b", "deep.bin"))
	if err != nil || len(got) != 600_000 {
		t.Fatalf("fetched tree: %v (%d bytes)", err, len(got))
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "top.txt")); string(b) != "top" {
		t.Fatalf("top.txt = %q", b)
	}

	out, _, code = offload(t, "ls", "--home", a.home, "--json")
	if code != 0 || !strings.Contains(out, added["cid"]) {
		t.Fatalf("ls --json: %s", out)
	}
	if _, stderr, code := offload(t, "rm", "--home", a.home, added["cid"]); code != 0 {
		t.Fatalf("rm: %s", stderr)
	}
	out, _, _ = offload(t, "ls", "--home", a.home, "--json")
	if strings.Contains(out, added["cid"]) {
		t.Fatalf("still pinned after rm: %s", out)
	}

	// Bad input gets a clear error and writes nothing.
	_, stderr, code = offload(t, "get", "--home", b.home, "not-a-cid", "-o", filepath.Join(dir, "x"))
	if code == 0 || !strings.Contains(stderr, "CID") {
		t.Errorf("invalid CID: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Errorf("a failed get left %s behind", filepath.Join(dir, "x"))
	}
	_, stderr, code = offload(t, "get", "--home", b.home, added["cid"], "-o", dest)
	if code == 0 {
		t.Errorf("get over an existing directory must be refused")
	}
}

// TestPrivateContentAcrossNodeProcesses: content is private by default. A
// node of the same swarm, connected to the holder and knowing the CID,
// cannot fetch what the user added on the holder, and neither can the
// user's second node; after `offload publish` (or with `add --public`)
// both can.
func TestPrivateContentAcrossNodeProcesses(t *testing.T) {
	dir := t.TempDir()
	holder := startNodeProc(t, filepath.Join(dir, "holder"))
	boot := holder.id(t).Addrs[0]
	second := startNodeProc(t, filepath.Join(dir, "second"), "--bootstrap", boot)
	bystander := startNodeProc(t, filepath.Join(dir, "bystander"), "--bootstrap", boot)

	secret := filepath.Join(dir, "secret.bin")
	if err := os.WriteFile(secret, []byte(strings.Repeat("private input ", 50_000)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := offload(t, "add", "--home", holder.home, secret)
	if code != 0 {
		t.Fatalf("add: %d %s", code, stderr)
	}
	c := strings.TrimSpace(out)

	refused := func(n *nodeProc, what string) {
		t.Helper()
		dest := filepath.Join(dir, "refused-"+filepath.Base(n.home))
		start := time.Now()
		_, stderr, code := offload(t, "get", "--home", n.home, "--timeout", "3s", c, "-o", dest)
		if code == 0 || !strings.Contains(stderr, "not found") {
			t.Fatalf("%s fetched private content: %d %s", what, code, stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("a refused get left %s behind", dest)
		}
		t.Logf("%s refused after %s: %s", what, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
	}
	fetched := func(n *nodeProc, cid, name, want string) {
		t.Helper()
		dest := filepath.Join(dir, name+"-"+filepath.Base(n.home))
		if _, stderr, code := offload(t, "get", "--home", n.home, "--timeout", "20s", cid, "-o", dest); code != 0 {
			t.Fatalf("get %s on %s: %s", name, n.home, stderr)
		}
		if got, _ := os.ReadFile(dest); string(got) != want {
			t.Fatalf("%s on %s: %d bytes, want %d", name, n.home, len(got), len(want))
		}
	}
	refused(bystander, "a bystander")
	refused(second, "the user's second node")

	if _, stderr, code := offload(t, "publish", "--home", holder.home, c); code != 0 {
		t.Fatalf("publish: %s", stderr)
	}
	want, _ := os.ReadFile(secret)
	fetched(bystander, c, "published", string(want))
	fetched(second, c, "published", string(want))

	open := filepath.Join(dir, "open.txt")
	if err := os.WriteFile(open, []byte("public from the start"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = offload(t, "add", "--home", holder.home, "--public", open)
	if code != 0 {
		t.Fatalf("add --public: %s", stderr)
	}
	fetched(bystander, strings.TrimSpace(out), "public", "public from the start")

	// Only content held completely can be published.
	_, stderr, code = offload(t, "publish", "--home", bystander.home, "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am")
	if code == 0 || !strings.Contains(stderr, "not held") {
		t.Fatalf("publish of content not held: %d %s", code, stderr)
	}
}

func TestResultsAndInputsFromTheCLI(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider")
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", a.id(t).Addrs[0])

	in := filepath.Join(dir, "in.txt")
	os.WriteFile(in, []byte("data for the task"), 0o644)
	out, _, code := offload(t, "add", "--home", b.home, in)
	if code != 0 {
		t.Fatal("add input")
	}
	c := strings.TrimSpace(out)
	out, stderr, code := offload(t, "run", "--home", b.home, "--wait", "--json", "--image", testimage.DefaultTag,
		"--input", c+":/inputs/in.txt", "--", "/hello", "cat", "/inputs/in.txt")
	if code != 0 || !strings.Contains(out, `"stdout": "data for the task"`) {
		t.Fatalf("task with input: %d %s %s", code, out, stderr)
	}

	out, stderr, code = offload(t, "run", "--home", b.home, "--wait", "--json", "--image", testimage.DefaultTag,
		"--", "/hello", "write", "/outputs/result.txt", "forty-two")
	var task struct {
		ID      string `json:"id"`
		Outputs string `json:"outputs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &task) != nil || task.Outputs == "" {
		t.Fatalf("task with outputs: %d %s %s", code, out, stderr)
	}
	res := filepath.Join(dir, "res")
	if _, stderr, code := offload(t, "results", "--home", b.home, task.ID, "-o", res); code != 0 {
		t.Fatalf("results: %s", stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(res, "result.txt")); string(got) != "forty-two" {
		t.Fatalf("result.txt = %q", got)
	}

	_, stderr, code = offload(t, "run", "--home", b.home, "--image", testimage.DefaultTag, "--input", c+":/etc/passwd", "--", "/hello", "echo")
	if code == 0 || !strings.Contains(stderr, "system or sandbox path") {
		t.Errorf("input on a system path: %d %s", code, stderr)
	}
}
