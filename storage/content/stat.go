package content

import (
	"context"
	"fmt"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// ContentStat says what a CID is and how much of it the store holds. It is
// computed from local blocks only and never touches the network.
type ContentStat struct {
	// RootLocal is false when not even the root block is held; every other
	// field is then zero.
	RootLocal bool
	// IsDir is true for unixfs directories (basic or HAMT-sharded).
	IsDir bool
	// Size is the file size for a file and the total DAG size (as recorded
	// in the links) for a directory.
	Size uint64
	// CumulativeSize is the DAG's size as its root records it (kubo's
	// CumulativeSize): the root block's bytes plus the cumulative sizes its
	// links record, so a subtree linked twice counts twice. For a DAG built
	// honestly it is at least the file bytes Get writes and the distinct
	// block bytes it fetches; it is what GetOptions.MaxBytes is compared
	// with.
	CumulativeSize uint64
	// Blocks and LocalBlocks count the distinct blocks known so far (linked
	// from a held block) and those held.
	Blocks, LocalBlocks int
	// LocalBytes and TotalBytes measure held block bytes against the DAG's
	// total; missing subtrees count by their recorded cumulative size.
	LocalBytes, TotalBytes uint64
	// Local is LocalBytes/TotalBytes, in [0, 1]: the fraction of the content
	// already here, which a bid can use to discount transfer cost.
	Local float64
	// Complete is true when every block of the DAG is held.
	Complete bool
}

// Has reports whether the root block of c is held locally.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if s.closed() {
		return false, fmt.Errorf("content: has %s: %w", c, ErrClosed)
	}
	ok, err := s.bstore.Has(ctx, c)
	if err != nil {
		return false, fmt.Errorf("content: has %s: %w", c, err)
	}
	return ok, nil
}

// Stat walks the locally held part of c's DAG and reports its kind, its size
// and the fraction held (see ContentStat). It costs one local read per held
// dag-pb block.
func (s *Store) Stat(ctx context.Context, c cid.Cid) (ContentStat, error) {
	if s.closed() {
		return ContentStat{}, fmt.Errorf("content: stat %s: %w", c, ErrClosed)
	}
	st, err := s.stat(ctx, c)
	if err != nil {
		return ContentStat{}, fmt.Errorf("content: stat %s: %w", c, err)
	}
	return st, nil
}

func (s *Store) stat(ctx context.Context, c cid.Cid) (ContentStat, error) {
	var st ContentStat
	missingBytes := uint64(0)
	missingBlocks := 0
	first := true
	err := s.walkLocal(ctx, c, func(k cid.Cid, nd ipld.Node, size int) error {
		st.LocalBlocks++
		st.LocalBytes += uint64(size)
		if first {
			first = false
			st.RootLocal = true
			switch n := nd.(type) {
			case nil: // raw block: a file of one chunk
				st.Size = uint64(size)
				st.CumulativeSize = uint64(size)
			case *merkledag.ProtoNode:
				total, err := n.Size()
				if err != nil {
					return err
				}
				st.CumulativeSize = total
				fsn, err := unixfs.FSNodeFromBytes(n.Data())
				if err != nil {
					return fmt.Errorf("not unixfs: %w", err)
				}
				st.IsDir = fsn.IsDir()
				if st.IsDir {
					st.Size = total
				} else {
					st.Size = fsn.FileSize()
				}
			default:
				return fmt.Errorf("unsupported codec %#x", k.Prefix().Codec)
			}
		}
		return nil
	}, func(l *ipld.Link) {
		missingBlocks++
		missingBytes += l.Size
	})
	if err != nil {
		return ContentStat{}, err
	}
	if !st.RootLocal {
		return ContentStat{}, nil
	}
	st.Blocks = st.LocalBlocks + missingBlocks
	st.TotalBytes = st.LocalBytes + missingBytes
	st.Complete = missingBlocks == 0
	if st.TotalBytes > 0 {
		st.Local = float64(st.LocalBytes) / float64(st.TotalBytes)
	} else {
		st.Local = 1
	}
	if st.Complete {
		st.Local = 1
	}
	return st, nil
}
