package membership

import "github.com/tolerex/tolerex/messages"

// Homing decides which gateway a member heartbeats to: the gateway that
// leads the Raft group, which only it keeps members' liveness. The member
// starts with the first gateway of its --join list; a gateway that does
// not lead answers with a redirect naming the one that does (or, while it
// knows of none, the member tries the next gateway of its list); a gateway
// that stops answering, or whose connection broke, is left for the next
// one. It is a pure state machine, fed by the member supervisor.
//
// It also names the actor to heartbeat to. Gateways before 2026-12-04 take
// heartbeats only at messages.LegacyMembershipActor (later ones at both
// names), so a gateway that has no actor under the name tried (the member
// gets a dead letter back) is tried under the other name next: a member
// may be upgraded before the gateways. Each gateway is tried under the
// current name first.
type Homing struct {
	gateways   []string // the --join list
	current    string
	next       int  // index in gateways of the one to try after current
	unanswered int  // heartbeats sent to current since its last answer
	legacy     bool // heartbeat current at messages.LegacyMembershipActor
	triedName  bool // a heartbeat went to current under Actor() since that name was chosen
}

// maxUnanswered is how many heartbeats in a row a gateway may leave
// unanswered before the member tries another.
const maxUnanswered = 2

// NewHoming starts with the first gateway of the --join list.
func NewHoming(gateways []string) *Homing {
	h := &Homing{gateways: gateways}
	h.rotate()
	return h
}

// Target is the gateway to heartbeat to now.
func (h *Homing) Target() string { return h.current }

// Actor is the name of the actor on Target to heartbeat to.
func (h *Homing) Actor() string {
	if h.legacy {
		return messages.LegacyMembershipActor
	}
	return messages.MembershipActor
}

// NoActor records that Target has no actor named Actor (a heartbeat came
// back as a dead letter from it): the next heartbeat goes to the other
// name. A dead letter names no actor, so only the first one after a
// heartbeat under the current name counts: the second of two heartbeats in
// flight to a missing name must not switch back to it.
func (h *Homing) NoActor() {
	if !h.triedName {
		return
	}
	h.legacy, h.triedName = !h.legacy, false
}

// Sent records a heartbeat sent to the target; after maxUnanswered
// unanswered ones the member moves on.
func (h *Homing) Sent() {
	h.triedName = true
	h.unanswered++
	if h.unanswered > maxUnanswered {
		h.rotate()
	}
}

// Answered records an answer: redirect says the answering gateway does not
// lead, leader who does ("" if it knows of none). It reports whether to
// heartbeat at once: only to a gateway named as the leader. A gateway that
// knows of none sends the member on to the next of the list at the next
// heartbeat; at once, while no gateway knows a leader (an election), every
// answer would bring another heartbeat, and each tick start one more such
// chain: thousands of heartbeats a second.
func (h *Homing) Answered(redirect bool, leader string) (now bool) {
	switch {
	case !redirect:
		h.unanswered = 0
	case leader != "" && leader != h.current:
		h.moveTo(leader)
		return true
	case leader == "":
		h.rotate()
	}
	return false
}

// Lost records that the connection to a gateway broke.
func (h *Homing) Lost(address string) {
	if address == h.current {
		h.rotate()
	}
}

// rotate moves to the next gateway of the list other than the current
// one (which a redirect may have made the next of the list).
func (h *Homing) rotate() {
	if len(h.gateways) == 0 {
		return
	}
	address := h.gateways[h.next%len(h.gateways)]
	h.next = (h.next + 1) % len(h.gateways)
	if address == h.current && len(h.gateways) > 1 {
		address = h.gateways[h.next]
		h.next = (h.next + 1) % len(h.gateways)
	}
	h.moveTo(address)
}

// moveTo makes address the target, tried under the current name first.
func (h *Homing) moveTo(address string) {
	h.current, h.unanswered, h.legacy, h.triedName = address, 0, false, false
}
