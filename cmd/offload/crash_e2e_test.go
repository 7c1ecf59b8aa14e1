package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	offclient "github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
)

// waitState polls `offload status` until the task reaches one of states.
func waitState(t *testing.T, home, id string, d time.Duration, states ...string) offclient.Task {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _, code := offload(t, "status", id, "--json", "--home", home)
		var task offclient.Task
		if code == 0 && json.Unmarshal([]byte(out), &task) == nil {
			for _, s := range states {
				if task.State == s {
					return task
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not in %v after %s: %s", id, states, d, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProviderKilledMidTaskFailsOverAndCleansUp(t *testing.T) {
	testimage.RequireDocker(t)
	testimage.Ensure(t, testimage.DefaultTag)
	dir := t.TempDir()
	a := startNodeProc(t, filepath.Join(dir, "A"), "--provider", "--price", "0.1")
	aid := a.id(t)
	c := startNodeProc(t, filepath.Join(dir, "C"), "--provider", "--price", "0.2", "--bootstrap", aid.Addrs[0])
	b := startNodeProc(t, filepath.Join(dir, "B"), "--bootstrap", aid.Addrs[0])
	cid := c.id(t)
	// Both providers in B's pool before the task is announced.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, _ := offload(t, "pool", "--json", "--home", b.home)
		if strings.Contains(out, aid.ID) && strings.Contains(out, cid.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never had both providers: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	out, _, code := offload(t, "run", "--home", b.home, "--json", "--image", testimage.DefaultTag, "--", "/hello", "sleep", "4s")
	var sub map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("run: %s", out)
	}
	task := waitState(t, b.home, sub["id"], 30*time.Second, "running")
	if task.Provider != aid.ID {
		t.Fatalf("the cheaper provider A should run it, got %s", task.Provider)
	}
	// SIGKILL the provider: its container keeps running without it.
	a.cmd.Process.Kill()
	a.cmd.Wait()

	task = waitState(t, b.home, sub["id"], time.Minute, "completed", "failed")
	if task.State != "completed" || task.Provider != cid.ID {
		t.Fatalf("after the provider died: %s on %s (%s)", task.State, task.Provider, task.Error)
	}

	// A restarts: it reports what it was running and removes the leftover
	// container.
	startNodeProc(t, a.home, "--provider")
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline = time.Now().Add(30 * time.Second)
	for {
		res, err := cli.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "offload.managed=true")})
		if err != nil {
			t.Fatal(err)
		}
		// Containers are labelled with the execution's name: up to 16
		// letters and digits of the task ID, a dash, a hash.
		var left []string
		for _, c := range res.Items {
			if strings.HasPrefix(c.Labels["offload.task"], sub["id"][:16]+"-") {
				left = append(left, c.ID)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed provider's container is still there after its restart: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
