package membership

import "testing"

func TestReachProbesAGatewayBeforeHeartbeatingToIt(t *testing.T) {
	r := NewReach()
	step := func(what string, address string, want Contact) {
		t.Helper()
		if got := r.Contact(address); got != want {
			t.Fatalf("%s: Contact(%s) = %d, want %d", what, address, got, want)
		}
	}
	step("never seen", "a", ContactProbe)
	step("probe in flight", "a", ContactWait)
	step("another gateway", "b", ContactProbe)
	r.Probed("a", false)
	step("after a refused probe", "a", ContactProbe)
	r.Probed("a", true)
	step("after an accepted probe", "a", ContactSend)
	step("still up", "a", ContactSend)
	step("b's probe still in flight", "b", ContactWait)
	r.Lost("a")
	step("after its connection broke", "a", ContactProbe)
	r.Probed("a", true)
	r.Lost("c") // never seen: nothing to forget
	step("up again", "a", ContactSend)
	r.Probed("b", true)
	step("b up", "b", ContactSend)
}
