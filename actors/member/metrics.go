package member

import (
	"github.com/prometheus/client_golang/prometheus"
)

// StorageMetrics are the storage actor's Prometheus metrics. Corrupt
// reads and a corrupt store are exported from the member's Status.
type StorageMetrics struct {
	PutSeconds prometheus.Histogram
	BatchOps   prometheus.Histogram
}

// NewStorageMetrics creates the storage metrics and registers them, with
// the member's status as gauges, on reg.
func NewStorageMetrics(reg prometheus.Registerer, status *Status) *StorageMetrics {
	m := &StorageMetrics{
		PutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tolerex_member_put_seconds",
			Help:    "Time from a store request's arrival to its durable group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		BatchOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tolerex_member_commit_batch_ops",
			Help:    "Operations per group commit (one fsync each).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
	}
	reg.MustRegister(m.PutSeconds, m.BatchOps,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tolerex_member_corrupt_reads_total",
			Help: "Reads that found their record damaged (a checksum mismatch) and were refused.",
		}, func() float64 { return float64(status.CorruptReads.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_storage_corrupt",
			Help: "1 while the store is unusable because it is corrupt (it cannot be opened, or a compaction hit damaged data).",
		}, func() float64 { return boolFloat(status.StoreCorrupt() != "") }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_messages",
			Help: "Message versions stored on this member.",
		}, func() float64 { return float64(status.Messages.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_bytes",
			Help: "Payload bytes stored on this member.",
		}, func() float64 { return float64(status.Bytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_storage_ready",
			Help: "1 while the storage actor has its store open.",
		}, func() float64 { return boolFloat(status.StorageReady.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_disk_free_bytes",
			Help: "Free bytes (for unprivileged users) on the store's filesystem, as last checked (every second and before every group commit of writes).",
		}, func() float64 { return float64(status.DiskFree()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_disk_total_bytes",
			Help: "Size of the store's filesystem.",
		}, func() float64 { return float64(status.DiskTotal()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_disk_min_free_bytes",
			Help: "The free-space watermark (--min-free-bytes): below it the member refuses writes.",
		}, func() float64 { return float64(status.MinFree()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_writes_refused",
			Help: "1 while the member refuses writes (its disk is nearly full); it still serves reads.",
		}, func() float64 { return boolFloat(status.WritesRefused() != "") }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_storage_read_only",
			Help: "1 while the store is open read-only (the disk was nearly full when it was opened).",
		}, func() float64 { return boolFloat(status.ReadOnly.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tolerex_member_registered",
			Help: "1 once the gateway acknowledged this member's registration.",
		}, func() float64 { return boolFloat(status.Registered.Load()) }),
	)
	return m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
