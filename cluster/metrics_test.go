package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tolerex/tolerex/actors/actortest"
)

// TestActorMetricsBridge spawns and stops actors on a system whose metrics
// go to a Prometheus registry: protoactor's counters show up, and its
// per-actor mailbox callbacks (which would keep every stopped actor alive)
// are not registered.
func TestActorMetricsBridge(t *testing.T) {
	reg := prometheus.NewRegistry()
	provider, err := meterProvider(reg)
	if err != nil {
		t.Fatal(err)
	}
	system := actor.NewActorSystem(
		actor.WithMetricProviders(provider),
		actor.WithLoggerFactory(actortest.QuietLogger),
	)
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(string); ok {
			ctx.Respond("pong")
		}
	})
	for i := 0; i < 200; i++ {
		pid := system.Root.Spawn(props)
		if _, err := system.Root.RequestFuture(pid, "ping", time.Second).Result(); err != nil {
			t.Fatal(err)
		}
		if err := system.Root.StopFuture(pid).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	var found []string
	for name := range names {
		if strings.HasPrefix(name, "protoactor_") {
			found = append(found, name)
		}
		if strings.Contains(name, "mailbox_length") {
			t.Errorf("protoactor's per-actor mailbox gauge is exported: %s", name)
		}
	}
	if !names["protoactor_actor_spawn_count_total"] || !names["protoactor_actor_message_receive_duration_seconds"] {
		t.Errorf("protoactor spawn counter or receive histogram missing; exported: %v", found)
	}
	t.Logf("protoactor metrics exported: %v", found)

	// The handling-time histogram has buckets for microseconds, not
	// OpenTelemetry's defaults (0, 5, 10, ... seconds), and the pings
	// above, handled in far less than 10 ms, are counted below 10 ms.
	var below10ms, total uint64
	for _, f := range families {
		if f.GetName() != "protoactor_actor_message_receive_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == 0.01 {
					below10ms += b.GetCumulativeCount()
				}
			}
		}
	}
	if total == 0 || below10ms*2 < total {
		t.Errorf("receive histogram: %d of %d messages counted below 10 ms; want most (bucket boundaries wrong?)", below10ms, total)
	}
}
