package p2p

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"github.com/ipfs/boxo/routing/http/client"
	"github.com/ipfs/boxo/routing/http/contentrouter"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// maxDelegatedRouters bounds Config.DelegatedRouting.
const maxDelegatedRouters = 8

// contentRouting is the node's content routing with delegated routers: it
// announces through the DHT only (a delegated router takes no provider
// records from us) and finds providers through the DHT and every delegated
// router at once, each peer reported once.
type contentRouting struct {
	dht       routing.ContentRouting
	delegated []routing.ContentRouting
}

// newContentRouting returns the DHT alone when no URL is given.
func newContentRouting(kad routing.ContentRouting, urls []string) (routing.ContentRouting, error) {
	if len(urls) == 0 {
		return kad, nil
	}
	if len(urls) > maxDelegatedRouters {
		return nil, fmt.Errorf("at most %d delegated routers, got %d", maxDelegatedRouters, len(urls))
	}
	cr := &contentRouting{dht: kad}
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return nil, fmt.Errorf("delegated router %q: want an http(s) URL such as https://delegated-ipfs.dev", u)
		}
		c, err := client.New(u)
		if err != nil {
			return nil, fmt.Errorf("delegated router %q: %w", u, err)
		}
		cr.delegated = append(cr.delegated, contentrouter.NewContentRoutingClient(c))
	}
	return cr, nil
}

// Provide announces c in the DHT.
func (r *contentRouting) Provide(ctx context.Context, c cid.Cid, announce bool) error {
	return r.dht.Provide(ctx, c, announce)
}

// FindProvidersAsync asks the DHT and every delegated router; the channel
// closes when all of them are done, ctx is done or count distinct peers
// were sent (count 0: no bound).
func (r *contentRouting) FindProvidersAsync(ctx context.Context, c cid.Cid, count int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo)
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu   sync.Mutex
		seen = map[peer.ID]bool{}
		wg   sync.WaitGroup
	)
	send := func(info peer.AddrInfo) bool {
		mu.Lock()
		if seen[info.ID] || count > 0 && len(seen) >= count {
			full := count > 0 && len(seen) >= count
			mu.Unlock()
			return !full
		}
		seen[info.ID] = true
		full := count > 0 && len(seen) >= count
		mu.Unlock()
		select {
		case out <- info:
		case <-ctx.Done():
			return false
		}
		if full {
			cancel()
			return false
		}
		return true
	}
	for _, src := range append([]routing.ContentRouting{r.dht}, r.delegated...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for info := range src.FindProvidersAsync(ctx, c, count) {
				if info.ID == "" || !send(info) {
					break
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out
}
