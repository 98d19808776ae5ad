package membership

import (
	"errors"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/meta"
)

var (
	testConfig = Config{HeartbeatTimeout: 2 * time.Second, Quarantine: time.Second}
	t0         = time.Unix(1_000_000, 0)
)

func beat(id, node string, ready bool) Heartbeat {
	return Heartbeat{MemberID: id, NodeAddress: node, AdminAddress: "admin-" + node, StorageReady: ready, Messages: 7, Bytes: 700, Wall: t0}
}

func mustBeat(t *testing.T, l *Liveness, hb Heartbeat, at time.Time) HeartbeatOutcome {
	t.Helper()
	out, err := l.Heartbeat(hb, at)
	if err != nil {
		t.Fatalf("heartbeat of %q at +%v: %v", hb.MemberID, at.Sub(t0), err)
	}
	return out
}

// register takes a member through its first heartbeat and its
// registration at slot, as the leader would.
func register(t *testing.T, l *Liveness, id, node string, slot uint32, at time.Time) {
	t.Helper()
	if out := mustBeat(t, l, beat(id, node, true), at); out.Register == nil {
		t.Fatalf("first heartbeat of %q asked for no registration", id)
	}
	if r := l.Registered(id, slot, at); r == nil || r.Update == nil || !r.Update.Alive {
		t.Fatalf("registration of %q: %+v, want it up", id, r)
	}
}

func TestAnUnknownMemberIsRegisteredOnceThenAgainIfUnanswered(t *testing.T) {
	l := NewLiveness(testConfig)
	out := mustBeat(t, l, beat("m1", "n1:1", true), t0)
	if out.Register == nil || *out.Register != (RegisterMember{MemberID: "m1", NodeAddress: "n1:1", AdminAddress: "admin-n1:1"}) {
		t.Fatalf("first heartbeat: register %+v", out.Register)
	}
	if out.Ack || out.Update != nil {
		t.Fatalf("an unregistered member was acknowledged or reported: %+v", out)
	}
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(time.Second)); out.Register != nil {
		t.Fatal("registration asked again while the first may still be on its way")
	}
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(2500*time.Millisecond)); out.Register == nil {
		t.Fatal("registration not asked again after it went unanswered")
	}
}

func TestRegistrationBringsAMemberUpOnlyIfItWasHeardRecently(t *testing.T) {
	l := NewLiveness(testConfig)
	mustBeat(t, l, beat("m1", "n1:1", false), t0)
	r := l.Registered("m1", 4, t0.Add(time.Second))
	if r == nil || r.NodeAddress != "n1:1" || r.Update == nil {
		t.Fatalf("registration right after a heartbeat: %+v", r)
	}
	if u := r.Update; u.Slot != 4 || !u.Alive || u.Ready || u.Messages != 7 || u.Bytes != 700 {
		t.Fatalf("update %+v, want slot 4, alive, not ready (its storage said so), its load", u)
	}

	mustBeat(t, l, beat("m2", "n2:1", true), t0)
	r = l.Registered("m2", 5, t0.Add(3*time.Second))
	if r == nil || r.Update != nil {
		t.Fatalf("registration 3 s after the only heartbeat: %+v, want known but not up", r)
	}
	if l.Registered("m3", 6, t0) != nil {
		t.Fatal("a member never heard from was reported as known")
	}
}

func TestARegisteredMemberIsAcknowledgedAndReported(t *testing.T) {
	l := NewLiveness(testConfig)
	register(t, l, "m1", "n1:1", 3, t0)
	out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(250*time.Millisecond))
	if !out.Ack || out.Slot != 3 || out.Register != nil || out.Update == nil || !out.Update.Alive || !out.Update.Ready {
		t.Fatalf("heartbeat of a registered member: %+v", out)
	}
	if out.CameUp {
		t.Fatal("a member already up came up again")
	}
	notReady := mustBeat(t, l, beat("m1", "n1:1", false), t0.Add(500*time.Millisecond))
	if notReady.Update == nil || notReady.Update.Ready || notReady.CameUp {
		t.Fatalf("heartbeat with storage not ready: %+v", notReady)
	}
	if again := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(750*time.Millisecond)); !again.CameUp {
		t.Fatal("a member whose storage became ready again did not come up")
	}
}

func TestASilentMemberGoesDownOnce(t *testing.T) {
	l := NewLiveness(testConfig)
	register(t, l, "m1", "n1:1", 1, t0)
	register(t, l, "m2", "n2:1", 2, t0)
	mustBeat(t, l, beat("m2", "n2:1", true), t0.Add(1500*time.Millisecond))
	if down := l.Expire(t0.Add(2 * time.Second)); len(down) != 0 {
		t.Fatalf("down at the timeout, not after it: %+v", down)
	}
	down := l.Expire(t0.Add(2100 * time.Millisecond))
	if len(down) != 1 || down[0].MemberID != "m1" || down[0].Slot != 1 || down[0].Update == nil || down[0].Update.Alive ||
		down[0].SilentFor != 2100*time.Millisecond {
		t.Fatalf("expired %+v, want m1 alone, down, silent 2.1 s", down)
	}
	if again := l.Expire(t0.Add(3 * time.Second)); len(again) != 0 {
		t.Fatalf("m1 reported down twice: %+v", again)
	}
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(4*time.Second)); !out.CameUp || !out.Update.Alive {
		t.Fatalf("a heartbeat after the silence: %+v, want m1 back up", out)
	}
}

func TestALostConnectionQuarantinesTheMember(t *testing.T) {
	l := NewLiveness(testConfig)
	register(t, l, "m1", "n1:1", 1, t0)
	if d := l.ConnectionLost("elsewhere:1", t0); d != nil {
		t.Fatalf("a lost connection to no member took one down: %+v", d)
	}
	d := l.ConnectionLost("n1:1", t0.Add(100*time.Millisecond))
	if d == nil || d.MemberID != "m1" || d.NodeAddress != "n1:1" || d.Update == nil || d.Update.Alive {
		t.Fatalf("lost connection: %+v, want m1 down", d)
	}
	if again := l.ConnectionLost("n1:1", t0.Add(200*time.Millisecond)); again != nil {
		t.Fatal("a member already down went down again")
	}
	// A heartbeat sent just before the crash arrives afterwards: ignored.
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(900*time.Millisecond)); out != (HeartbeatOutcome{}) {
		t.Fatalf("heartbeat in quarantine: %+v, want it ignored", out)
	}
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(1200*time.Millisecond)); !out.CameUp || !out.Ack {
		t.Fatalf("heartbeat after the quarantine: %+v, want m1 up", out)
	}
}

func TestNewAddressesAreRegisteredBeforeTheMemberIsUsed(t *testing.T) {
	l := NewLiveness(testConfig)
	register(t, l, "m1", "n1:1", 1, t0)
	out := mustBeat(t, l, beat("m1", "n1:2", true), t0.Add(time.Second))
	if out.Register == nil || out.Register.NodeAddress != "n1:2" || out.Ack || out.Update != nil {
		t.Fatalf("heartbeat from a new address: %+v, want a registration and nothing else", out)
	}
	// The old address is no longer the member's.
	if d := l.ConnectionLost("n1:1", t0.Add(time.Second)); d != nil {
		t.Fatalf("the old address's connection took the member down: %+v", d)
	}
	if d := l.ConnectionLost("n1:2", t0.Add(time.Second)); d == nil || d.Update != nil {
		t.Fatalf("lost connection of an unregistered member: %+v, want it down and nothing for the leader", d)
	}
}

func TestATermPresumesTheRegisteredMembersAlive(t *testing.T) {
	l := NewLiveness(testConfig)
	mustBeat(t, l, beat("old", "n9:1", true), t0) // heard in an earlier term
	l.Presume([]meta.Member{{ID: "m1", Slot: 1, NodeAddress: "n1:1", AdminAddress: "admin-n1:1"}, {ID: "m2", Slot: 2, NodeAddress: "n2:1", AdminAddress: "admin-n2:1"}}, t0, t0)
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(time.Second)); !out.Ack || out.Slot != 1 || out.CameUp {
		t.Fatalf("first heartbeat of a presumed member: %+v, want acknowledged, already up", out)
	}
	if out := mustBeat(t, l, beat("old", "n9:1", true), t0.Add(time.Second)); out.Register == nil {
		t.Fatal("a member known only from an earlier term was not registered anew")
	}
	down := l.Expire(t0.Add(2500 * time.Millisecond))
	if len(down) != 1 || down[0].MemberID != "m2" {
		t.Fatalf("expired %+v, want m2, which never heartbeated", down)
	}
	l.Forget()
	if out := mustBeat(t, l, beat("m1", "n1:1", true), t0.Add(3*time.Second)); out.Register == nil || out.Ack {
		t.Fatalf("after Forget: %+v, want the member unknown", out)
	}
}

func TestAnIncompleteHeartbeatIsRefused(t *testing.T) {
	l := NewLiveness(testConfig)
	for _, hb := range []Heartbeat{{NodeAddress: "n1:1"}, {MemberID: "m1"}} {
		if _, err := l.Heartbeat(hb, t0); !errors.Is(err, ErrIncompleteHeartbeat) {
			t.Fatalf("heartbeat %+v: error %v, want ErrIncompleteHeartbeat", hb, err)
		}
	}
}
