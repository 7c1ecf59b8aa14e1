package safefs

import (
	"golang.org/x/sys/unix"
)

// useOpenat2 lets tests take the element-by-element path.
var useOpenat2 = true

// openBeneath opens the directory at rel (n elements, already checked to
// hold no ".." or empty element) beneath d in one openat2 call that the
// kernel keeps beneath d and that fails on any symlink, magic link
// included. Any failure sends the caller to the element-by-element walk.
func (d *Dir) openBeneath(rel string, n int) (*Dir, error) {
	if !useOpenat2 {
		return nil, errOpenat2Off
	}
	how := unix.OpenHow{
		Flags:   uint64(readFlags | unix.O_DIRECTORY),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(d.fd, rel, &how)
		if err == nil {
			return newDir(fd, d.relName(rel), d.depth+n), nil
		}
		// EAGAIN: a rename or mount raced the lookup.
		if (err != unix.EINTR && err != unix.EAGAIN) || tries >= 3 {
			return nil, err
		}
	}
}
