// Package content is the IPFS content layer of an offload node: every file,
// directory tree, docker-save tarball, WASM module and task output moves
// through it as a unixfs DAG addressed by CID.
//
// It owns:
//
//   - a block store: a boxo blockstore (identity-hash aware, hash verified on
//     every read) on a Badger v4 datastore (github.com/ipfs/go-ds-badger4) in a
//     directory the caller gives;
//   - bitswap on the node's own libp2p host, serving local blocks to any peer
//     and fetching missing ones from connected peers first, then from
//     providers found through the content router (the Kademlia DHT);
//   - the unixfs importer (Add*) and exporter (Get, Open);
//   - a recursive pin set and a mark-and-sweep garbage collector.
//
// # CIDs
//
// Files are chunked in fixed 256 KiB pieces (size-262144) into a balanced
// dag-pb layout with at most 174 links per node, exactly as `ipfs add` does.
// With AddOptions.CIDVersion 0 a file's CID is the one `ipfs add` prints with
// its defaults (CIDv0, dag-pb leaves). The default is CIDv1 with raw leaves,
// the CID `ipfs add --cid-version 1` prints. Directories are unixfs
// directories built with boxo's dynamic directory, so they switch to a
// HAMT-sharded directory above the same threshold the reference uses (256 KiB
// of estimated links, fanout 256). A directory is added with its hidden files
// (like `ipfs add -r --hidden`); symlinks become unixfs symlinks.
//
// # Pins and garbage collection
//
// Content added with AddFile or AddPath is pinned recursively under a name;
// Fetch pins on request. Pins live in the same Badger datastore as the blocks
// (keys under /offload/pins). GC marks every block reachable from a pin that
// is held locally and deletes every other block. GC takes a write lock that
// adds, Fetch and Get hold for reading, so it never collects the blocks of an
// add or a fetch in progress. Blocks streamed by Open are not protected.
//
// # Fetching
//
// Get and Fetch connect first to the peers named in the Peers hint (and any
// already connected peer receives the wants through bitswap's broadcast), so
// content fetched from the provider that produced it never waits on a DHT
// search; the DHT is asked only after bitswap's provider search delay. The
// timeout is an inactivity timeout: a transfer fails with ErrTimeout when no
// block arrived for that long, however big the content is.
//
// # Writing to disk
//
// Get writes into a temporary directory next to dest and renames it into
// place when everything was written, so a refused or failed transfer leaves
// nothing half-written at dest. Entry names that could escape the target
// ("", ".", "..", names with a path separator or NUL) are refused, and so
// are symlinks whose target is absolute or leaves the tree.
package content
