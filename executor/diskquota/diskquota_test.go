package diskquota_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/offload-project/offload/executor/diskquota"
)

func requireQuota(t *testing.T) {
	t.Helper()
	if err := diskquota.Supported(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root and must support disk quotas: %v", err)
		}
		t.Skipf("disk quotas unsupported here: %v", err)
	}
}

// A writer that fills a quota directory gets ENOSPC at the quota, and the
// provider's disk holds no more than the quota plus ext4's overhead.
func TestWriterStopsAtQuota(t *testing.T) {
	requireQuota(t)
	const quota = 8 << 20
	dir := filepath.Join(t.TempDir(), "rw")
	f, err := diskquota.Mount(t.Context(), dir, quota)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a fresh quota dir holds %v", entries)
	}
	out, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var written int64
	var werr error
	for written < 4*quota {
		n, err := out.Write(chunk)
		written += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	out.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("after %d bytes the writer got %v, want ENOSPC", written, werr)
	}
	if written > quota+diskquota.Overhead(quota) {
		t.Fatalf("wrote %d bytes into a quota of %d", written, quota)
	}
	if written < quota/2 {
		t.Fatalf("only %d bytes fit into a quota of %d", written, quota)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir+".quota", &st); err != nil {
		t.Fatal(err)
	}
	if onDisk := st.Blocks * 512; onDisk > quota+diskquota.Overhead(quota) {
		t.Fatalf("the image takes %d bytes of the provider's disk, over %d", onDisk, quota+diskquota.Overhead(quota))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, dir + ".quota"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind after Close: %v", p, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestMountRefusesBadInput(t *testing.T) {
	requireQuota(t)
	if _, err := diskquota.Mount(t.Context(), filepath.Join(t.TempDir(), "x"), 1024); err == nil {
		t.Fatal("a quota below MinBytes was accepted")
	}
	existing := t.TempDir()
	if _, err := diskquota.Mount(t.Context(), existing, diskquota.MinBytes); err == nil {
		t.Fatal("mounting over an existing directory was accepted")
	}
}

// Release cleans up after a process that died with a quota mounted, and
// is a no-op where nothing is left.
func TestReleaseAfterCrash(t *testing.T) {
	requireQuota(t)
	dir := filepath.Join(t.TempDir(), "rw")
	if err := diskquota.Release(dir); err != nil {
		t.Fatalf("release of nothing: %v", err)
	}
	if _, err := diskquota.Mount(t.Context(), dir, diskquota.MinBytes); err != nil {
		t.Fatal(err)
	}
	// The *FS is dropped, as a killed process drops it.
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := diskquota.Release(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, dir + ".quota"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind after Release: %v", p, err)
		}
	}
}
