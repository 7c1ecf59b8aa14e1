package testimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/offload-project/offload/internal/scratchimage"
)

// UntaggedImageTar builds an image of its own FROM scratch (the hello
// program at /hello as CMD, and pad random bytes at /pad, so that no other
// image shares its top layer), writes its `docker save` tarball into dir
// and removes the image, so that the engine holds it only once a test
// loads the tarball (untagged, as a provider loads an image given by
// CID). It returns the tarball's path and the image's ID, and removes that
// ID from the engine when the test ends. Like Ensure it skips or fails
// the test when no engine answers.
func UntaggedImageTar(tb testing.TB, dir string, pad int) (tarPath, id string) {
	tb.Helper()
	RequireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	binPath, err := HelloBinary(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		tb.Fatal(err)
	}
	padding := make([]byte, pad)
	rand.Read(padding)
	buildCtx, err := scratchimage.Tar(
		scratchimage.File{Name: "Dockerfile", Mode: 0o644, Data: []byte("FROM scratch\nCOPY hello /hello\nCOPY pad /pad\nCMD [\"/hello\"]\n")},
		scratchimage.File{Name: "hello", Mode: 0o755, Data: bin},
		scratchimage.File{Name: "pad", Mode: 0o644, Data: padding},
	)
	if err != nil {
		tb.Fatal(err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	var suffix [6]byte
	rand.Read(suffix[:])
	tag := "offload-test/untagged:" + hex.EncodeToString(suffix[:])
	if err := scratchimage.Build(ctx, cli, tag, nil, buildCtx); err != nil {
		tb.Fatal(err)
	}
	insp, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		tb.Fatal(err)
	}
	id = insp.ID
	tb.Cleanup(func() {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return
		}
		defer cli.Close()
		_, _ = cli.ImageRemove(context.Background(), id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	rc, err := cli.ImageSave(ctx, []string{tag})
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	tarPath = filepath.Join(dir, hex.EncodeToString(suffix[:])+".tar")
	f, err := os.Create(tarPath)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if _, err := cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
		tb.Fatal(err)
	}
	return tarPath, id
}
