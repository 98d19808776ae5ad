package member

import "testing"

func TestHomingFollowsRedirectsAndSkipsSilentGateways(t *testing.T) {
	h := newHoming([]string{"a", "b", "c"})
	if h.target() != "a" {
		t.Fatalf("starts at %q, want a", h.target())
	}
	// a does not lead and knows c does.
	h.sent()
	h.answered(true, "c")
	if h.target() != "c" {
		t.Fatalf("after a redirect to c: %q", h.target())
	}
	// c answers for a while, then dies: after maxUnanswered silent
	// heartbeats the member moves on.
	for range 5 {
		h.sent()
		h.answered(false, "")
	}
	for i := 0; i < maxUnanswered; i++ {
		h.sent()
		if h.target() != "c" {
			t.Fatalf("left c after %d unanswered heartbeats", i+1)
		}
	}
	h.sent()
	if h.target() == "c" {
		t.Fatalf("still on c after %d unanswered heartbeats", maxUnanswered+1)
	}
	// A gateway that knows no leader sends the member on through the list.
	before := h.target()
	h.answered(true, "")
	if h.target() == before {
		t.Fatalf("stayed on %q after a redirect without a leader", before)
	}
	// A broken connection to the target moves on at once; to another does
	// nothing.
	cur := h.target()
	h.lost("elsewhere")
	if h.target() != cur {
		t.Fatal("a lost connection to another gateway moved the member")
	}
	h.lost(cur)
	if h.target() == cur {
		t.Fatal("a lost connection to the target did not move the member")
	}
	// A leader not in the --join list (added later) is followed too.
	h.answered(true, "d")
	if h.target() != "d" {
		t.Fatalf("not following a redirect to d: %q", h.target())
	}
}

func TestHomingVisitsEveryGateway(t *testing.T) {
	h := newHoming([]string{"a", "b", "c"})
	seen := map[string]bool{}
	for range 3 {
		seen[h.target()] = true
		h.answered(true, "")
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
	h := newHoming([]string{"a", "b", "c"})
	for i := range 6 {
		h.sent()
		if h.answered(true, "") {
			t.Fatalf("answer %d without a leader asked for a heartbeat at once", i+1)
		}
	}
	h.sent()
	if !h.answered(true, "b") || h.target() != "b" {
		t.Fatalf("a redirect to the leader b: target %q, or not at once", h.target())
	}
	h.sent()
	if h.answered(false, "") {
		t.Fatal("the leader's own answer asked for another heartbeat at once")
	}
	h.sent()
	if h.answered(true, "b") {
		t.Fatal("a redirect to the gateway already targeted asked for a heartbeat at once")
	}
}
