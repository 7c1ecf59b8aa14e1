package main_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/node"
	"github.com/offload-project/offload/storage"
)

// removeLoadedImages removes from the engine the images that the stopped
// provider whose home is home loaded by CID (the records of its image
// cache). A test's provider is gone for good when its test ends: what it
// loaded would stay in the engine as untagged images after every run,
// though the provider itself rightly keeps them within its budget. An
// image the operator has by name is left (RemoveImage never removes one).
func removeLoadedImages(t *testing.T, home string) {
	if testimage.DockerAvailable(context.Background()) != nil {
		return
	}
	db, err := storage.Open(filepath.Join(home, node.DBDir), nil)
	if err != nil {
		t.Logf("remove the images node %s loaded: %v", home, err)
		return
	}
	defer db.Close()
	recs, err := storage.NewTable[market.CachedImage](db, "images").List()
	if err != nil || len(recs) == 0 {
		return
	}
	e, err := docker.New()
	if err != nil {
		t.Logf("remove the images node %s loaded: %v", home, err)
		return
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range recs {
		if err := e.RemoveImage(ctx, r.Ref); err != nil {
			t.Logf("remove image %s (CID %s) node %s loaded: %v", r.Ref, r.CID, home, err)
		}
	}
}
