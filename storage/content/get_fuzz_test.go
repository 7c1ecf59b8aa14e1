//go:build linux

package content

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/boxo/blockservice"
	blockstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	"golang.org/x/sys/unix"

	"github.com/offload-project/offload/internal/safefs"
)

// fuzzDAG builds a DAG from a little program, one instruction a line:
// "f NAME DATA" a file, "l NAME TARGET" a symlink, "d NAME" opens a
// directory (entries that follow go in it), "u" closes it, "r NAME" links
// the previous entry again under NAME. A first line "L TARGET" or "F DATA"
// makes the root a symlink or a file instead of a directory. Names are
// taken as they are: "..", "a/b", "" and duplicates included.
func fuzzDAG(t *testing.T, dag ipld.DAGService, prog string) ipld.Node {
	add := func(nd ipld.Node) ipld.Node {
		if err := dag.Add(t.Context(), nd); err != nil {
			t.Fatal(err)
		}
		return nd
	}
	file := func(s string) ipld.Node {
		return add(merkledag.NodeWithData(unixfs.FilePBData([]byte(s), uint64(len(s)))))
	}
	symlink := func(s string) ipld.Node {
		b, err := unixfs.SymlinkData(s)
		if err != nil {
			t.Fatal(err)
		}
		return add(merkledag.NodeWithData(b))
	}
	lines := strings.Split(prog, "\n")
	if op, arg, _ := strings.Cut(lines[0], " "); op == "L" {
		return symlink(arg)
	} else if op == "F" {
		return file(arg)
	}
	type open struct {
		name string
		nd   *merkledag.ProtoNode
	}
	stack := []open{{nd: merkledag.NodeWithData(unixfs.FolderPBData())}}
	var last ipld.Node
	link := func(name string, nd ipld.Node) {
		if err := stack[len(stack)-1].nd.AddNodeLink(name, nd); err != nil {
			t.Fatal(err)
		}
		last = nd
	}
	closeDir := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		link(top.name, add(top.nd))
	}
	for _, line := range lines {
		op, rest, _ := strings.Cut(line, " ")
		name, arg, _ := strings.Cut(rest, " ")
		switch op {
		case "f":
			link(name, file(arg))
		case "l":
			link(name, symlink(arg))
		case "d":
			if len(stack) < 40 {
				stack = append(stack, open{name: name, nd: merkledag.NodeWithData(unixfs.FolderPBData())})
			}
		case "u":
			if len(stack) > 1 {
				closeDir()
			}
		case "r":
			if last != nil {
				link(name, last)
			}
		}
	}
	for len(stack) > 1 {
		closeDir()
	}
	return add(stack[0].nd)
}

// FuzzGetTree writes DAGs built from fuzz programs to disk with the Get
// writer. Whatever the DAG: nothing is written outside the destination,
// nothing panics, and every symlink written resolves (as the kernel
// resolves it, chains included) only to places beneath the tree's root.
func FuzzGetTree(f *testing.F) {
	for _, s := range []string{
		"f a hello\nd sub\nf b x\nl c ../a\nu",
		"l up .\nl out up/../outside",
		"d a\nl l ../../root/x\nu",
		"f .. evil\nf a/b evil\nf  evil",
		"f x 1\nf x 2",
		"l x sub\nd x\nf y through-the-link\nu\nd sub\nu",
		"L ../outside",
		"F just a file",
		"d a\nd b\nl c ../..\nl d ../../..\nu\nu",
		"f big 0123456789\nr r1\nr r2\nr r3\nr r4",
		"l a b\nl b a\nl c a/x",
		"l abs /etc/passwd",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prog string) {
		bs := blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore()))
		dag := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
		root := fuzzDAG(t, dag, prog)

		base := t.TempDir()
		tmp, outside := filepath.Join(base, "tmp"), filepath.Join(base, "outside")
		for _, d := range []string{tmp, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "x"), []byte("marker"), 0o644); err != nil {
			t.Fatal(err)
		}
		top, err := safefs.OpenDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		defer top.Close()
		w := &treeWriter{ng: dag, maxBytes: 1 << 20, maxEntries: 2000}
		werr := w.write(t.Context(), root.Cid(), top, "root", -1)

		// Nothing outside tmp changed.
		for _, d := range []string{base, outside} {
			ents, _ := os.ReadDir(d)
			if len(ents) != 2 && d == base || len(ents) != 1 && d == outside {
				t.Fatalf("%s holds %d entries after writing (%v)", d, len(ents), werr)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "x")); string(b) != "marker" {
			t.Fatalf("marker changed: %q", b)
		}
		ents, _ := os.ReadDir(tmp)
		if len(ents) > 1 || len(ents) == 1 && ents[0].Name() != "root" {
			t.Fatalf("tmp holds %v", ents)
		}
		if werr != nil {
			if errors.Is(werr, ErrUnsafeName) || errors.Is(werr, ErrTooLarge) {
				return
			}
			t.Logf("write: %v", werr)
		}
		// Every symlink resolves beneath the root, or not at all.
		rootDir := filepath.Join(tmp, "root")
		rfd, err := unix.Open(rootDir, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return // the root is a file or missing
		}
		defer unix.Close(rfd)
		_ = filepath.WalkDir(rootDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			rel, _ := filepath.Rel(rootDir, p)
			// Not "/..": a path that climbs after a link climbs from where
			// the link points, as after any directory, and may leave the
			// tree; that is the caller's path, not the tree's links.
			for _, suffix := range []string{"", "/x"} {
				fd, err := unix.Openat2(rfd, rel+suffix, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
				if err == nil {
					unix.Close(fd)
				}
				if errors.Is(err, unix.EXDEV) {
					target, _ := os.Readlink(p)
					t.Fatalf("symlink %s -> %q leads out of the tree (via %q)", rel, target, rel+suffix)
				}
				if errors.Is(err, unix.ENOSYS) {
					t.Skip("no openat2")
				}
			}
			return nil
		})
	})
}
