package membership

import (
	"errors"
	"testing"
)

func TestReachProbesAGatewayBeforeHeartbeatingToIt(t *testing.T) {
	r := NewReach()
	step := func(what string, address string, want Contact) {
		t.Helper()
		if got := r.Contact(address); got != want {
			t.Fatalf("%s: Contact(%s) = %d, want %d", what, address, got, want)
		}
	}
	unreachable := func(what, want string) {
		t.Helper()
		if got := r.Unreachable(); got != want {
			t.Fatalf("%s: Unreachable() = %q, want %q", what, got, want)
		}
	}
	step("never seen", "a", ContactProbe)
	step("probe in flight", "a", ContactWait)
	step("another gateway", "b", ContactProbe)
	refused := errors.New("connection refused")
	if !r.Probed("a", refused) {
		t.Fatal("first failed probe: no change reported")
	}
	unreachable("after a refused probe", "gateway a: connection refused")
	step("after a refused probe", "a", ContactProbe)
	if r.Probed("a", refused) {
		t.Fatal("the same reason again: a change reported")
	}
	step("after the same refusal", "a", ContactProbe)
	r.Probed("a", errors.New("tls: unknown certificate authority"))
	unreachable("another reason", "gateway a: tls: unknown certificate authority")
	step("after a failed handshake", "a", ContactProbe)
	if !r.Probed("a", nil) {
		t.Fatal("reached after failing: no change reported")
	}
	unreachable("after an accepted probe", "")
	step("after an accepted probe", "a", ContactSend)
	step("still up", "a", ContactSend)
	step("b's probe still in flight", "b", ContactWait)
	r.Lost("a")
	step("after its connection broke", "a", ContactProbe)
	r.Probed("a", nil)
	r.Lost("c") // never seen: nothing to forget
	step("up again", "a", ContactSend)
	r.Probed("b", nil)
	step("b up", "b", ContactSend)
}
