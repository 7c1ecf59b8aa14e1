package node

import (
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
)

// MetricsNamespace prefixes every metric the node exports.
const MetricsNamespace = "offload"

// metrics is the node's Prometheus registry (its own, never the global
// one, so several nodes in one process do not collide) and the market
// observer that feeds its counters.
//
// Exported series (all prefixed offload_):
//
//	tasks{state}                      gauge, the requestor's tasks by state (read at scrape)
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
	}
	// Terminal states start at zero so that rate() works from the first scrape.
	for _, st := range []market.State{market.StateCompleted, market.StateFailed, market.StateCanceled} {
		m.tasksEnded.WithLabelValues(string(st))
	}
	m.reg.MustRegister(m.bids, m.awards, m.failovers, m.tasksEnded, m.runs,
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

// nodeCollector reads gauges from the node at scrape time.
type nodeCollector struct{ n *Node }

var (
	descTasks = prometheus.NewDesc(MetricsNamespace+"_tasks", "Tasks of this requestor by state.", []string{"state"}, nil)
	descPeers = prometheus.NewDesc(MetricsNamespace+"_peers_connected", "Connected libp2p peers.", nil, nil)
	descPool  = prometheus.NewDesc(MetricsNamespace+"_pool_providers", "Providers in the pool cache (not expired).", nil, nil)
	descPoolR = prometheus.NewDesc(MetricsNamespace+"_pool_records_total", "Capability records by what became of them.", []string{"result"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTasks
	ch <- descPeers
	ch <- descPool
	ch <- descPoolR
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if n.req != nil {
		counts := map[string]int{}
		for _, st := range taskStates {
			counts[string(st)] = 0
		}
		if ts, err := n.req.List(); err == nil {
			for _, t := range ts {
				counts[string(t.State)]++
			}
			for st, v := range counts {
				ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(v), st)
			}
		} else {
			ch <- prometheus.NewInvalidMetric(descTasks, err)
		}
	}
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
		for result, v := range map[string]uint64{"accepted": st.Accepted, "ignored": st.Ignored, "rejected": st.Rejected, "expired": st.Expired} {
			ch <- prometheus.MustNewConstMetric(descPoolR, prometheus.CounterValue, float64(v), result)
		}
	}
}

// metrics serves the registry in the Prometheus text format.
func (s *apiServer) metrics(w http.ResponseWriter, r *http.Request) {
	s.n.metrics.handler.ServeHTTP(w, r)
}
