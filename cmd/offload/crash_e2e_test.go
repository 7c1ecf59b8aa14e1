package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	offclient "github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
)

// waitState follows the task's event stream on the node at home until it
// reaches one of states, and returns it then.
func waitState(t *testing.T, home, id string, d time.Duration, states ...string) offclient.Task {
	t.Helper()
	c, err := offclient.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	reached := errors.New("reached")
	var got offclient.Task
	last, err := c.Watch(ctx, id, func(task *offclient.Task) error {
		if slices.Contains(states, task.State) {
			got = *task
			return reached
		}
		return nil
	})
	if !errors.Is(err, reached) {
		t.Fatalf("task %s not in %v within %s (%v); last seen: %+v", id, states, d, err, last)
	}
	return got
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
	var pool string
	if !testwait.Until(t.Context(), 15*time.Second, 100*time.Millisecond, func() bool {
		pool, _, _ = offload(t, "pool", "--json", "--home", b.home)
		return strings.Contains(pool, aid.ID) && strings.Contains(pool, cid.ID)
	}) {
		t.Fatalf("pool never had both providers: %s", pool)
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
	a.kill()

	task = waitState(t, b.home, sub["id"], time.Minute, "completed", "failed")
	if task.State != "completed" || task.Provider != cid.ID {
		t.Fatalf("after the provider died: %s on %s (%s)", task.State, task.Provider, task.Error)
	}

	// A restarts: it reports what it was running and removes the leftover
	// container. Docker's container removals are followed from before the
	// restart; what is left is listed again after each.
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	removed := cli.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).
		Add("type", "container").Add("event", "destroy").Add("label", "offload.managed=true")})
	startNodeProc(t, a.home, "--provider")
	left := func() []string {
		res, err := cli.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "offload.managed=true")})
		if err != nil {
			t.Fatal(err)
		}
		// Containers are labelled with the execution's name: up to 16
		// letters and digits of the task ID, a dash, a hash.
		var ids []string
		for _, c := range res.Items {
			if strings.HasPrefix(c.Labels["offload.task"], sub["id"][:16]+"-") {
				ids = append(ids, c.ID)
			}
		}
		return ids
	}
	for ids := left(); len(ids) > 0; ids = left() {
		select {
		case <-removed.Messages:
		case err := <-removed.Err:
			t.Fatalf("the killed provider's container is still there after its restart: %v (docker events: %v)", ids, err)
		}
	}
}
