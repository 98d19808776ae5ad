package member

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/messages"
)

// TestMemberHeartbeatsToAnOlderGateway runs a member supervisor and, in the
// same actor system, a leading gateway's membership actor under the only
// name gateways before 2026-12-04 gave it (leader/members): the member,
// which heartbeats to "membership" first, gets a dead letter back, tries
// the legacy name and is acknowledged, so members can be upgraded before
// gateways.
func TestMemberHeartbeatsToAnOlderGateway(t *testing.T) {
	system := actortest.QuietSystem(t)
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

	status := &Status{}
	cfg := Config{
		MemberID:          "m-old-gw",
		Gateways:          []string{system.Address()},
		HeartbeatInterval: 20 * time.Millisecond,
		Restart:           RestartPolicy{MaxRestarts: 1, Window: time.Minute},
		Storage:           StorageConfig{Dir: t.TempDir(), Sync: true},
		Tree:              tree.NewRegistry(nil),
		Status:            status,
		Logger:            zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(NewSupervisor(cfg)), messages.MemberActor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })

	eventually(t, "the member registered through the legacy name", func() bool {
		return status.Registered.Load() && status.Slot.Load() == 3
	})
}
