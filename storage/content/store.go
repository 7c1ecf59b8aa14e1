package content

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	badger "github.com/ipfs/go-ds-badger4"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Router is the content routing a Store needs: announce what it holds and
// find who holds what it lacks. *dht.IpfsDHT (and any routing.Routing)
// implements it.
type Router = routing.ContentRouting

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrClosed is returned by every method once Close was called.
	ErrClosed = errors.New("content store closed")
	// ErrTimeout means no block arrived for the inactivity timeout: no
	// connected or hinted peer had the content and no provider was found.
	// Retrying later (or with a peer hint) can help.
	ErrTimeout = errors.New("content not found before timeout")
	// ErrNotLocal is returned by offline reads of content the store lacks.
	ErrNotLocal = errors.New("content not held locally")
	// ErrUnsafeName marks a unixfs entry name or symlink that would escape
	// the target directory.
	ErrUnsafeName = errors.New("unsafe entry name")
	// ErrDestExists is returned by Get when dest exists, is not an empty
	// directory and GetOptions.Overwrite is false.
	ErrDestExists = errors.New("destination exists")
	// ErrIsDir is returned by Open for a directory.
	ErrIsDir = errors.New("content is a directory")
)

// Store is a node's content store: blocks on Badger, bitswap on the host,
// provider records through the router. All methods are safe for concurrent
// use.
type Store struct {
	cfg    config
	log    *slog.Logger
	host   host.Host
	router Router // nil when offline

	ds      *badger.Datastore
	bstore  blockstore.Blockstore // verifying, identity-aware
	bswap   *bitswap.Bitswap
	bserv   blockservice.BlockService // online: bitswap on miss
	dag     ipld.DAGService           // online
	offline ipld.DAGService           // local blocks only

	// access decides which peer may fetch which block (Share, Publish).
	access *access

	// gcMu is held for reading by adds, fetches, grants and publishes and
	// for writing by GC.
	gcMu sync.RWMutex

	ctx       context.Context // the store's lifetime
	cancel    context.CancelFunc
	wg        sync.WaitGroup // background provides and the denial checker
	closeOnce sync.Once
	closeErr  error
}

// New opens the block store under dir (created if missing) and starts
// bitswap on h. r may be nil: the store then neither announces nor searches
// content, and fetches only from connected or hinted peers. Otherwise
// published roots (and only those) are provided through r, and missing
// content is looked up with it after bitswap's provider search delay; the
// node passes its *dht.IpfsDHT. Bitswap itself gets r only as a provider
// finder and never announces what it receives.
//
// Content is private: bitswap serves a block only to peers it was shared
// with (Share) or, once published (Publish), to anyone. New loads the
// published roots from dir, rebuilding the public set by walking each once,
// and announces them again.
//
// ctx only bounds construction; the store lives until Close.
//
// Defaults for unset options: inactivity timeout DefaultTimeout, provide
// timeout DefaultProvideTimeout, fetch concurrency DefaultFetchConcurrency,
// shared block limit DefaultMaxSharedBlocks, Badger without sync writes,
// bitswap with MaxOutstandingBytesPerPeer DefaultMaxOutstandingBytesPerPeer
// and TargetMessageSize DefaultTargetMessageSize.
func New(ctx context.Context, h host.Host, r Router, dir string, opts ...Option) (*Store, error) {
	if h == nil {
		return nil, errors.New("content: new: nil host")
	}
	if dir == "" {
		return nil, errors.New("content: new: empty directory")
	}
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("content: new: option: %w", err)
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default().With("subsystem", "content")
	}
	if cfg.timeout == 0 {
		cfg.timeout = DefaultTimeout
	}
	if cfg.provideTimeout == 0 {
		cfg.provideTimeout = DefaultProvideTimeout
	}
	if cfg.fetchConcurrency == 0 {
		cfg.fetchConcurrency = DefaultFetchConcurrency
	}
	if cfg.maxSharedBlocks == 0 {
		cfg.maxSharedBlocks = DefaultMaxSharedBlocks
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("content: new: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("content: new: %w", err)
	}
	ds, err := badger.NewDatastore(dir, badgerOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("content: open badger datastore in %s: %w", dir, err)
	}

	var bs blockstore.Blockstore = blockstore.NewBlockstore(ds, blockstore.WriteThrough(false))
	bs = &blockstore.ValidatingBlockstore{Blockstore: bs}
	bs = blockstore.NewIdStore(bs)

	var finder routing.ContentDiscovery
	if r != nil {
		// Only the finding half: nothing bitswap does can announce.
		finder = findOnly{r}
	}
	acc := newAccess(cfg.maxSharedBlocks)
	bsOpts := []bitswap.Option{
		bitswap.MaxOutstandingBytesPerPeer(DefaultMaxOutstandingBytesPerPeer),
		bitswap.WithTargetMessageSize(DefaultTargetMessageSize),
		bitswap.EngineBlockstoreWorkerCount(32),
		bitswap.ProviderSearchDelay(time.Second),
	}
	bsOpts = append(bsOpts, cfg.bitswapOpts...)
	// Last, so no option given through WithBitswapOptions replaces it.
	bsOpts = append(bsOpts, bitswap.WithPeerBlockRequestFilter(acc.allow))

	sctx, cancel := context.WithCancel(context.Background())
	bswap := bitswap.New(sctx, bsnet.NewFromIpfsHost(h), finder, bs, bsOpts...)
	bserv := blockservice.New(bs, bswap)

	s := &Store{
		cfg:     cfg,
		log:     cfg.logger,
		host:    h,
		router:  r,
		ds:      ds,
		bstore:  bs,
		bswap:   bswap,
		bserv:   bserv,
		dag:     merkledag.NewDAGService(bserv),
		offline: merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs))),
		access:  acc,
		ctx:     sctx,
		cancel:  cancel,
	}
	s.wg.Add(1)
	go s.checkDenied()
	if err := s.loadPublic(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("content: new: %w", err), s.Close())
	}
	return s, nil
}

// findOnly hides every method of a router but FindProvidersAsync.
type findOnly struct{ r routing.ContentDiscovery }

func (f findOnly) FindProvidersAsync(ctx context.Context, c cid.Cid, n int) <-chan peer.AddrInfo {
	return f.r.FindProvidersAsync(ctx, c, n)
}

// badgerOptions tunes Badger for a block store: blocks (up to 1 MiB, mostly
// 256 KiB) go to the value log instead of the LSM tree, so compactions move
// keys rather than data, and memtables stay small enough for two stores in a
// test process.
func badgerOptions(cfg config) *badger.Options {
	o := badger.DefaultOptions
	o.SyncWrites = cfg.syncWrites
	o.ValueThreshold = 4 << 10
	o.MemTableSize = 16 << 20
	o.NumMemtables = 3
	o.BlockCacheSize = 32 << 20
	o.ValueLogFileSize = 256 << 20
	return &o
}

// Close stops bitswap, waits for background announcements and closes the
// datastore. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		var errs []error
		if err := s.bswap.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close bitswap: %w", err))
		}
		s.wg.Wait()
		s.gcMu.Lock() // wait for adds and GC in flight
		if err := s.ds.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close datastore: %w", err))
		}
		s.gcMu.Unlock()
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("content: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) closed() bool { return s.ctx.Err() != nil }

// provide announces root through the router in the background. Only
// published roots are announced: Publish, AddOptions.Public and the reload
// of published roots in New call it, nothing else.
func (s *Store) provide(root cid.Cid) {
	if s.router == nil || s.closed() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.provideTimeout)
		defer cancel()
		if err := s.router.Provide(ctx, root, true); err != nil {
			s.log.Debug("provide failed", "cid", root, "err", err)
			return
		}
		s.log.Debug("provided", "cid", root)
	}()
}

// Logger returns the store's logger.
func (s *Store) Logger() *slog.Logger { return s.log }

// Host returns the libp2p host bitswap runs on.
func (s *Store) Host() host.Host { return s.host }

// Blockstore returns the verifying block store, for callers that need raw
// blocks (for example a DAG of another codec). Writes through it bypass GC
// protection: pin what you write.
func (s *Store) Blockstore() blockstore.Blockstore { return s.bstore }

// DAGService returns the online DAG service: reads of missing nodes go to
// bitswap.
func (s *Store) DAGService() ipld.DAGService { return s.dag }
