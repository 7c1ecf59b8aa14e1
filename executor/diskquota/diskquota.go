// Package diskquota gives a task a directory whose size the kernel bounds
// while the task writes, so that a task cannot fill the provider's disk
// before anyone checks what it wrote.
//
// Mount creates a sparse file of the quota's size next to the directory,
// formats it as ext4 (no journal, no reserved blocks) and loop-mounts it on
// the directory with nosuid and nodev. A writer that passes the quota gets
// ENOSPC from the kernel; the provider's disk holds at most the quota plus
// ext4's metadata (Overhead). Unmounting removes the file, and with it
// everything the task wrote there.
//
// It needs root (mount(2) and a loop device) and mkfs.ext4; Supported says
// whether this process has them. Without them a provider still bounds what
// it collects after a run (market counts bytes while copying) and WASM
// guests have a byte quota of their own (executor/wasm), but a Docker task
// can fill the disk while it runs: SECURITY.md says so.
package diskquota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsupported: this process cannot mount quota filesystems (not root,
// no mkfs.ext4, or mount refused).
var ErrUnsupported = errors.New("disk quotas are not supported here")

// MinBytes is the smallest quota Mount accepts.
const MinBytes = 1 << 20

// Overhead is the space ext4's own metadata takes beyond the quota: the
// image is made this much larger than the quota, so that the task can
// write about the quota in file data.
func Overhead(quota int64) int64 {
	return max(quota/32, 2<<20)
}

// FS is one mounted quota filesystem.
type FS struct {
	dir   string
	image string
	quota int64

	once sync.Once
	err  error
}

// Dir is the mounted directory.
func (f *FS) Dir() string { return f.dir }

// Quota is the bound given to Mount.
func (f *FS) Quota() int64 { return f.quota }

var (
	supportOnce sync.Once
	supportErr  error
)

// Supported reports (once per process) whether Mount can work here: it
// mounts and removes a small quota filesystem in a temporary directory.
func Supported() error {
	supportOnce.Do(func() {
		dir, err := os.MkdirTemp("", "offload-quota-probe-")
		if err != nil {
			supportErr = fmt.Errorf("%w: %v", ErrUnsupported, err)
			return
		}
		defer os.RemoveAll(dir)
		f, err := Mount(context.Background(), filepath.Join(dir, "d"), MinBytes)
		if err != nil {
			supportErr = err
			return
		}
		supportErr = f.Close()
	})
	return supportErr
}

// Mount makes dir (which must not exist) a directory of at most quota
// bytes of file data, owned by root with mode 0755. The image file lives
// beside it as dir+".quota". Close unmounts it and removes both.
func Mount(ctx context.Context, dir string, quota int64) (*FS, error) {
	if quota < MinBytes {
		return nil, fmt.Errorf("diskquota: quota %d below the minimum %d bytes", quota, MinBytes)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: mounting needs root", ErrUnsupported)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("diskquota: %w", err)
	}
	f := &FS{dir: dir, image: dir + ".quota", quota: quota}
	fail := func(err error) (*FS, error) {
		_ = os.Remove(f.image)
		_ = os.Remove(dir)
		return nil, err
	}
	img, err := os.OpenFile(f.image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(fmt.Errorf("diskquota: create image: %w", err))
	}
	err = img.Truncate(quota + Overhead(quota))
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(fmt.Errorf("diskquota: size image: %w", err))
	}
	// No journal (the content is thrown away after the run), no blocks
	// reserved for root, inode tables initialized lazily: formatting takes
	// milliseconds.
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", f.image)
	if out, err := mkfs.CombinedOutput(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fail(fmt.Errorf("%w: mkfs.ext4 not found", ErrUnsupported))
		}
		return fail(fmt.Errorf("diskquota: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out))))
	}
	mnt := exec.CommandContext(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev", f.image, dir)
	if out, err := mnt.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("%w: mount %s: %v: %s", ErrUnsupported, dir, err, strings.TrimSpace(string(out))))
	}
	// The root of a fresh ext4 holds lost+found; a task's tree must not.
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = f.Close()
		return nil, fmt.Errorf("diskquota: %w", err)
	}
	return f, nil
}

// Close unmounts the filesystem (lazily when something still holds it)
// and removes the directory and the image. It is idempotent.
func (f *FS) Close() error {
	f.once.Do(func() {
		err := unmount(f.dir)
		if err == nil {
			err = os.Remove(f.dir)
		}
		if rerr := os.Remove(f.image); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		f.err = err
	})
	return f.err
}

// Release undoes what a Mount of dir left behind in a process that died
// before Close: it unmounts dir if it is still mounted and removes dir and
// its image. Nothing there is not an error.
func Release(dir string) error {
	if err := unmount(dir); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskquota: %w", err)
	}
	if err := os.Remove(dir + ".quota"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskquota: %w", err)
	}
	return nil
}

// unmount detaches dir, retrying briefly while it is busy (a container's
// bind mount going away), then lazily.
func unmount(dir string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(dir, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT): // not mounted, or no such dir
			return nil
		case errors.Is(err, unix.EBUSY) && i < 20:
			time.Sleep(25 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("diskquota: unmount %s: %w", dir, err)
			}
			return nil
		default:
			return fmt.Errorf("diskquota: unmount %s: %w", dir, err)
		}
	}
}

// String describes f for logs.
func (f *FS) String() string {
	return f.dir + " (" + strconv.FormatInt(f.quota, 10) + " bytes)"
}
