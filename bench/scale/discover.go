package main

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p"
)

// Discovery measurement: how long a requestor that joins a running swarm
// takes to have candidates for a task.

// discoveryWants are the candidate counts timed: a targeted auction's
// first wave (3) and a wide choice (16); each at most N.
var discoveryWants = [2]int{3, 16}

// discoveryTimeout bounds one fresh requestor's search.
const discoveryTimeout = 20 * time.Second

// discoveryRun is what one fresh requestor measured, in milliseconds from
// the start of its host: up when its node was built (host started, its
// bootstrap provider dialed), then when its pool first held each of
// discoveryWants matching providers (through Pool.Lookup, which returns
// at once when the pool already holds them, called again while short
// until discoveryTimeout); -1 for a count not reached.
type discoveryRun struct {
	UpMS    float64    `json:"up_ms"`
	WantsMS [2]float64 `json:"wants_ms"`
	Found   int        `json:"found"`
	// Pool is every record its pool held at the end, Peers its
	// connections; Pool stats and exchange counters say what it did with
	// the records it was offered.
	Pool     int                     `json:"pool"`
	Peers    int                     `json:"peers"`
	Stats    discovery.PoolStats     `json:"stats"`
	Exchange discovery.ExchangeStats `json:"exchange"`
	// DialErr is why the node was not connected to its bootstrap
	// provider once built, as a second dial says.
	DialErr string `json:"dial_err,omitempty"`
}

// discoveryStats summarises the runs at one N (nearest rank; runs that did
// not reach a count are left out of its percentiles and counted as short).
type discoveryStats struct {
	Runs  []discoveryRun `json:"runs"`
	P50MS [2]float64     `json:"p50_ms"`
	P95MS [2]float64     `json:"p95_ms"`
	Short [2]int         `json:"short"`
}

// measureDiscovery starts runs fresh requestors (at most one per key the
// swarm made for them) one after another, each
// bootstrapped to one provider drawn at random, times how soon its pool
// holds discoveryWants providers matching the harness's task, and closes
// it.
func measureDiscovery(ctx context.Context, s *swarm, runs int, log *slog.Logger) (discoveryStats, error) {
	var st discoveryStats
	req := wire.RequirementsOf(taskSpec())
	for i := range min(runs, len(s.fresh)) {
		if ctx.Err() != nil {
			break
		}
		boot := s.addrs[mrand.IntN(len(s.addrs))]
		wd := filepath.Join(s.dir, fmt.Sprintf("fresh%d", i))
		if err := os.MkdirAll(wd, 0o700); err != nil {
			return st, err
		}
		t0 := time.Now()
		n, err := newNode(ctx, s.c, nodeConfig{key: s.fresh[i], bootstrap: boot, workDir: wd, log: log, requestors: s.requestors})
		if err != nil {
			return st, fmt.Errorf("fresh requestor: %w", err)
		}
		run := discoveryRun{UpMS: ms(time.Since(t0))}
		if len(n.h.Network().Peers()) == 0 {
			run.DialErr = "no peer"
			if infos, err := p2p.ParseAddrs(boot); err == nil && len(infos) == 1 {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := n.h.Connect(dctx, infos[0]); err != nil {
					run.DialErr = err.Error()
				}
				cancel()
			}
		}
		lctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
		for j, want := range discoveryWants {
			want = min(want, len(s.addrs))
			run.WantsMS[j] = -1
			for lctx.Err() == nil {
				if run.Found = n.pool.Lookup(lctx, req, want); run.Found >= want {
					run.WantsMS[j] = ms(time.Since(t0))
					break
				}
				// Short: a node whose first dial failed has no peer yet
				// (p2p redials its bootstrap peers every 5 s), and a
				// search that ended short is not repeated within 5 s, so
				// this only reads the pool until records arrive.
				sleep(lctx, 100*time.Millisecond)
			}
		}
		cancel()
		run.Pool = len(n.pool.List(discovery.PoolFilter{}))
		run.Peers = len(n.h.Network().Peers())
		run.Stats, run.Exchange = n.pool.Stats(), n.pool.ExchangeStats()
		n.close()
		st.Runs = append(st.Runs, run)
	}
	for j := range discoveryWants {
		var v []float64
		for _, r := range st.Runs {
			if r.WantsMS[j] < 0 {
				st.Short[j]++
				continue
			}
			v = append(v, r.WantsMS[j])
		}
		slices.Sort(v)
		st.P50MS[j], st.P95MS[j] = rank(v, 0.50), rank(v, 0.95)
	}
	return st, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
