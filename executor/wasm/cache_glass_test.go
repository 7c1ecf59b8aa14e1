package wasm

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/offload-project/offload/executor"
)

// TestMaxCompiled runs more distinct modules than WithMaxCompiled keeps in
// memory: the executor holds at most that many compiled modules (each a
// wazero runtime) and forgets the paths of those it closed.
func TestMaxCompiled(t *testing.T) {
	const max = 3
	e, err := New(WithMaxCompiled(max))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	dir := t.TempDir()
	var last string
	for i := range 10 {
		// The trivial module with a different memory size each time.
		m := []byte{
			0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
			0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
			0x03, 0x02, 0x01, 0x00,
			0x05, 0x03, 0x01, 0x00, byte(i + 1),
			0x07, 0x13, 0x02,
			0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
			0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
			0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
		}
		p := filepath.Join(dir, hex.EncodeToString([]byte{byte(i)})+".wasm")
		if err := os.WriteFile(p, m, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Run(t.Context(), executor.Spec{Image: p}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(m)
		last = hex.EncodeToString(sum[:])
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.compiled) != max || len(e.files) != max {
		t.Errorf("%d compiled modules and %d paths kept, want %d", len(e.compiled), len(e.files), max)
	}
	if e.compiled[last] == nil {
		t.Error("the most recently used module was closed")
	}
}
