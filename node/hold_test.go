package node_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/node"
)

// TestHoldForTask: content added temporary and held for a task (POST
// /api/v1/pins/{cid}/hold) is released once every task it is held for has
// ended; the user's own pin is never taken (409, its pin untouched), not
// even after a temporary add of the same bytes, which keeps every pin as
// it is; an unknown task, a bad CID or no task are refused.
func TestHoldForTask(t *testing.T) {
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) {
		c.ProviderWait = 300 * time.Millisecond
		c.GCInterval = 200 * time.Millisecond
	})
	cl, err := client.FromHome(home)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data, err := cl.AddWith(t.Context(), write("data.bin", "bytes for one task"), client.AddOptions{CIDVersion: 1, Temporary: true})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := cl.Add(t.Context(), write("mine.txt", "the user's own"), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A user's file whose name reads like a hold is the user's all the same.
	lookalike, err := cl.AddReader(t.Context(), strings.NewReader("not a task's"), "task:01nosuchtask0000000000000a", 1)
	if err != nil {
		t.Fatal(err)
	}
	task, err := cl.Submit(t.Context(), client.TaskSpec{Image: "offload-test/hello:latest", Cmd: []string{"/hello", "echo"}})
	if err != nil {
		t.Fatal(err)
	}
	status := func(err error) int {
		var e *client.APIError
		if errors.As(err, &e) {
			return e.Status
		}
		return 0
	}
	if err := cl.HoldForTask(t.Context(), data, task.ID); err != nil {
		t.Fatalf("hold: %v", err)
	}
	for _, c := range []struct {
		name      string
		cid, task string
		want      int
	}{
		{"the user's own pin", mine, task.ID, http.StatusConflict},
		{"unknown task", data, "01nosuchtask0000000000000a", http.StatusNotFound},
		{"bad cid", "notacid", task.ID, http.StatusBadRequest},
		{"no task", data, "", http.StatusBadRequest},
	} {
		if got := status(cl.HoldForTask(t.Context(), c.cid, c.task)); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	pins := func() map[string]string {
		ps, err := n.Pins(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range ps {
			out[p.CID] = p.Name
		}
		return out
	}
	if got := pins(); got[data] != "task:"+task.ID || got[mine] != "mine.txt" {
		t.Fatalf("pins after the holds: %v", got)
	}
	// A temporary add of the same bytes keeps the pins as they are: the
	// user's stays the user's, and the task's gains the second task.
	second, err := cl.Submit(t.Context(), client.TaskSpec{Image: "offload-test/hello:latest", Cmd: []string{"/hello", "echo"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data.bin", "mine.txt"} {
		c, err := cl.AddWith(t.Context(), filepath.Join(dir, f), client.AddOptions{CIDVersion: 1, Temporary: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.HoldForTask(t.Context(), c, second.ID); err != nil && status(err) != http.StatusConflict {
			t.Fatal(err)
		}
	}
	if got := pins(); got[data] != "task:"+task.ID+","+second.ID || got[mine] != "mine.txt" {
		t.Fatalf("pins after temporary adds and holds for a second task: %v", got)
	}
	if !testwait.Until(t.Context(), 15*time.Second, 100*time.Millisecond, func() bool { _, held := pins()[data]; return !held }) {
		t.Fatalf("the held content outlived its task: %v", pins())
	}
	for _, id := range []string{task.ID, second.ID} {
		if done, err := n.Get(id); err != nil || done.State != "failed" {
			t.Fatalf("released before task %s ended: %+v, %v", id, done, err)
		}
	}
	if pins()[mine] != "mine.txt" {
		t.Error("the user's own pin was released")
	}
	if got := pins()[lookalike]; got != "./task:01nosuchtask0000000000000a" {
		t.Errorf("a user's pin named like a hold: %q", got)
	}
}
