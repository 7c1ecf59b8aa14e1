package content

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ipfs/boxo/bitswap"
)

// Defaults applied by New to options left unset.
const (
	// DefaultTimeout is how long a fetch waits without receiving any block
	// before it fails with ErrTimeout.
	DefaultTimeout = 60 * time.Second
	// DefaultProvideTimeout bounds one announcement of an added root.
	DefaultProvideTimeout = 2 * time.Minute
	// DefaultFetchConcurrency is how many blocks a fetch asks for at once.
	DefaultFetchConcurrency = 64
	// DefaultMaxOutstandingBytesPerPeer is how many bytes bitswap's server
	// keeps queued for one peer; boxo's default (1 MiB) is four blocks, which
	// keeps a single fast peer waiting on round trips.
	DefaultMaxOutstandingBytesPerPeer = 32 << 20
	// DefaultTargetMessageSize is the size bitswap's server aims for when it
	// packs blocks into one message.
	DefaultTargetMessageSize = 1 << 20
)

type config struct {
	logger           *slog.Logger
	timeout          time.Duration
	provideTimeout   time.Duration
	fetchConcurrency int
	bitswapOpts      []bitswap.Option
	syncWrites       bool
	maxSharedBlocks  int
}

// Option configures a Store.
type Option func(*config) error

// WithLogger sets the logger; the default is slog.Default() with
// subsystem=content.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithTimeout sets the default inactivity timeout of Get, Fetch and Open
// (DefaultTimeout when unset). GetOptions.Timeout overrides it per call.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("timeout must be positive")
		}
		c.timeout = d
		return nil
	}
}

// WithProvideTimeout bounds each announcement of an added root through the
// content router (DefaultProvideTimeout when unset).
func WithProvideTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("provide timeout must be positive")
		}
		c.provideTimeout = d
		return nil
	}
}

// WithFetchConcurrency sets how many blocks a fetch requests at once
// (DefaultFetchConcurrency when unset).
func WithFetchConcurrency(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return errors.New("fetch concurrency must be positive")
		}
		c.fetchConcurrency = n
		return nil
	}
}

// WithBitswapOptions appends options passed to bitswap.New after the
// package's own tuning, so they win; the store's peer block request filter
// (access control, see Share) comes after them and cannot be replaced.
func WithBitswapOptions(opts ...bitswap.Option) Option {
	return func(c *config) error {
		c.bitswapOpts = append(c.bitswapOpts, opts...)
		return nil
	}
}

// WithSyncWrites makes Badger fsync every write. It is off by default: a
// block lost in a crash is fetched or added again, and its hash is checked
// on every read.
func WithSyncWrites(sync bool) Option {
	return func(c *config) error {
		c.syncWrites = sync
		return nil
	}
}

// WithMaxSharedBlocks bounds the block entries that all live grants of
// Share and Grant hold together (DefaultMaxSharedBlocks when unset); a
// grant that would pass it is refused with ErrShareLimit.
func WithMaxSharedBlocks(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return errors.New("max shared blocks must be positive")
		}
		c.maxSharedBlocks = n
		return nil
	}
}
