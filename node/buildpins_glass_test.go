package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/storage/content"
)

// TestBuildContextReleasedWhenTheBuildEnds: the context a build added is
// pinned under its task while the task may need it, and released by the
// periodic collection once the task has ended (here it fails: no provider
// builds), its blocks with it; a temporary pin never held for a task (a
// crash between add and submit) is released once old; the user's own pins
// stay.
func TestBuildContextReleasedWhenTheBuildEnds(t *testing.T) {
	old := orphanAge
	orphanAge = 2 * time.Second
	t.Cleanup(func() { orphanAge = old })
	n, err := New(t.Context(), Config{Home: t.TempDir(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), ProviderWait: 300 * time.Millisecond, GCInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app"), []byte(strings.Repeat("context bytes ", 1000)), 0o644)
	mine := filepath.Join(t.TempDir(), "mine.txt")
	os.WriteFile(mine, []byte("the user's own content"), 0o644)
	kept, err := n.Add(t.Context(), mine, AddOptions{CIDVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := n.AddReader(t.Context(), strings.NewReader("an orphaned context"), "build-context:/gone", AddOptions{CIDVersion: 1, Temporary: true})
	if err != nil {
		t.Fatal(err)
	}

	task, err := n.BuildImage(t.Context(), BuildOptions{Context: dir})
	if err != nil {
		t.Fatal(err)
	}
	pinName := func(c string) string {
		pins, err := n.Pins(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pins {
			if p.CID == c {
				return p.Name
			}
		}
		return ""
	}
	ctxCID := task.Spec.Inputs[0].CID
	if got := pinName(ctxCID); got != taskPin+task.ID {
		t.Fatalf("the context's pin is %q, want %q", got, taskPin+task.ID)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if done, err := n.Wait(ctx, task.ID); err != nil || done.State != "failed" {
		t.Fatalf("the build with no builder: %+v, %v", done, err)
	}
	if !testwait.Until(t.Context(), 10*time.Second, 100*time.Millisecond, func() bool {
		return pinName(ctxCID) == "" && pinName(orphan) == ""
	}) {
		t.Fatalf("pins after the build ended: context %q, orphan %q", pinName(ctxCID), pinName(orphan))
	}
	id, err := content.ParseCID(ctxCID)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := n.content.Has(t.Context(), id); err != nil || has {
		t.Errorf("the released context's blocks are still held: %v, %v", has, err)
	}
	if pinName(kept) == "" {
		t.Error("the user's own pin was released")
	}
}
