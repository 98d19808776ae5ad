package member

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// TestMemberHeartbeatsToAnOlderGateway runs a member supervisor and, in the
// same actor system, a leading gateway's membership actor under the only
// name gateways before 2026-12-04 gave it (leader/members): the member,
// which heartbeats to "membership" first, gets a dead letter back, tries
// the legacy name and is acknowledged, so members can be upgraded before
// gateways.
func TestMemberHeartbeatsToAnOlderGateway(t *testing.T) {
	// startMemberIn shuts the system down at the end.
	system := actor.NewActorSystem(actor.WithLoggerFactory(actortest.QuietLogger))
	leader, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(actor.Context) {}), messages.LeaderActor)
	if err != nil {
		t.Fatal(err)
	}
	old, err := system.Root.SpawnNamed(actor.PropsFromProducer(membership.New(membership.Config{}, leader, zerolog.Nop())),
		messages.LegacyMembershipActor)
	if err != nil {
		t.Fatal(err)
	}
	system.Root.Send(old, &membership.PresumeAlive{Members: []meta.Member{{ID: "m-old-gw", Slot: 3, NodeAddress: system.Address()}}})
	system.Root.Send(old, &membership.Leadership{Active: true})

	n := startMemberIn(t, system, t.TempDir(), DefaultRestartPolicy(), func(cfg *Config) {
		cfg.MemberID = "m-old-gw"
		cfg.Gateways = []string{system.Address()}
		// The "gateway" is this actor system, which runs no remote
		// layer: nothing listens to probe.
		cfg.Probe = func(string, time.Duration) error { return nil }
		cfg.HeartbeatInterval = 20 * time.Millisecond
		cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	})

	eventually(t, "the member registered through the legacy name", func() bool {
		return n.status.Registered.Load() && n.status.Slot.Load() == 3
	})
}
