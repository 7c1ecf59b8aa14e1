// Package privateswarm_test runs the private-swarm example as its README
// does: three `offload node` processes sharing a swarm key run a task
// among themselves, and a fourth node with another key can neither
// connect to them nor get its task run.
package privateswarm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/examples/internal/clitest"
	"github.com/offload-project/offload/internal/testimage"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

func TestPrivateSwarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	module, err := testimage.WASMFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// One key for the swarm: `offload swarm-key > swarm.key`.
	key, stderr, code := clitest.Offload(t, "swarm-key")
	if code != 0 {
		t.Fatalf("swarm-key: %s", stderr)
	}
	keyFile := filepath.Join(dir, "swarm.key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	member := []string{"--swarm-key", keyFile}
	a := clitest.StartNode(t, filepath.Join(dir, "A"), member, []string{"--provider", "--executors", "wasm"})
	boot := a.ID(t).Addrs[0]
	b := clitest.StartNode(t, filepath.Join(dir, "B"), member, []string{"--provider", "--executors", "wasm", "--bootstrap", boot})
	c := clitest.StartNode(t, filepath.Join(dir, "C"), member, []string{"--bootstrap", boot})
	// The outsider: its own key (`offload init --private`), same bootstrap.
	d := clitest.StartNode(t, filepath.Join(dir, "D"), []string{"--private"}, []string{"--bootstrap", boot})

	aKey, _ := os.ReadFile(filepath.Join(a.Home, "swarm.key"))
	dKey, _ := os.ReadFile(filepath.Join(d.Home, "swarm.key"))
	if string(aKey) != key || len(dKey) == 0 || string(dKey) == key {
		t.Fatalf("swarm keys: A has the shared key %v, D has its own %v", string(aKey) == key, len(dKey) > 0 && string(dKey) != key)
	}

	// The outsider tries at the same time as the members (its attempt
	// takes the requestor's whole provider wait).
	type result struct {
		out, stderr string
		code        int
	}
	outsider := make(chan result, 1)
	go func() {
		var r result
		defer func() { outsider <- r }()
		var added map[string]string
		o, e, code := clitest.Offload(t, "add", "--home", d.Home, "--json", module)
		if code != 0 || json.Unmarshal([]byte(o), &added) != nil {
			r = result{o, e, -1}
			return
		}
		r.out, r.stderr, r.code = clitest.Offload(t, "run", "--home", d.Home, "--wait", "--json", "--retries", "0",
			"--runtime", "wasm", "--image", added["cid"], "--", "echo", "outsider")
	}()

	c.WaitPeers(t, 1)
	var added map[string]string
	clitest.MustJSON(t, &added, "add", "--home", c.Home, "--json", module)
	var task client.Task
	clitest.MustJSON(t, &task, "run", "--home", c.Home, "--wait", "--json", "--runtime", "wasm",
		"--image", added["cid"], "--", "echo", "inside", "the", "private", "swarm")
	if task.State != "completed" || task.Stdout != "inside the private swarm\n" {
		t.Fatalf("member task: %s %q %s", task.State, task.Stdout, task.Error)
	}
	aID, bID := a.ID(t).ID, b.ID(t).ID
	if task.Provider != aID && task.Provider != bID {
		t.Errorf("provider %s is neither A nor B", task.Provider)
	}

	r := <-outsider
	if r.code == 0 {
		t.Fatalf("the outsider's task ran: %s", r.out)
	}
	var failed client.Task
	if err := json.Unmarshal([]byte(r.out), &failed); err != nil {
		t.Fatalf("outsider run (exit %d): %v\nstdout: %s\nstderr: %s", r.code, err, r.out, r.stderr)
	}
	t.Logf("outsider task: %s: %s", failed.State, failed.Error)
	if failed.State != "failed" || !strings.Contains(failed.Error+failed.Reason, "no provider") {
		t.Errorf("outsider task: %s error=%q reason=%q", failed.State, failed.Error, failed.Reason)
	}
	var peers []client.Peer
	clitest.MustJSON(t, &peers, "peers", "--json", "--home", d.Home)
	if len(peers) != 0 {
		t.Errorf("the outsider has peers: %+v", peers)
	}
	dID := d.ID(t).ID
	for _, n := range []*clitest.Node{a, b, c} {
		var ps []client.Peer
		clitest.MustJSON(t, &ps, "peers", "--json", "--home", n.Home)
		for _, p := range ps {
			if p.ID == dID {
				t.Errorf("member %s is connected to the outsider", n.Home)
			}
		}
	}
}
