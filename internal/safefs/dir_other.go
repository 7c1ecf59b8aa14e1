//go:build !unix

package safefs

import (
	"errors"
	"io/fs"
	"os"
)

var errNotDir = errors.ErrUnsupported

// OpenDir is not supported on this system.
func OpenDir(p string) (*Dir, error) { return nil, errors.ErrUnsupported }

func openRoot(p string) (*Dir, *os.File, error) { return nil, nil, errors.ErrUnsupported }

func (d *Dir) openBeneath(rel string, n int) (*Dir, error) { return nil, errors.ErrUnsupported }

func (d *Dir) reopen() (*Dir, error) { return nil, errors.ErrUnsupported }

// Lstat is not supported on this system.
func (d *Dir) Lstat(name string) (Entry, error) { return Entry{}, errors.ErrUnsupported }

// ReadDir is not supported on this system.
func (d *Dir) ReadDir() ([]Entry, error) { return nil, errors.ErrUnsupported }

// OpenDir is not supported on this system.
func (d *Dir) OpenDir(name string) (*Dir, error) { return nil, errors.ErrUnsupported }

// Open is not supported on this system.
func (d *Dir) Open(name string) (*os.File, error) { return nil, errors.ErrUnsupported }

// Readlink is not supported on this system.
func (d *Dir) Readlink(name string) (string, error) { return "", errors.ErrUnsupported }

// Mkdir is not supported on this system.
func (d *Dir) Mkdir(name string, perm fs.FileMode) (*Dir, error) { return nil, errors.ErrUnsupported }

// Create is not supported on this system.
func (d *Dir) Create(name string, perm fs.FileMode) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// Symlink is not supported on this system.
func (d *Dir) Symlink(target, name string) error { return errors.ErrUnsupported }

// Chmod is not supported on this system.
func (d *Dir) Chmod(mode fs.FileMode) error { return errors.ErrUnsupported }
