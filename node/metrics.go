package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/storage"
)

// MetricsNamespace prefixes every metric the node exports.
const MetricsNamespace = "offload"

// metrics is the node's Prometheus registry (its own, never the global
// one, so several nodes in one process do not collide) and the market
// observer that feeds its counters.
//
// Exported series (all prefixed offload_):
//
//	tasks{state}                      gauge, the requestor's tasks by state (kept by countedTasks, never a scan)
//	tasks_ended_total{state}          counter, tasks that reached completed, failed or canceled
//	bids_received_total               counter, bids and declines taken into an auction
//	awards_total                      counter, awards a provider accepted
//	failovers_total                   counter, tasks moved off a provider that went silent, timed out or failed retryably
//	execution_duration_seconds{runtime,result}  histogram, executor runs on this provider
//	peers_connected                   gauge, connected libp2p peers
//	pool_providers                    gauge, providers in the pool cache
//	pool_records_total{result}        counter, capability records accepted, ignored, rejected, expired
//
// plus the Go runtime and process collectors. Bitswap byte counters are not
// exported: the content store does not expose bitswap's statistics.
type metrics struct {
	reg        *prometheus.Registry
	handler    http.Handler // serves reg
	bids       prometheus.Counter
	awards     prometheus.Counter
	failovers  prometheus.Counter
	tasksEnded *prometheus.CounterVec
	runs       *prometheus.HistogramVec
	// tasks is offload_tasks{state}; tasksStore (set by countTasks) keeps it.
	tasks      *prometheus.GaugeVec
	tasksStore *countedTasks
}

var _ market.Observer = (*metrics)(nil)

// newMetrics builds the registry. The node's collector reads n lazily at
// scrape time, so it may be registered before n is fully built.
func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		bids: prometheus.NewCounter(prometheus.CounterOpts{Namespace: MetricsNamespace, Name: "bids_received_total",
			Help: "Bids and declines received by this requestor into an open auction."}),
		awards: prometheus.NewCounter(prometheus.CounterOpts{Namespace: MetricsNamespace, Name: "awards_total",
			Help: "Awards accepted by a provider."}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: MetricsNamespace, Name: "failovers_total",
			Help: "Tasks moved off their provider (silent, timed out, or failed retryably) to another attempt."}),
		tasksEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: MetricsNamespace, Name: "tasks_ended_total",
			Help: "Tasks that reached a terminal state since the node started."}, []string{"state"}),
		runs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: MetricsNamespace, Name: "execution_duration_seconds",
			Help:    "Wall time of executor runs on this provider (image and input fetches excluded).",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600}},
			[]string{"runtime", "result"}),
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: MetricsNamespace, Name: "tasks",
			Help: "Tasks of this requestor by state."}, []string{"state"}),
	}
	// Terminal states start at zero so that rate() works from the first scrape.
	for _, st := range []market.State{market.StateCompleted, market.StateFailed, market.StateCanceled} {
		m.tasksEnded.WithLabelValues(string(st))
	}
	m.reg.MustRegister(m.bids, m.awards, m.failovers, m.tasksEnded, m.runs, m.tasks,
		&nodeCollector{n: n},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) BidReceived() { m.bids.Inc() }
func (m *metrics) Awarded()     { m.awards.Inc() }
func (m *metrics) Failover()    { m.failovers.Inc() }

func (m *metrics) TaskEnded(st market.State) { m.tasksEnded.WithLabelValues(string(st)).Inc() }

func (m *metrics) ExecutionFinished(runtime string, d time.Duration, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.runs.WithLabelValues(runtime, result).Observe(d.Seconds())
}

// Metrics returns the node's metrics registry, for programs that embed a
// node and serve /metrics themselves (promhttp.HandlerFor). The API server
// serves it at GET /metrics.
func (n *Node) Metrics() prometheus.Gatherer { return n.metrics.reg }

// nodeCollector reads gauges from the node at scrape time; each is a read
// of memory the node already holds (no store scan).
type nodeCollector struct{ n *Node }

var (
	descPeers = prometheus.NewDesc(MetricsNamespace+"_peers_connected", "Connected libp2p peers.", nil, nil)
	descPool  = prometheus.NewDesc(MetricsNamespace+"_pool_providers", "Providers in the pool cache (not expired).", nil, nil)
	descPoolR = prometheus.NewDesc(MetricsNamespace+"_pool_records_total", "Capability records by what became of them.", []string{"result"}, nil)
	descPoolX = prometheus.NewDesc(MetricsNamespace+"_pool_exchange_total",
		"Record exchange and lookup work of the pool: kind=lookups (searches started), lookup_asks (record requests they sent), unverified (records dropped as stale or expired before their signature was checked).",
		[]string{"kind"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPeers
	ch <- descPool
	ch <- descPoolR
	ch <- descPoolX
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if n.host != nil {
		peers := 0
		for _, p := range n.host.Network().Peers() {
			if n.host.Network().Connectedness(p) == network.Connected {
				peers++
			}
		}
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(peers))
	}
	if n.pool != nil {
		ch <- prometheus.MustNewConstMetric(descPool, prometheus.GaugeValue, float64(len(n.Pool(client.PoolFilter{}))))
		st := n.PoolStats()
		for result, v := range map[string]uint64{"accepted": st.Accepted, "ignored": st.Ignored, "rejected": st.Rejected, "expired": st.Expired, "evicted": st.Evicted} {
			ch <- prometheus.MustNewConstMetric(descPoolR, prometheus.CounterValue, float64(v), result)
		}
		x := n.pool.ExchangeStats()
		for kind, v := range map[string]uint64{"lookups": x.Lookups, "lookup_asks": x.LookupAsks, "unverified": x.Unverified} {
			ch <- prometheus.MustNewConstMetric(descPoolX, prometheus.CounterValue, float64(v), kind)
		}
	}
}

// metrics serves the registry in the Prometheus text format.
func (s *apiServer) metrics(w http.ResponseWriter, r *http.Request) {
	s.n.metrics.handler.ServeHTTP(w, r)
}

// countedTasks is the requestor's task store with offload_tasks{state}
// kept beside it: one scan when the node starts, then every Create adds
// the new task's state and every Update that changed a state moves one
// count from the old state to the new. The store is the one place every
// state is written (Submit, a group's children, and every transition go
// through Create or Update), so the gauge cannot miss a move, and a scrape
// reads the gauge without touching the store.
//
// It implements market.TaskStore method by method on purpose (no
// embedding): a write method added to the interface must be counted here
// too, and without embedding the build says so.
type countedTasks struct {
	inner market.TaskStore
	gauge *prometheus.GaugeVec
	// lists counts List calls, so tests can show that a scrape makes none.
	lists atomic.Int64
}

var _ market.TaskStore = (*countedTasks)(nil)

// heldTasks is what countedTasks needs of its inner store for UpdateHeld,
// UpdateAlso and UpdateHeldAlso (storage.Table has it), and offers the
// requestor in turn.
type heldTasks interface {
	UpdateHeld(string, *market.Task, func(*market.Task) error) (*market.Task, error)
	UpdateAlso(string, func(*market.Task) error, ...storage.Entry) (*market.Task, error)
	UpdateHeldAlso(string, *market.Task, func(*market.Task) error, ...storage.Entry) (*market.Task, error)
}

var (
	_ heldTasks = (*storage.Table[market.Task])(nil)
	_ heldTasks = (*countedTasks)(nil)
)

// countTasks wraps store and sets offload_tasks{state} from one scan of it;
// every state of the machine starts at zero so that the series exist from
// the first scrape. Call it before anything writes to store.
func (m *metrics) countTasks(store market.TaskStore) (*countedTasks, error) {
	c := &countedTasks{inner: store, gauge: m.tasks}
	ts, err := store.List()
	if err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	counts := map[market.State]int{}
	for _, st := range market.States {
		counts[st] = 0
	}
	for _, t := range ts {
		counts[t.State]++
	}
	for st, v := range counts {
		m.tasks.WithLabelValues(string(st)).Set(float64(v))
	}
	m.tasksStore = c
	return c, nil
}

// Create stores a new task and counts its state.
func (c *countedTasks) Create(id string, t *market.Task) error {
	if err := c.inner.Create(id, t); err != nil {
		return err
	}
	c.gauge.WithLabelValues(string(t.State)).Inc()
	return nil
}

// Get reads a task.
func (c *countedTasks) Get(id string) (*market.Task, error) { return c.inner.Get(id) }

// Update applies fn in the store's transaction and, once the write
// succeeded, moves the count when the state changed. fn may run more than
// once (the store retries on conflict); the state seen by the run that was
// written is the one counted.
func (c *countedTasks) Update(id string, fn func(*market.Task) error) (*market.Task, error) {
	return c.counted(fn, func(fn func(*market.Task) error) (*market.Task, error) { return c.inner.Update(id, fn) })
}

// UpdateHeld is Update from the copy of the task the caller holds (see
// storage.Table.UpdateHeld), counted the same way.
func (c *countedTasks) UpdateHeld(id string, held *market.Task, fn func(*market.Task) error) (*market.Task, error) {
	return c.counted(fn, func(fn func(*market.Task) error) (*market.Task, error) {
		inner, ok := c.inner.(heldTasks)
		if !ok {
			return c.inner.Update(id, fn)
		}
		return inner.UpdateHeld(id, held, fn)
	})
}

// UpdateAlso is Update that writes also in the task's transaction (see
// storage.Table.UpdateAlso), counted the same way.
func (c *countedTasks) UpdateAlso(id string, fn func(*market.Task) error, also ...storage.Entry) (*market.Task, error) {
	return c.counted(fn, func(fn func(*market.Task) error) (*market.Task, error) {
		inner, ok := c.inner.(heldTasks)
		if !ok {
			return nil, fmt.Errorf("task %s: the store cannot write other entries with a task", id)
		}
		return inner.UpdateAlso(id, fn, also...)
	})
}

// UpdateHeldAlso is UpdateHeld that writes also in the task's transaction
// (see storage.Table.UpdateHeldAlso), counted the same way.
func (c *countedTasks) UpdateHeldAlso(id string, held *market.Task, fn func(*market.Task) error, also ...storage.Entry) (*market.Task, error) {
	return c.counted(fn, func(fn func(*market.Task) error) (*market.Task, error) {
		inner, ok := c.inner.(heldTasks)
		if !ok {
			return nil, fmt.Errorf("task %s: the store cannot write other entries with a task", id)
		}
		return inner.UpdateHeldAlso(id, held, fn, also...)
	})
}

// counted runs write with fn wrapped to note the state it saw and, once
// the write succeeded, moves the count when the state changed (as Update).
func (c *countedTasks) counted(fn func(*market.Task) error, write func(func(*market.Task) error) (*market.Task, error)) (*market.Task, error) {
	var from market.State
	t, err := write(func(t *market.Task) error {
		from = t.State
		return fn(t)
	})
	if err != nil {
		return t, err
	}
	if t.State != from {
		c.gauge.WithLabelValues(string(from)).Dec()
		c.gauge.WithLabelValues(string(t.State)).Inc()
	}
	return t, nil
}

// List reads every task (the API's listing; never a scrape).
func (c *countedTasks) List() ([]*market.Task, error) {
	c.lists.Add(1)
	return c.inner.List()
}

// metricsServer serves GET /metrics without a token on the operator's
// chosen address (Config.MetricsAddr), plain HTTP.
type metricsServer struct {
	srv  *http.Server
	url  string
	done chan struct{}
}

// startMetrics listens on addr (loopback unless allowRemote) and serves
// the node's registry at /metrics and nothing else.
func startMetrics(n *Node, addr string, allowRemote bool) (*metricsServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("metrics address %q is not loopback: pass --metrics-allow-remote to serve unauthenticated metrics beyond this machine", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.handler)
	s := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		url:  "http://" + ln.Addr().String() + "/metrics",
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server", "err", err)
		}
	}()
	n.log.Info("metrics listening without a token", "url", s.url)
	return s, nil
}

func (s *metricsServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	if err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// MetricsURL returns the URL of the unauthenticated metrics listener
// (Config.MetricsAddr), or "" when there is none. The API's own /metrics
// needs the bearer token.
func (n *Node) MetricsURL() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.url
}
