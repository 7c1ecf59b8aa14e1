package content

import (
	"context"
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
)

const (
	// ChunkSize is the fixed chunk size of the importer (`ipfs add`'s
	// size-262144).
	ChunkSize = 256 << 10
	// MaxLinksPerNode is the balanced layout's width (`ipfs add`'s 174).
	MaxLinksPerNode = 174
)

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
}

// Version returns a pointer to v, for AddOptions.CIDVersion.
func Version(v int) *int { return &v }

type importer struct {
	prefix    cid.Prefix
	rawLeaves bool
	dag       ipld.DAGService
	progress  func(n int64)
	read      atomic.Int64
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
	return &importer{prefix: prefix, rawLeaves: raw, dag: buf, progress: opts.Progress}, buf, nil
}

type countingReader struct {
	r  io.Reader
	im *importer
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		t := c.im.read.Add(int64(n))
		if c.im.progress != nil {
			c.im.progress(t)
		}
	}
	return n, err
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
		return im.dir(ctx, p)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
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
	default:
		return nil, fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
	}
}

func (im *importer) dir(ctx context.Context, p string) (ipld.Node, error) {
	entries, err := os.ReadDir(p) // sorted by name
	if err != nil {
		return nil, err
	}
	d, err := uio.NewDirectory(im.dag, uio.WithCidBuilder(im.prefix))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		child, err := im.path(ctx, filepath.Join(p, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := d.AddChild(ctx, e.Name(), child); err != nil {
			return nil, fmt.Errorf("%s: add %q: %w", p, e.Name(), err)
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
// opts.PinName, announces it and returns its CID. Memory stays bounded: r is
// read one chunk at a time and blocks are written in small batches.
func (s *Store) AddFile(ctx context.Context, r io.Reader, opts AddOptions) (cid.Cid, error) {
	return s.add(ctx, "add file", opts, func(im *importer) (ipld.Node, error) { return im.file(r) })
}

// AddPath imports a file, a symlink or a directory tree (recursively, hidden
// files included) at path, pins the root under opts.PinName (default: the
// base name of path), announces it and returns its CID.
func (s *Store) AddPath(ctx context.Context, path string, opts AddOptions) (cid.Cid, error) {
	if opts.PinName == "" {
		opts.PinName = filepath.Base(filepath.Clean(path))
	}
	return s.add(ctx, "add "+path, opts, func(im *importer) (ipld.Node, error) { return im.path(ctx, path) })
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
	if err := s.putPin(ctx, root, opts.PinName); err != nil {
		return cid.Undef, fmt.Errorf("content: %s: %w", op, err)
	}
	s.provide(root)
	return root, nil
}
