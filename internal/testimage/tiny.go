package testimage

import (
	"fmt"
	"os"
	"path/filepath"
)

// tinyHello is a minimal WASI command, written by hand: its _start writes
// "hi\n" to stdout with fd_write and returns (exit code 0). A Go module
// spends ~10 ms starting the Go runtime and copying its data segments on
// every run; this one measures what offload itself adds to a trivial task.
var tinyHello = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	// type: 0 = (i32 i32 i32 i32) -> i32, 1 = () -> ()
	0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00,
	// import: wasi_snapshot_preview1.fd_write, func of type 0
	0x02, 0x23, 0x01, 0x16,
	'w', 'a', 's', 'i', '_', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', '_', 'p', 'r', 'e', 'v', 'i', 'e', 'w', '1',
	0x08, 'f', 'd', '_', 'w', 'r', 'i', 't', 'e', 0x00, 0x00,
	// function 1 has type 1
	0x03, 0x02, 0x01, 0x01,
	// memory: min 1 page
	0x05, 0x03, 0x01, 0x00, 0x01,
	// exports: _start = func 1, memory = memory 0
	0x07, 0x13, 0x02, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	// code: fd_write(1, iovs=0, iovs_len=1, nwritten=20); drop
	0x0a, 0x0f, 0x01, 0x0d, 0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x14, 0x10, 0x00, 0x1a, 0x0b,
	// data at 0: iovec{buf: 8, len: 3}, then "hi\n" at 8
	0x0b, 0x11, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x0b, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 'h', 'i', '\n',
}

// TinyWASMFile writes the minimal "hi" WASI module to the cache directory
// and returns its path.
func TinyWASMFile() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "offload-testimage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("tiny wasm: %w", err)
	}
	p := filepath.Join(dir, "tiny-hello.wasm")
	if err := os.WriteFile(p, tinyHello, 0o644); err != nil {
		return "", fmt.Errorf("tiny wasm: %w", err)
	}
	return p, nil
}
