package membership

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// These tests run the membership actor in a real actor system. What
// stands for the leader actor only records what it is sent.

// spawnWithLeader spawns a membership actor under its name and the legacy
// one, with a recorder named messages.LeaderActor as its leader; the
// recorder's channel gets what the membership actor sends the leader.
func spawnWithLeader(t *testing.T, system *actor.ActorSystem) (*actor.PID, chan any) {
	t.Helper()
	toLeader := make(chan any, 16)
	leaderPID, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case actor.AutoReceiveMessage, actor.SystemMessage:
		default:
			toLeader <- ctx.Message()
		}
	}), messages.LeaderActor)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(New(Config{}, leaderPID, zerolog.Nop())), messages.MembershipActor)
	if err != nil {
		t.Fatal(err)
	}
	if err := AnswerAlso(system, messages.LegacyMembershipActor, pid); err != nil {
		t.Fatal(err)
	}
	return pid, toLeader
}

func heartbeatAt(t *testing.T, system *actor.ActorSystem, name string) any {
	t.Helper()
	res, err := tryHeartbeatAt(system, name)
	if err != nil {
		t.Fatalf("heartbeat to %s: %v", name, err)
	}
	return res
}

func tryHeartbeatAt(system *actor.ActorSystem, name string) (any, error) {
	return system.Root.RequestFuture(actor.NewPID(system.Address(), name), &messages.MemberHeartbeat{
		MemberId: "m1", NodeAddress: "127.0.0.1:7101", StorageReady: true,
	}, 5*time.Second).Result()
}

func TestLegacyNameTakesHeartbeats(t *testing.T) {
	system := actortest.QuietSystem(t)
	pid, toLeader := spawnWithLeader(t, system)

	// Not told it leads: both names redirect the member.
	for _, name := range []string{messages.MembershipActor, messages.LegacyMembershipActor} {
		ack, ok := heartbeatAt(t, system, name).(*messages.HeartbeatAck)
		if !ok || !ack.GetRedirect() {
			t.Fatalf("heartbeat to %s on a gateway that does not lead: %v, want a redirect", name, ack)
		}
	}

	// Leading: a registered member heartbeating to the old name is
	// acknowledged with its slot, and the leader hears of it.
	system.Root.Send(pid, &PresumeAlive{Members: []meta.Member{{ID: "m1", Slot: 3, NodeAddress: "127.0.0.1:7101"}}})
	system.Root.Send(pid, &Leadership{Active: true})
	ack, ok := heartbeatAt(t, system, messages.LegacyMembershipActor).(*messages.HeartbeatAck)
	if !ok || ack.GetRedirect() || ack.GetSlot() != 3 {
		t.Fatalf("heartbeat to the legacy name on the leader: %v, want an ack with slot 3", ack)
	}
	select {
	case msg := <-toLeader:
		if u, ok := msg.(*MemberUpdate); !ok || u.Slot != 3 || !u.Alive {
			t.Fatalf("the leader was sent %#v, want the update of slot 3, alive", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the leader heard nothing of the heartbeat")
	}

	if err := AnswerAlso(system, messages.LegacyMembershipActor, pid); err == nil {
		t.Error("a second alias under a taken name was accepted")
	}

	// Stopped for good, the actor answers under neither name: a request
	// gets a dead letter at once rather than waiting in a queue.
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if res, err := tryHeartbeatAt(system, messages.LegacyMembershipActor); !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("heartbeat to the legacy name of a stopped actor: %#v, %v; want a dead letter", res, err)
	}
}

func TestRestartedMembershipAsksTheLeader(t *testing.T) {
	system := actortest.QuietSystem(t)
	pid, toLeader := spawnWithLeader(t, system)
	system.Root.Send(pid, &Leadership{Active: false})
	system.Root.Send(pid, &InjectPanic{}) // the default supervisor restarts it
	select {
	case msg := <-toLeader:
		if _, ok := msg.(*Resync); !ok {
			t.Fatalf("the leader was sent %#v, want a Resync", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the restarted membership actor did not ask the leader where leadership stands")
	}
	// The first start asks nothing: the leader tells it from its start.
	select {
	case msg := <-toLeader:
		t.Fatalf("the leader was sent %#v too", msg)
	default:
	}
}
