package membership

import (
	"testing"

	"github.com/tolerex/tolerex/messages"
)

func TestHomingFollowsRedirectsAndSkipsSilentGateways(t *testing.T) {
	h := NewHoming([]string{"a", "b", "c"})
	if h.Target() != "a" {
		t.Fatalf("starts at %q, want a", h.Target())
	}
	// a does not lead and knows c does.
	h.Sent()
	h.Answered(true, "c")
	if h.Target() != "c" {
		t.Fatalf("after a redirect to c: %q", h.Target())
	}
	// c answers for a while, then dies: after maxUnanswered silent
	// heartbeats the member moves on.
	for range 5 {
		h.Sent()
		h.Answered(false, "")
	}
	for i := 0; i < maxUnanswered; i++ {
		h.Sent()
		if h.Target() != "c" {
			t.Fatalf("left c after %d unanswered heartbeats", i+1)
		}
	}
	h.Sent()
	if h.Target() == "c" {
		t.Fatalf("still on c after %d unanswered heartbeats", maxUnanswered+1)
	}
	// A gateway that knows no leader sends the member on through the list.
	before := h.Target()
	h.Answered(true, "")
	if h.Target() == before {
		t.Fatalf("stayed on %q after a redirect without a leader", before)
	}
	// A broken connection to the target moves on at once; to another does
	// nothing.
	cur := h.Target()
	h.Lost("elsewhere")
	if h.Target() != cur {
		t.Fatal("a lost connection to another gateway moved the member")
	}
	h.Lost(cur)
	if h.Target() == cur {
		t.Fatal("a lost connection to the target did not move the member")
	}
	// A leader not in the --join list (added later) is followed too.
	h.Answered(true, "d")
	if h.Target() != "d" {
		t.Fatalf("not following a redirect to d: %q", h.Target())
	}
}

func TestHomingVisitsEveryGateway(t *testing.T) {
	h := NewHoming([]string{"a", "b", "c"})
	seen := map[string]bool{}
	for range 3 {
		seen[h.Target()] = true
		h.Answered(true, "")
	}
	if len(seen) != 3 {
		t.Fatalf("visited %v, want a, b and c", seen)
	}
}

// TestHomingHeartbeatsAtOnceOnlyToANamedLeader: a redirect naming the
// leader is followed at once; one from a gateway that knows no leader
// waits for the next tick, or, while no gateway knows one (an election),
// the answers would chain into a storm of heartbeats.
func TestHomingHeartbeatsAtOnceOnlyToANamedLeader(t *testing.T) {
	h := NewHoming([]string{"a", "b", "c"})
	for i := range 6 {
		h.Sent()
		if h.Answered(true, "") {
			t.Fatalf("answer %d without a leader asked for a heartbeat at once", i+1)
		}
	}
	h.Sent()
	if !h.Answered(true, "b") || h.Target() != "b" {
		t.Fatalf("a redirect to the leader b: target %q, or not at once", h.Target())
	}
	h.Sent()
	if h.Answered(false, "") {
		t.Fatal("the leader's own answer asked for another heartbeat at once")
	}
	h.Sent()
	if h.Answered(true, "b") {
		t.Fatal("a redirect to the gateway already targeted asked for a heartbeat at once")
	}
}

// TestHomingTriesTheOtherNameAfterADeadLetter: a gateway older than the
// member takes heartbeats only at the legacy name; each gateway is tried
// under the current name first.
func TestHomingTriesTheOtherNameAfterADeadLetter(t *testing.T) {
	h := NewHoming([]string{"a", "b"})
	if h.Actor() != messages.MembershipActor {
		t.Fatalf("starts with %q, want %q", h.Actor(), messages.MembershipActor)
	}
	h.Sent()
	h.NoActor()
	if h.Actor() != messages.LegacyMembershipActor {
		t.Fatalf("after a dead letter from a: %q, want the legacy name", h.Actor())
	}
	// Answered under the legacy name: it stays.
	h.Sent()
	h.Answered(false, "")
	if h.Actor() != messages.LegacyMembershipActor || h.Target() != "a" {
		t.Fatalf("after an answer: %q on %q, want the legacy name on a", h.Actor(), h.Target())
	}
	// Another gateway is tried under the current name first.
	h.Sent()
	h.Answered(true, "b")
	if h.Actor() != messages.MembershipActor {
		t.Fatalf("on b after a redirect: %q, want %q", h.Actor(), messages.MembershipActor)
	}
	// No actor under either name (a gateway whose membership actor
	// stopped): the names alternate, and silence moves the member on,
	// to a gateway tried under the current name first.
	h.Sent()
	h.NoActor()
	h.Sent()
	h.NoActor()
	if h.Actor() != messages.MembershipActor {
		t.Fatalf("after dead letters under both names: %q, want %q again", h.Actor(), messages.MembershipActor)
	}
	h.NoActor()
	h.Sent()
	if h.unanswered != 0 || h.Actor() != messages.MembershipActor {
		t.Fatalf("after %d heartbeats that got only dead letters: %d unanswered, %q; want a new start under %q",
			maxUnanswered+1, h.unanswered, h.Actor(), messages.MembershipActor)
	}
}

// TestHomingSwitchesNameOncePerNameTried: two heartbeats in flight to a
// gateway without the current name come back as two dead letters; the
// member must switch to the other name once, not twice (back to the
// missing one).
func TestHomingSwitchesNameOncePerNameTried(t *testing.T) {
	h := NewHoming([]string{"a", "b"})
	h.Sent()
	h.Sent()
	h.NoActor()
	h.NoActor()
	if h.Actor() != messages.LegacyMembershipActor {
		t.Fatalf("after two dead letters for heartbeats under %q: %q, want the legacy name",
			messages.MembershipActor, h.Actor())
	}
	// A dead letter before any heartbeat under the new name changes nothing.
	h.Answered(false, "") // (so that the next heartbeat does not move the member on)
	h.NoActor()
	if h.Actor() != messages.LegacyMembershipActor {
		t.Fatalf("a dead letter with no heartbeat under the legacy name yet switched to %q", h.Actor())
	}
	// One under the legacy name that comes back dead switches again.
	h.Sent()
	h.NoActor()
	if h.Actor() != messages.MembershipActor {
		t.Fatalf("after a dead letter under the legacy name: %q, want %q", h.Actor(), messages.MembershipActor)
	}
}

// TestHomingLeavesALostLeaderForAnotherGateway: the member followed a
// redirect to b, the next of its list; when b's connection breaks, it
// must try another gateway, not b again.
func TestHomingLeavesALostLeaderForAnotherGateway(t *testing.T) {
	h := NewHoming([]string{"a", "b", "c"})
	h.Sent()
	h.Answered(true, "b")
	h.Lost("b")
	if h.Target() == "b" {
		t.Fatal("after b's connection broke the member tries b again")
	}
	// With one gateway in the list it stays there.
	one := NewHoming([]string{"a"})
	one.Lost("a")
	if one.Target() != "a" {
		t.Fatalf("a one-gateway list moved to %q", one.Target())
	}
}
