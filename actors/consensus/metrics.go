package consensus

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the consensus actor's Prometheus metrics.
type Metrics struct {
	Term      prometheus.Gauge
	IsLeader  prometheus.Gauge
	Applied   prometheus.Gauge
	Leaders   prometheus.Counter
	Rejected  prometheus.Counter
	Snapshots prometheus.Counter
	HasLeader prometheus.Gauge
	// LogEntries is the number of Raft log entries held in memory (those
	// after the last compaction).
	LogEntries prometheus.Gauge
	// LogMemoryBytes is what Pebble holds in memory for the Raft log
	// (memtables and block cache): bounded by its configuration, and part
	// of the Go heap in the cgo-less release binary.
	LogMemoryBytes prometheus.Gauge
	// Proposals counts metadata entries this gateway proposed as leader.
	Proposals prometheus.Counter
	// ApplySeconds is the time to apply one batch of committed entries;
	// ReadIndexSeconds the time from a read barrier's request to its
	// release (leadership confirmed by a quorum, state machine caught up).
	ApplySeconds     prometheus.Histogram
	ReadIndexSeconds prometheus.Histogram
	// LogAppendSeconds is the time from handing entries to the Raft log
	// until they are durable (the wait for the group commit before, then
	// this one's with its fsync): on a follower, most of what the leader
	// waits for besides the network; LogSyncSeconds the time of each
	// fsync'd group commit alone (the disk).
	LogAppendSeconds prometheus.Histogram
	LogSyncSeconds   prometheus.Histogram
	// TickInterval is the time between two ticks taken: the tick interval
	// while the consensus actor keeps up, more when it is starved (a slow
	// disk must not do that: the Raft log is written by another goroutine).
	TickInterval prometheus.Histogram
	// DiskFreeBytes is the free space on the Raft log's filesystem as last
	// checked (every tick), DiskMinFreeBytes the watermark below which the
	// gateway takes no new log entries, and WritesRefused 1 while it is
	// below it.
	DiskFreeBytes    prometheus.Gauge
	DiskMinFreeBytes prometheus.Gauge
	WritesRefused    prometheus.Gauge
}

// NewMetrics creates the consensus metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Term:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_term", Help: "The Raft term this gateway is in."}),
		IsLeader:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_is_leader", Help: "1 while this gateway is the Raft leader."}),
		HasLeader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_has_leader", Help: "1 while this gateway knows a Raft leader."}),
		Applied:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_applied_index", Help: "The last Raft log index applied to the state machine."}),
		Leaders: prometheus.NewCounter(prometheus.CounterOpts{Name: "tolerex_raft_leader_changes_total",
			Help: "Changes of who leads, or of this gateway's role, that this gateway saw (including to no leader)."}),
		Rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "tolerex_meta_rejected_entries_total",
			Help: "Committed log entries the state machine rejected and skipped. Any is a bug or a log from an incompatible version."}),
		Snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "tolerex_raft_snapshots_total", Help: "Snapshots of the state machine stored."}),
		LogEntries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_log_entries",
			Help: "Raft log entries held in memory: those since the last snapshot, plus the tail kept for gateways that lag."}),
		LogMemoryBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_log_memory_bytes",
			Help: "Bytes Pebble holds in memory for the Raft log (memtables and block cache); the release binary has no cgo, so they count in go_memstats_heap_inuse_bytes."}),
	}
	latency := prometheus.ExponentialBuckets(0.00005, 2, 16) // 50µs .. 1.6s
	m.Proposals = prometheus.NewCounter(prometheus.CounterOpts{Name: "tolerex_raft_proposed_entries_total",
		Help: "Metadata entries this gateway proposed to the Raft log as leader."})
	m.ApplySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tolerex_raft_apply_seconds",
		Help: "Time to apply one batch of committed entries to the state machine.", Buckets: latency})
	m.ReadIndexSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tolerex_raft_read_index_seconds",
		Help: "Time from a read barrier's request to its release: leadership confirmed by a quorum (ReadIndex) and the state machine caught up.", Buckets: latency})
	m.LogAppendSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tolerex_raft_log_append_seconds",
		Help: "Time from handing entries to the Raft log until they are durable: the wait for the group commit before, then this one, fsync included.", Buckets: latency})
	m.LogSyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tolerex_raft_log_sync_seconds",
		Help: "Time of each fsync'd group commit of the Raft log (the Pebble batch and its fsync).", Buckets: latency})
	m.DiskFreeBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_disk_free_bytes",
		Help: "Free bytes (for unprivileged users) on the Raft log's filesystem, as last checked (every tick)."})
	m.DiskMinFreeBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_disk_min_free_bytes",
		Help: "The free-space watermark (--min-free-bytes; 0: off): below it the gateway takes no new Raft log entries."})
	m.WritesRefused = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tolerex_raft_writes_refused",
		Help: "1 while the gateway takes no new Raft log entries because its disk is nearly full; it still serves reads."})
	m.TickInterval = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tolerex_raft_tick_interval_seconds",
		Help:    "Time between two Raft ticks taken by the consensus actor: the tick (50 ms) while it keeps up, more when it is starved.",
		Buckets: []float64{0.025, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5}})
	reg.MustRegister(m.DiskFreeBytes, m.DiskMinFreeBytes, m.WritesRefused, m.TickInterval)
	reg.MustRegister(m.Term, m.IsLeader, m.HasLeader, m.Applied, m.Leaders, m.Rejected, m.Snapshots, m.LogEntries, m.LogMemoryBytes,
		m.Proposals, m.ApplySeconds, m.ReadIndexSeconds, m.LogAppendSeconds, m.LogSyncSeconds)
	return m
}

func (m *Metrics) observeLeader(lead, term uint64, isLeader bool) {
	m.Leaders.Inc()
	m.Term.Set(float64(term))
	m.IsLeader.Set(b2f(isLeader))
	m.HasLeader.Set(b2f(lead != 0))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
