//go:build linux

package market

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/internal/testwait"
	"github.com/offload-project/offload/market/wire"
)

// On a real engine: a requestor sending more distinct images (each built
// FROM scratch, loaded untagged by CID) than the cache holds leaves at
// most the budget's worth in the engine, the least recently used removed;
// the image of a task whose container runs stays; one larger than the
// budget is refused and not loaded; after a restart the images an earlier
// process loaded are evicted too.
func TestImageCacheEvictsFromTheEngine(t *testing.T) {
	testimage.RequireDocker(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := docker.New(docker.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := t.Context()

	f := newCacheFixture(t, 0, e)
	f.p.log = log
	type image struct {
		cid, id string
		size    int64
	}
	add := func(pad int) image {
		path, id := testimage.UntaggedImageTar(t, t.TempDir(), pad)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c := contentCID(b)
		f.bc.mu.Lock()
		f.bc.blobs[c] = b
		f.bc.mu.Unlock()
		return image{cid: c, id: id, size: int64(len(b))}
	}
	var imgs []image
	for range 4 {
		imgs = append(imgs, add(1<<20))
	}
	// Room for two of them.
	budget := imgs[0].size*5/2 + 1
	f.p.cfg.ImageCacheBytes = budget
	inEngine := func() (present []int, bytes int64) {
		for i, im := range imgs {
			if n, err := e.ImageSize(ctx, im.id); err == nil {
				present = append(present, i)
				bytes += n
			}
		}
		return present, bytes
	}

	// Image 0 runs a task: prepared, and its container running.
	rec := &ExecRecord{Key: execKey("12D3KooWRequestor", "cache-task", 1), TaskID: "cache-task", Attempt: 1, Requestor: "12D3KooWRequestor",
		Spec: wire.TaskSpec{Image: imgs[0].cid}}
	pr, err := f.p.prepare(ctx, e, rec)
	if err != nil {
		t.Fatal(err)
	}
	task := "test-imagecache-" + imgs[0].id[len("sha256:"):][:12]
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		_, err := e.Run(runCtx, executor.Spec{TaskID: task, Image: pr.spec.Image, Cmd: []string{"/hello", "sleep", "120"}})
		ran <- err
	}()
	end := sync.OnceFunc(func() { stop(); <-ran })
	defer end()
	if !testwait.Until(ctx, 30*time.Second, 20*time.Millisecond, func() bool {
		cs, _ := e.FindRunning(ctx)
		for _, c := range cs {
			if c.TaskID == task && c.State == "running" {
				return true
			}
		}
		return false
	}) {
		t.Fatal("the task's container did not start")
	}

	for i := 1; i < len(imgs); i++ {
		_, release, err := f.resolve(t, e, imgs[i].cid)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		release()
		present, bytes := inEngine()
		t.Logf("after image %d: images %v in the engine, %d bytes (budget %d)", i, present, bytes, budget)
		if bytes > budget {
			t.Errorf("the engine holds %d bytes of the requestor's images, over the budget of %d", bytes, budget)
		}
		if !e.HasImage(ctx, imgs[0].id) {
			t.Fatalf("image %d evicted the image of the running task", i)
		}
	}
	if present, _ := inEngine(); len(present) != 2 || present[0] != 0 || present[1] != 3 {
		t.Errorf("images in the engine: %v, want [0 3] (the running task's and the newest)", present)
	}

	big := add(int(budget))
	if _, _, err := f.resolve(t, e, big.cid); !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("an image of %d bytes, over the budget of %d: %v, want ErrImageTooLarge", big.size, budget, err)
	}
	if e.HasImage(ctx, big.id) {
		t.Error("the oversized image was loaded")
	}

	// The task ends; a new process with the same records evicts what
	// this one loaded, oldest first, as it needs room.
	end()
	pr.cleanup(f.p.log)
	restarted := &Provider{cfg: f.p.cfg, log: log, executors: f.p.executors}
	restarted.cfg.ImageCacheBytes = imgs[0].size*3/2 + 1 // room for one
	f.p = restarted
	if _, release, err := f.resolve(t, e, imgs[1].cid); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
	if present, bytes := inEngine(); len(present) != 1 || present[0] != 1 || bytes > restarted.cfg.ImageCacheBytes {
		t.Errorf("after a restart with room for one image: images %v (%d bytes) in the engine, want [1]", present, bytes)
	}
	if n := f.images.len(); n != 1 {
		t.Errorf("%d image records after the restart, want 1", n)
	}
}
