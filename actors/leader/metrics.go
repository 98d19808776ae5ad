package leader

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the leader's Prometheus metrics.
type Metrics struct {
	FanoutSeconds   prometheus.Histogram
	CommitSeconds   prometheus.Histogram
	ReplicaFailures *prometheus.CounterVec
	// StoreResends counts copies sent to a member once more because its
	// answer was late (Config.StoreResendAfter).
	StoreResends prometheus.Counter
	// StoreHedges counts SETs one more member was asked to store a copy
	// for because a copy's answer was late (Config.StoreHedgeAfter).
	StoreHedges   prometheus.Counter
	ReadFallbacks *prometheus.CounterVec
	// ReadHedges counts reads a second replica was asked for because the
	// first's answer was late (Config.ReadHedgeAfter).
	ReadHedges     prometheus.Counter
	LiveMembers    prometheus.Gauge
	MemberMessages *prometheus.GaugeVec
	MemberBytes    *prometheus.GaugeVec
	// RefusedProposals counts entries refused before they were logged
	// because the state machine would reject them.
	RefusedProposals prometheus.Counter
	// ForwardedBytes is the message bytes the active leader holds for
	// requests other gateways forwarded; ForwardsBusy counts those it
	// answered "busy" for want of room (Config.MaxHeldBytes).
	ForwardedBytes prometheus.Gauge
	ForwardsBusy   prometheus.Counter
}

// NewMetrics creates the leader's metrics and registers them, with the
// index size from status, on reg.
func NewMetrics(reg prometheus.Registerer, status *Status) *Metrics {
	latency := prometheus.ExponentialBuckets(0.0001, 2, 16) // 100µs .. 3.3s
	m := &Metrics{
		FanoutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tolerex_replication_fanout_seconds",
			Help:    "Time from a SET reaching the leader to its last required durable copy.",
			Buckets: latency,
		}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tolerex_metadata_commit_seconds",
			Help:    "Time from proposing a metadata log entry to applying it.",
			Buckets: latency,
		}),
		ReplicaFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tolerex_replica_store_failures_total",
			Help: "Member stores that failed and were retried on another member, by reason.",
		}, []string{"reason"}),
		StoreResends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_replica_store_resends_total",
			Help: "Copies sent once more to a live member whose answer was late (--store-resend-after); its answer may have been lost.",
		}),
		StoreHedges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_replica_store_hedges_total",
			Help: "SETs whose copy had not been answered after --store-hedge-after, so one more member was asked to store it too; the first copies stored are indexed, the others pruned.",
		}),
		ReadFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tolerex_read_fallbacks_total",
			Help: "Replica reads that failed and fell back to another replica, by reason.",
		}, []string{"reason"}),
		ReadHedges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_read_hedges_total",
			Help: "GETs whose first replica had not answered after --read-hedge-after, so the next replica was asked too; the first good answer is the GET's.",
		}),
		LiveMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tolerex_live_members",
			Help: "Members alive with their storage ready.",
		}),
		MemberMessages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tolerex_member_stored_messages",
			Help: "Message versions each member reports storing.",
		}, []string{"member"}),
		MemberBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tolerex_member_stored_bytes",
			Help: "Payload bytes each member reports storing.",
		}, []string{"member"}),
		RefusedProposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_meta_refused_proposals_total",
			Help: "Metadata entries refused before they were logged because the state machine would reject them (a bug).",
		}),
		ForwardedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tolerex_forwarded_inflight_bytes",
			Help: "Message bytes the active leader holds for requests other gateways forwarded to it (bounded by --max-inflight-bytes, plus one message per forwarding gateway).",
		}),
		ForwardsBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_forwarded_busy_total",
			Help: "Forwarded requests the active leader answered busy (not taken, sent again by their gateway) because it held as many message bytes from their gateway as it takes.",
		}),
	}
	reg.MustRegister(m.FanoutSeconds, m.CommitSeconds, m.ReplicaFailures, m.StoreResends, m.StoreHedges, m.ReadFallbacks, m.ReadHedges,
		m.LiveMembers, m.MemberMessages, m.MemberBytes, m.RefusedProposals, m.ForwardedBytes, m.ForwardsBusy,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_index_messages",
			Help: "Messages in the leader's index.",
		}, func() float64 { return float64(status.Messages.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_leader_active",
			Help: "1 while this gateway's leader serves requests.",
		}, func() float64 {
			if status.Active.Load() {
				return 1
			}
			return 0
		}),
	)
	return m
}
