package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/offload-project/offload/internal/testimage"
)

// TestKNNThroughTheSwarm builds the classifier image, runs it as a task on
// a provider with the dataset as an input by CID, reads labels.csv back
// from the task's outputs and checks the accuracy on the known labels.
func TestKNNThroughTheSwarm(t *testing.T) {
	testimage.RequireDocker(t)
	var out bytes.Buffer
	acc, err := run(t.Context(), &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.9 {
		t.Fatalf("accuracy %.3f, want at least 0.9", acc)
	}
}

// TestDatasetIsDeterministic: the README's expected output holds on every
// machine only if the dataset is the same bytes everywhere.
func TestDatasetIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := generate(a); err != nil {
		t.Fatal(err)
	}
	if err := generate(b); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data/train.csv", "data/query.csv", "truth.csv"} {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs (or is empty)", name)
		}
	}
}
