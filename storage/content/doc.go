// Package content is the IPFS content layer of an offload node: every file,
// directory tree, docker-save tarball, WASM module and task output moves
// through it as a unixfs DAG addressed by CID.
//
// It owns:
//
//   - a block store: a boxo blockstore (identity-hash aware, hash verified on
//     every read) on a Badger v4 datastore (github.com/ipfs/go-ds-badger4) in a
//     directory the caller gives;
//   - bitswap on the node's own libp2p host, serving local blocks to the
//     peers allowed to fetch them (see Access) and fetching missing ones
//     from connected peers first, then from providers found through the
//     content router (the Kademlia DHT);
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
// # Access
//
// Content is private by default. Bitswap's peer block request filter asks,
// for every block a peer wants, whether the block is public or granted to
// that peer: two map lookups by multihash under a read lock, no I/O.
//
//   - Share (or Grant) walks the locally held blocks of some roots once and
//     lets one peer fetch them until release. Grants are counted per block,
//     so they nest; all live grants together hold at most
//     WithMaxSharedBlocks entries (DefaultMaxSharedBlocks, about 100 bytes
//     each), and a grant beyond that is refused whole with ErrShareLimit.
//   - Publish (or AddOptions.Public) marks a pinned root public: a record
//     under /offload/public in the datastore, and every block of its DAG in
//     an in-memory set rebuilt when the store opens and by every GC. Unpin
//     deletes the record, so a mark lasts only as long as the pin and the
//     blocks of unpinned or collected roots leave the set at the next GC. A
//     block in a published DAG is public even when private DAGs hold it too.
//   - Only published roots are announced through the content router (at
//     publish time and again when the store opens). Private adds and fetched
//     content are never announced, and bitswap gets the router only as a
//     provider finder.
//
// A refused request is counted (Sharing); those for blocks the store holds
// are logged at Debug, off bitswap's path.
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
