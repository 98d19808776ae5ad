package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tolerex/tolerex/gateway/codec"
)

// Metrics are the HaToKuSe server's Prometheus metrics.
type Metrics struct {
	Commands         *prometheus.CounterVec
	CommandSeconds   *prometheus.HistogramVec
	Connections      prometheus.Gauge
	ConnectionsTotal prometheus.Counter
	Refused          prometheus.Counter
	// InflightBytes is the client bytes held now (see Config.MaxInflightBytes).
	InflightBytes prometheus.Gauge
	// InflightWaits counts reader waits for in-flight bytes to drop.
	InflightWaits prometheus.Counter
}

// NewMetrics creates the server metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tolerex_commands_total",
			Help: "HaToKuSe commands answered, by command and result (ok, not_found, error, invalid).",
		}, []string{"command", "result"}),
		CommandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tolerex_command_seconds",
			Help:    "Time from reading a HaToKuSe command to having its reply, by command.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18), // 50µs .. 6.5s
		}, []string{"command"}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tolerex_client_connections",
			Help: "Open HaToKuSe client connections.",
		}),
		ConnectionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tolerex_client_connections_total",
			Help: "HaToKuSe client connections accepted.",
		}),
	}
	m.Refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tolerex_client_connections_refused_total",
		Help: "HaToKuSe connections refused because --max-connections were open.",
	})
	m.InflightBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tolerex_client_inflight_bytes",
		Help: "Client bytes the gateway holds now: SET messages read and not yet answered, GET replies not yet written (bounded by --max-inflight-bytes).",
	})
	m.InflightWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tolerex_client_inflight_waits_total",
		Help: "Times a client connection's reader waited because --max-inflight-bytes were in flight.",
	})
	reg.MustRegister(m.Commands, m.CommandSeconds, m.Connections, m.ConnectionsTotal, m.Refused, m.InflightBytes, m.InflightWaits)
	return m
}

// kindName names a command kind in metric labels.
func kindName(kind codec.Kind) string {
	switch kind {
	case codec.KindEmpty:
		return "empty"
	case codec.KindSet:
		return "set"
	case codec.KindGet:
		return "get"
	case codec.KindDel:
		return "del"
	case codec.KindPing:
		return "ping"
	case codec.KindHelp:
		return "help"
	case codec.KindQuit:
		return "quit"
	default:
		return "invalid"
	}
}

func (m *Metrics) observe(kind codec.Kind, result string, took time.Duration) {
	name := kindName(kind)
	m.Commands.WithLabelValues(name, result).Inc()
	m.CommandSeconds.WithLabelValues(name).Observe(took.Seconds())
}
