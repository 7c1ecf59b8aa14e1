package docker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
)

// RemoveImage removes an image loaded from a tarball, leaves one with a
// name of its own (the operator's, even when a tarball of the same content
// was loaded), refuses one a running container uses, and takes an image
// already gone as removed.
func TestRemoveImage(t *testing.T) {
	e := newExecutor(t)
	ctx := t.Context()
	tarPath, want := testimage.UntaggedImageTar(t, t.TempDir(), 64<<10)
	id, err := e.LoadImage(ctx, tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if id != want {
		t.Fatalf("loaded %s, want %s", id, want)
	}
	size, err := e.ImageSize(ctx, id)
	if err != nil || size < 64<<10 {
		t.Fatalf("ImageSize = %d, %v; want at least the 64 KiB pad", size, err)
	}

	// In use by a running container: kept, ErrImageInUse.
	task := taskID(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(runCtx, executor.Spec{TaskID: task, Image: id, Cmd: []string{"/hello", "sleep", "60"}})
		done <- err
	}()
	if !runningWithin(t, e, task, 30*time.Second) {
		stop()
		t.Fatal("the task's container did not start")
	}
	if err := e.RemoveImage(ctx, id); !errors.Is(err, docker.ErrImageInUse) {
		t.Errorf("RemoveImage under a running container: %v, want ErrImageInUse", err)
	}
	if !e.HasImage(ctx, id) {
		t.Fatal("an image under a running container was removed")
	}
	stop()
	<-done
	assertNoContainers(t, e, task)

	if err := e.RemoveImage(ctx, id); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	if e.HasImage(ctx, id) {
		t.Fatal("the loaded image is still in the engine")
	}
	if err := e.RemoveImage(ctx, id); err != nil {
		t.Fatalf("RemoveImage of an image already gone: %v", err)
	}

	// The operator's image, by the ID a tarball of it loads as: it keeps
	// its tag and stays.
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	op, err := cli.ImageInspect(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveImage(ctx, op.ID); err != nil {
		t.Fatalf("RemoveImage of a tagged image: %v", err)
	}
	if !e.HasImage(ctx, image) {
		t.Fatalf("the operator's image %s was removed", image)
	}
}
