package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/offload-project/offload/internal/safefs"
)

const (
	// ChunkSize is the fixed chunk size of the importer (`ipfs add`'s
	// size-262144).
	ChunkSize = 256 << 10
	// MaxLinksPerNode is the balanced layout's width (`ipfs add`'s 174).
	MaxLinksPerNode = 174
)

var (
	// ErrTooLarge is returned by an add that read more than
	// AddOptions.MaxBytes, and by a Get that would write more than
	// GetOptions.MaxBytes or MaxEntries or nest directories deeper than
	// MaxDepth.
	ErrTooLarge = errors.New("content over the limit")
	// ErrUnsafeFile marks an entry an untrusted add refused (see
	// AddOptions.Untrusted): a hard link, a device node, a fifo, a socket,
	// a path through a symlink, or a tree nested deeper than MaxDepth.
	ErrUnsafeFile = safefs.ErrUnsafe
)

// MaxDepth is how deep directories may nest below the root of an untrusted
// add or of a Get.
const MaxDepth = safefs.MaxDepth - 1

// AddOptions tunes an import. The zero value gives CIDv1 with raw leaves.
type AddOptions struct {
	// CIDVersion is 0 (`ipfs add` defaults, dag-pb leaves) or 1 (raw
	// leaves, like `ipfs add --cid-version 1`). Nil means 1; a pointer keeps
	// "unset" apart from an explicit 0 (see Version).
	CIDVersion *int
	// RawLeaves overrides the leaf format; nil means "raw leaves for CIDv1,
	// dag-pb leaves for CIDv0".
	RawLeaves *bool
	// Progress, when set, is called with the total number of file bytes
	// read so far.
	Progress func(n int64)
	// PinName names the pin of the added root. AddPath defaults to the base
	// name of the path.
	PinName string
	// KeepPin leaves the pin of a root that was pinned already as it is,
	// its name included (the content is then held for that pin's reason);
	// by default adding pinned content again renames its pin.
	KeepPin bool
	// Untrusted makes AddPath treat the tree at its path as hostile (a
	// task's outputs, say); only the directories above it are trusted.
	// The path's last element and every entry beneath it are opened
	// relative to their open parent directory without following a symlink,
	// so nothing outside the tree is read whatever the tree's owner does
	// meanwhile; symlinks are added as unixfs symlinks (their targets kept
	// as data, never followed); hard links (a file with more than one
	// name), device nodes, fifos and sockets are refused with an error
	// naming the entry and wrapping ErrUnsafeFile; directories may nest at
	// most MaxDepth deep.
	Untrusted bool
	// MaxBytes, when positive, fails the add with ErrTooLarge as soon as it
	// read more file bytes than this (counted while reading, not from a
	// prior stat).
	MaxBytes int64
	// Public publishes the added root (see Store.Publish): any peer may
	// fetch it and it is announced through the content router. Without it
	// the content is private: served only to peers it is shared with
	// (Store.Share) and never announced.
	Public bool
}

// Version returns a pointer to v, for AddOptions.CIDVersion.
func Version(v int) *int { return &v }

type importer struct {
	prefix    cid.Prefix
	rawLeaves bool
	dag       ipld.DAGService
	progress  func(n int64)
	read      atomic.Int64
	maxBytes  int64
}

func (s *Store) newImporter(ctx context.Context, opts AddOptions) (*importer, *ipld.BufferedDAG, error) {
	v := 1
	if opts.CIDVersion != nil {
		v = *opts.CIDVersion
	}
	switch v {
	case 0, 1:
	default:
		return nil, nil, fmt.Errorf("cid version %d: must be 0 or 1", v)
	}
	prefix, err := merkledag.PrefixForCidVersion(v)
	if err != nil {
		return nil, nil, err
	}
	raw := v == 1
	if opts.RawLeaves != nil {
		raw = *opts.RawLeaves
	}
	buf := ipld.NewBufferedDAG(ctx, s.dag, ipld.MaxSizeBatchOption(8<<20), ipld.MaxNodesBatchOption(64))
	return &importer{prefix: prefix, rawLeaves: raw, dag: buf, progress: opts.Progress, maxBytes: opts.MaxBytes}, buf, nil
}

type countingReader struct {
	r  io.Reader
	im *importer
}

// Read fails once more than the importer's maxBytes were read: the read
// that passes the limit returns its bytes (the chunker would drop an error
// that comes with a full chunk) and every later read the error.
func (c *countingReader) Read(p []byte) (int, error) {
	if c.over() {
		return 0, c.tooLarge()
	}
	n, err := c.r.Read(p)
	if n > 0 {
		t := c.im.read.Add(int64(n))
		if c.im.progress != nil {
			c.im.progress(t)
		}
	}
	if err == io.EOF && c.over() {
		err = c.tooLarge()
	}
	return n, err
}

func (c *countingReader) over() bool {
	return c.im.maxBytes > 0 && c.im.read.Load() > c.im.maxBytes
}

func (c *countingReader) tooLarge() error {
	return fmt.Errorf("%w: read more than %d bytes", ErrTooLarge, c.im.maxBytes)
}

func (im *importer) file(r io.Reader) (ipld.Node, error) {
	params := helpers.DagBuilderParams{
		Dagserv:    im.dag,
		RawLeaves:  im.rawLeaves,
		Maxlinks:   MaxLinksPerNode,
		CidBuilder: im.prefix,
	}
	db, err := params.New(chunker.NewSizeSplitter(&countingReader{r: r, im: im}, ChunkSize))
	if err != nil {
		return nil, err
	}
	return balanced.Layout(db)
}

func (im *importer) path(ctx context.Context, p string) (ipld.Node, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Mode().IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		nd, err := im.file(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return nd, nil
	case fi.IsDir():
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			return nil, err
		}
		return im.dir(ctx, p, len(entries), func(i int) (string, ipld.Node, error) {
			child, err := im.path(ctx, filepath.Join(p, entries[i].Name()))
			return entries[i].Name(), child, err
		})
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		return im.symlink(ctx, target)
	default:
		return nil, fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
	}
}

// untrusted imports the file, directory or symlink at p, never following a
// symlink beneath p (AddOptions.Untrusted).
func (im *importer) untrusted(ctx context.Context, p string) (ipld.Node, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	parentPath, name := filepath.Dir(abs), filepath.Base(abs)
	if parentPath == abs {
		return nil, fmt.Errorf("%s: an untrusted add needs a path below a directory", p)
	}
	parent, err := safefs.OpenDir(parentPath)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	e, err := parent.Lstat(name)
	if err != nil {
		return nil, err
	}
	return im.entry(ctx, parent, e)
}

// entry imports entry e of the untrusted directory d.
func (im *importer) entry(ctx context.Context, d *safefs.Dir, e safefs.Entry) (ipld.Node, error) {
	switch e.Kind {
	case safefs.KindFile:
		f, err := d.Open(e.Name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		nd, err := im.file(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return nd, nil
	case safefs.KindDir:
		sd, err := d.OpenDir(e.Name)
		if err != nil {
			return nil, err
		}
		defer sd.Close()
		entries, err := sd.ReadDir() // sorted by name
		if err != nil {
			return nil, err
		}
		return im.dir(ctx, sd.Path(), len(entries), func(i int) (string, ipld.Node, error) {
			child, err := im.entry(ctx, sd, entries[i])
			return entries[i].Name, child, err
		})
	default: // safefs.KindSymlink
		target, err := d.Readlink(e.Name)
		if err != nil {
			return nil, err
		}
		return im.symlink(ctx, target)
	}
}

// symlink adds a unixfs symlink to target.
func (im *importer) symlink(ctx context.Context, target string) (ipld.Node, error) {
	data, err := unixfs.SymlinkData(target)
	if err != nil {
		return nil, err
	}
	nd := merkledag.NodeWithData(data)
	if err := nd.SetCidBuilder(im.prefix); err != nil {
		return nil, err
	}
	if err := im.dag.Add(ctx, nd); err != nil {
		return nil, err
	}
	return nd, nil
}

// dir adds a unixfs directory of n children, child(i) importing the i-th
// (in name order); p names the directory in errors.
func (im *importer) dir(ctx context.Context, p string, n int, child func(i int) (string, ipld.Node, error)) (ipld.Node, error) {
	d, err := uio.NewDirectory(im.dag, uio.WithCidBuilder(im.prefix))
	if err != nil {
		return nil, err
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name, nd, err := child(i)
		if err != nil {
			return nil, err
		}
		if err := d.AddChild(ctx, name, nd); err != nil {
			return nil, fmt.Errorf("%s: add %q: %w", p, name, err)
		}
	}
	nd, err := d.GetNode()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := im.dag.Add(ctx, nd); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return nd, nil
}

// AddFile imports the bytes of r as one unixfs file, pins the root under
// opts.PinName, publishes it when opts.Public is set and returns its CID. Memory stays bounded: r is
// read one chunk at a time and blocks are written in small batches.
func (s *Store) AddFile(ctx context.Context, r io.Reader, opts AddOptions) (cid.Cid, error) {
	return s.add(ctx, "add file", opts, func(im *importer) (ipld.Node, error) { return im.file(r) })
}

// AddPath imports a file, a symlink or a directory tree (recursively, hidden
// files included) at path, pins the root under opts.PinName (default: the
// base name of path), publishes it when opts.Public is set and returns its
// CID. Set opts.Untrusted
// when someone else controls what lies beneath path.
func (s *Store) AddPath(ctx context.Context, path string, opts AddOptions) (cid.Cid, error) {
	if opts.PinName == "" {
		opts.PinName = filepath.Base(filepath.Clean(path))
	}
	return s.add(ctx, "add "+path, opts, func(im *importer) (ipld.Node, error) {
		if opts.Untrusted {
			return im.untrusted(ctx, path)
		}
		return im.path(ctx, path)
	})
}

func (s *Store) add(ctx context.Context, op string, opts AddOptions, build func(*importer) (ipld.Node, error)) (cid.Cid, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if s.closed() {
		return cid.Undef, fmt.Errorf("content: %s: %w", op, ErrClosed)
	}
	im, buf, err := s.newImporter(ctx, opts)
	if err != nil {
		return cid.Undef, fmt.Errorf("content: %s: %w", op, err)
	}
	nd, err := build(im)
	if err != nil {
		return cid.Undef, fmt.Errorf("content: %s: %w", op, err)
	}
	if err := buf.Commit(); err != nil {
		return cid.Undef, fmt.Errorf("content: %s: write blocks: %w", op, err)
	}
	root := nd.Cid()
	keep := false
	if opts.KeepPin {
		var err error
		if _, keep, err = s.PinOf(ctx, root); err != nil {
			return cid.Undef, fmt.Errorf("content: %s: %w", op, err)
		}
	}
	if !keep {
		if err := s.putPin(ctx, root, opts.PinName); err != nil {
			return cid.Undef, fmt.Errorf("content: %s: %w", op, err)
		}
	}
	if opts.Public {
		if err := s.publish(ctx, root); err != nil {
			return cid.Undef, fmt.Errorf("content: %s: publish: %w", op, err)
		}
	}
	return root, nil
}
