package leader

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/actors/stallclock"
	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// The coordinator's decisions, without actors: the tests give the leader
// inputs (client requests, selections, acknowledgements, applied entries,
// the passing of time on an injected clock) and look at what it queued in
// its outbox.

// coord is a leader that leads term 1 with active members m0..m<n-1>.
type coord struct {
	t       *testing.T
	l       *leader
	state   *meta.State
	now     time.Time
	session *actor.PID
	// sent are the store request ids seen in the outbox; resent collects
	// the store requests queued again under an id already seen
	// (Config.StoreResendAfter), which stores leaves out.
	sent   map[uint64]bool
	resent []resentStore
}

// resentStore is a store request queued once more, to slot.
type resentStore struct {
	slot uint32
	req  *messages.StoreRequest
}

func newCoord(t *testing.T, tolerance, members int) *coord {
	t.Helper()
	s := meta.New()
	for i := range members {
		if _, err := s.Apply(&messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{
			MemberId: fmt.Sprintf("m%d", i), NodeAddress: fmt.Sprintf("member-%d:7000", i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(epochEntry(1)); err != nil {
		t.Fatal(err)
	}
	c := &coord{t: t, state: s, now: time.Unix(1000, 0), session: actor.NewPID("gw1:7000", "gateway/session/1"), sent: map[uint64]bool{}}
	cfg := Config{Tolerance: tolerance, Balancer: "least_loaded", View: consensus.NewStateViewOf(s),
		Consensus: actor.NewPID("gw1:7000", messages.ConsensusActor)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := &leader{cfg: cfg, log: zerolog.Nop(), wall: func() time.Time { return c.now }}
	l.state = stateReader{view: cfg.View}
	l.out = newOutbox()
	l.clock = stallclock.New(maxClockStep, c.now)
	l.router = newRouter(77, cfg.RequestTimeout)
	l.answersProbes = make(map[string]bool)
	l.selector = actor.NewPID("gw1:7000", messages.SelectorActor)
	l.membership = actor.NewPID("gw1:7000", messages.MembershipActor)
	l.lead = consensus.LeaderChanged{Lead: 1, LeadAddress: "gw1:7000", Term: 1, Local: true}
	l.termState = newTermState(0, 0)
	l.leadershipReady(&consensus.LeadershipReady{Term: 1})
	c.l = l
	// The epoch entry applies: the leader serves.
	c.apply(c.takeProposals()...)
	if !l.active {
		t.Fatal("the leader did not activate after its epoch applied")
	}
	c.drain()
	return c
}

// advance moves the clock and ticks, as the timer would every 50 ms.
func (c *coord) advance(d time.Duration) {
	for step := tickInterval; d > 0; d -= step {
		c.now = c.now.Add(min(step, d))
		c.l.tick()
	}
}

// drain empties the outbox, as a flush would.
func (c *coord) drain() { c.l.out = newOutbox() }

// takeProposals returns and clears the queued proposals.
func (c *coord) takeProposals() []*messages.LogEntry {
	var out []*messages.LogEntry
	for _, e := range c.l.out.direct {
		if p, ok := e.msg.(*consensus.Propose); ok {
			out = append(out, p.Entries...)
		}
	}
	out = append(out, c.l.out.proposals...)
	c.l.out.proposals = nil
	return out
}

// apply applies entries to the state and tells the leader, as consensus
// would.
func (c *coord) apply(entries ...*messages.LogEntry) {
	c.t.Helper()
	var applied []consensus.AppliedEntry
	for _, e := range entries {
		eff, err := c.state.Apply(e)
		applied = append(applied, consensus.AppliedEntry{Entry: e, Effect: eff, Err: err})
	}
	c.l.applied(&consensus.Applied{Entries: applied})
}

// selects returns and clears the queued selections.
func (c *coord) selects() []*messages.SelectReplicas {
	var out []*messages.SelectReplicas
	if c.l.out.selects != nil {
		out = c.l.out.selects.GetRequests()
		c.l.out.selects = nil
	}
	return out
}

// stores returns and clears the store requests queued per member slot,
// those sent for the first time; the others go to c.resent.
func (c *coord) stores() map[uint32][]*messages.StoreRequest {
	out := map[uint32][]*messages.StoreRequest{}
	for slot, b := range c.l.out.stores {
		for _, req := range b.GetRequests() {
			if c.sent[req.GetRequestId()] {
				c.resent = append(c.resent, resentStore{slot: slot, req: req})
				continue
			}
			c.sent[req.GetRequestId()] = true
			out[slot] = append(out[slot], req)
		}
		delete(c.l.out.stores, slot)
	}
	return out
}

// takeResent returns and clears the store requests queued once more.
func (c *coord) takeResent() []resentStore {
	c.stores()
	out := c.resent
	c.resent = nil
	return out
}

// replies returns and clears the replies queued for the session.
func (c *coord) replies() []*messages.ClientReply {
	var out []*messages.ClientReply
	for key, b := range c.l.out.replies {
		out = append(out, b.batch.GetReplies()...)
		delete(c.l.out.replies, key)
	}
	return out
}

func (c *coord) set(request uint64, id int64, value string) {
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: request, Op: messages.Op_OP_SET, Id: id, Payload: []byte(value)}})
}

func TestCoordinatorWritesThroughSelectionStoresAndTheLog(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.set(5, 7, "hello")
	sel := c.selects()
	if len(sel) != 1 || sel[0].GetCount() != 2 || len(sel[0].GetExclude()) != 0 {
		t.Fatalf("selections %v, want one for 2 members", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2, 0}, Live: 3})
	st := c.stores()
	if len(st[0]) != 1 || len(st[2]) != 1 || len(st[1]) != 0 {
		t.Fatalf("stores %v, want one each to slots 0 and 2", st)
	}
	version := st[0][0].GetVersion()
	if version>>meta.EpochShift != 2 {
		t.Fatalf("version %x minted outside the term's epoch 2", version)
	}
	for slot, reqs := range st {
		c.l.storeAck(slot, true, &messages.StoreAck{RequestId: reqs[0].GetRequestId(), Id: 7, Version: version, Size: 5})
	}
	props := c.takeProposals()
	if len(props) != 1 || props[0].GetPut() == nil {
		t.Fatalf("proposals %v, want the put", props)
	}
	put := props[0].GetPut()
	if got := slices.Sorted(slices.Values(put.GetReplicas())); !slices.Equal(got, []uint32{0, 2}) || put.GetVersion() != version {
		t.Fatalf("put %v, want version %x on [0 2]", put, version)
	}
	if id := props[0].GetRequest(); id.GetOrigin() != 77 || id.GetSeq() != 1 {
		t.Fatalf("request id %v, want 77/1", id)
	}
	if r := c.replies(); len(r) != 0 {
		t.Fatalf("answered %v before the entry applied", r)
	}
	c.apply(props...)
	r := c.replies()
	if len(r) != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_OK || r[0].GetRequestId() != 5 {
		t.Fatalf("replies %v, want OK to request 5", r)
	}
}

// Both members of a write time out at once, with the clock: their
// replacements are selected one after the other, each excluding every
// member chosen before (issue 8). When the selector has nobody new, a
// member that timed out while it still looked live is asked once more
// (its answer may have been lost), with the copy marked as sent again;
// the write fails definitely only when that attempt times out too.
func TestCoordinatorConcurrentStoreTimeouts(t *testing.T) {
	c, first := bothStoresTimeOut(t)
	if len(first[0]) != 1 || !first[0][0].GetAgain() {
		t.Fatalf("stores %v, want member 0 asked again, marked as sent again", first)
	}
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: c.firstStores[2], Id: 9, Version: first[0][0].GetVersion(), Size: 1})
	// 0 is silent again: with nobody new, member 1 (which timed out too) is
	// asked again; then nobody is left to ask, since each member is asked
	// again once.
	for _, want := range []map[uint32]int{{1: 1}, {}} {
		c.advance(c.l.cfg.StoreTimeout + 100*time.Millisecond)
		sel := c.selects()
		if len(sel) != 1 {
			t.Fatalf("selections %v, want one more replacement", sel)
		}
		c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Live: 3})
		st := c.stores()
		if len(st) != len(want) || len(st[1]) != want[1] || (want[1] == 1 && !st[1][0].GetAgain()) {
			t.Fatalf("stores %v, want %v sent again", st, want)
		}
	}
	r := c.replies()
	if len(r) != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_ERROR || !strings.HasPrefix(r[0].GetError(), "could not store") {
		t.Fatalf("replies %v, want a definite 'could not store'", r)
	}
	if len(c.takeProposals()) != 0 {
		t.Fatal("a write that failed proposed an entry")
	}
}

// The answer a member sends to a copy's second attempt completes the write;
// a late answer to the first attempt does not make the leader prune the
// copy the write names.
func TestCoordinatorCopyAskedAgainCompletesTheWrite(t *testing.T) {
	c, st := bothStoresTimeOut(t)
	again := st[0][0]
	// Slot 2's copy (sent as the first replacement) and the late answer to
	// slot 0's first attempt arrive, then the second attempt's answer.
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: c.firstStores[2], Id: 9, Version: again.GetVersion(), Size: 1})
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: c.firstStores[0], Id: 9, Version: again.GetVersion(), Size: 1})
	if p := c.prunes(); len(p) != 0 {
		t.Fatalf("prunes %v after the late answer to the first attempt; want none", p)
	}
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: again.GetRequestId(), Id: 9, Version: again.GetVersion(), Size: 1})
	props := c.takeProposals()
	if len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{0, 2}) {
		t.Fatalf("proposals %v, want the put on [0 2]", props)
	}
	c.apply(props...)
	if r := c.replies(); len(r) != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_OK {
		t.Fatalf("replies %v, want OK", r)
	}
	if p := c.prunes(); len(p) != 0 {
		t.Fatalf("prunes %v, want none", p)
	}
}

// A copy a live member has not answered after StoreResendAfter is sent to
// it once more, under the same request id and marked as possibly stored:
// its answer may have been lost. Whichever answer comes first completes
// the write long before the store timeout; the other is dropped, without
// pruning the copy the write names.
func TestCoordinatorResendsALateCopyOnce(t *testing.T) {
	c, first := slotOneAnswered(t)
	c.advance(c.l.cfg.StoreResendAfter - 100*time.Millisecond)
	if r := c.takeResent(); len(r) != 0 {
		t.Fatalf("resent %v before StoreResendAfter", r)
	}
	c.advance(150 * time.Millisecond)
	r := c.takeResent()
	if len(r) != 1 || r[0].slot != 0 || r[0].req.GetRequestId() != first.GetRequestId() || !r[0].req.GetAgain() ||
		r[0].req.GetVersion() != first.GetVersion() || string(r[0].req.GetPayload()) != "x" {
		t.Fatalf("resent %v, want the copy of request %d to slot 0 once more, marked again", r, first.GetRequestId())
	}
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v: a late member was replaced, want it asked again first", sel)
	}
	// The answer to the second attempt, then the first's, late.
	ack := &messages.StoreAck{RequestId: first.GetRequestId(), Id: 9, Version: first.GetVersion(), Size: 1}
	c.l.storeAck(0, true, ack)
	props := c.takeProposals()
	if len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{0, 1}) {
		t.Fatalf("proposals %v, want the put on [0 1]", props)
	}
	c.l.storeAck(0, true, ack)
	if p := c.prunes(); len(p) != 0 {
		t.Fatalf("prunes %v after the second answer to a resent copy; want none", p)
	}
	c.apply(props...)
	if r := c.replies(); len(r) != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_OK {
		t.Fatalf("replies %v, want OK", r)
	}
	c.l.storeAck(0, true, ack) // later still: the index names slot 0
	c.advance(c.l.cfg.StoreTimeout)
	if r, sel, p := c.takeResent(), c.selects(), c.prunes(); len(r) != 0 || len(sel) != 0 || len(p) != 0 {
		t.Fatalf("after the write: resent %v, selections %v, prunes %v; want none", r, sel, p)
	}
}

// A resent copy that still goes unanswered times out as any other: it is
// resent only once, its member is replaced, and a late answer to it is
// then a stray copy, pruned.
func TestCoordinatorResentCopyStillUnansweredIsReplaced(t *testing.T) {
	c, first := slotOneAnswered(t)
	c.advance(c.l.cfg.StoreTimeout + 100*time.Millisecond)
	if r := c.takeResent(); len(r) != 1 || r[0].slot != 0 {
		t.Fatalf("resent %v, want slot 0's copy once", r)
	}
	sel := c.selects()
	if len(sel) != 1 || !slices.Equal(slices.Sorted(slices.Values(sel[0].GetExclude())), []uint32{0, 1}) {
		t.Fatalf("selections %v, want a replacement excluding [0 1]", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
	st := c.stores()
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: first.GetRequestId(), Id: 9, Version: first.GetVersion(), Size: 1})
	if got := c.prunes()[0]; len(got) != 1 || got[0].GetVersion() != first.GetVersion() {
		t.Fatalf("prunes to slot 0: %v, want the stray copy pruned", got)
	}
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: st[2][0].GetRequestId(), Id: 9, Version: first.GetVersion(), Size: 1})
	props := c.takeProposals()
	if len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{1, 2}) {
		t.Fatalf("proposals %v, want the put on [1 2]", props)
	}
}

// A large copy is resent later: its wait grows with the bytes in flight
// to its member, as its timeout does. With StoreResendAfter negative,
// nothing is resent.
func TestCoordinatorResendWaitsForQueuedBytesAndCanBeOff(t *testing.T) {
	c := newCoord(t, 1, 1)
	c.storeOnSlotZero(strings.Repeat("x", int(DefaultMemberRate/2))) // half a second at MemberRate
	c.advance(c.l.cfg.StoreResendAfter + 300*time.Millisecond)
	if r := c.takeResent(); len(r) != 0 {
		t.Fatalf("resent %v: a large copy resent as soon as a small one", r)
	}
	c.advance(300 * time.Millisecond)
	if r := c.takeResent(); len(r) != 1 {
		t.Fatalf("resent %v, want the large copy resent after StoreResendAfter plus its bytes' time", r)
	}

	c = newCoord(t, 1, 1)
	c.l.cfg.StoreResendAfter = -1
	c.storeOnSlotZero("x")
	c.advance(c.l.cfg.StoreTimeout - 100*time.Millisecond)
	if r := c.takeResent(); len(r) != 0 {
		t.Fatalf("resent %v with StoreResendAfter off", r)
	}
}

// A copy late after StoreHedgeAfter is stored on one more member too,
// once per SET; the first copies stored are the put's, whichever they
// are, and a copy landing after them is pruned.
func TestCoordinatorHedgesALateCopyOnce(t *testing.T) {
	for _, hedgeFirst := range []bool{true, false} {
		c := newCoord(t, 2, 3)
		late, version := c.lateCopyOnSlotZero()
		c.advance(c.l.cfg.StoreHedgeAfter - 100*time.Millisecond)
		if sel := c.selects(); len(sel) != 0 {
			t.Fatalf("selections %v before StoreHedgeAfter", sel)
		}
		c.advance(150 * time.Millisecond)
		sel := c.selects()
		if len(sel) != 1 || sel[0].GetCount() != 1 || !slices.Equal(slices.Sorted(slices.Values(sel[0].GetExclude())), []uint32{0, 1}) {
			t.Fatalf("selections %v after StoreHedgeAfter, want one member excluding [0 1]", sel)
		}
		c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
		st := c.stores()
		if len(st) != 1 || len(st[2]) != 1 || st[2][0].GetAgain() || st[2][0].GetVersion() != version {
			t.Fatalf("stores %v, want the copy to slot 2, a first attempt", st)
		}
		extra := &messages.StoreAck{RequestId: st[2][0].GetRequestId(), Id: 9, Version: version, Size: 1}
		first := &messages.StoreAck{RequestId: late.GetRequestId(), Id: 9, Version: version, Size: 1}
		winner, loser, want := uint32(2), uint32(0), []uint32{1, 2}
		if !hedgeFirst {
			winner, loser, want = 0, 2, []uint32{0, 1}
		}
		acks := map[uint32]*messages.StoreAck{0: first, 2: extra}
		c.l.storeAck(winner, true, acks[winner])
		props := c.takeProposals()
		if len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), want) {
			t.Fatalf("proposals %v, want the put on %v", props, want)
		}
		c.l.storeAck(loser, true, acks[loser])
		if got := c.prunedSlots(version); !slices.Equal(got, []uint32{loser}) {
			t.Fatalf("pruned on %v, want the copy landing last pruned on [%d]", got, loser)
		}
		c.apply(props...)
		if r := c.replies(); len(r) != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_OK {
			t.Fatalf("replies %v, want OK", r)
		}
		c.advance(c.l.cfg.StoreTimeout)
		if r, sel := c.takeResent(), c.selects(); len(r) != 0 || len(sel) != 0 {
			t.Fatalf("after the write: resent %v, selections %v; want none", r, sel)
		}
	}

	// Both copies late: one more member, once; the copies go on waiting
	// (and are resent) until one of them lands.
	c := newCoord(t, 2, 3)
	c.set(1, 9, "x")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	st := c.stores()
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	if sel = c.selects(); len(sel) != 1 || sel[0].GetCount() != 1 {
		t.Fatalf("selections %v, want one for one member", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
	extra := c.stores()
	c.advance(c.l.cfg.StoreResendAfter - 2*tickInterval) // the first copies' resends are due, not the extra's
	if sel = c.selects(); len(sel) != 0 {
		t.Fatalf("a second hedge: selections %v", sel)
	}
	if r := c.takeResent(); len(r) != 2 {
		t.Fatalf("resent %v, want the first two copies resent", r)
	}
	version := st[0][0].GetVersion()
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: extra[2][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	c.l.storeAck(1, true, &messages.StoreAck{RequestId: st[1][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	if props := c.takeProposals(); len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{1, 2}) {
		t.Fatalf("proposals %v, want the put on [1 2]", props)
	}
}

// A member stopped past its heartbeat timeout answers the copies queued
// to it as soon as it runs again, before the leader hears it is up: a
// copy the write completed without is pruned on it all the same.
func TestCoordinatorStrayCopyIsPrunedOnAMemberNotSeenLive(t *testing.T) {
	c := newCoord(t, 2, 3)
	late, version := c.lateCopyOnSlotZero()
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
	st := c.stores()
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: st[2][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	c.apply(c.takeProposals()...)
	c.l.memberUpdate(&membership.MemberUpdate{Slot: 0, Alive: false, Ready: true})
	if c.l.slot(0).usable() {
		t.Fatal("member 0 still usable after it was reported down")
	}
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: late.GetRequestId(), Id: 9, Version: version, Size: 1})
	if got := c.prunedSlots(version); !slices.Equal(got, []uint32{0}) {
		t.Fatalf("pruned on %v, want the stray copy pruned on member 0, which has just answered", got)
	}
}

// A member whose copy is hedged is late: the selector chooses it last
// until it answers, two of its heartbeats are reported (its process
// runs), or it is found down.
func TestCoordinatorLateMemberIsChosenLast(t *testing.T) {
	all := []uint32{0, 1, 2}
	c := newCoord(t, 2, 3)
	c.takeLiveSets()
	late, version := c.lateCopyOnSlotZero()
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	c.wantLiveSet("after the hedge", all, []uint32{0})
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
	c.stores()
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: late.GetRequestId(), Id: 9, Version: version, Size: 1})
	c.wantLiveSet("after the late member answered", all, nil)

	// Late, and its copy times out: still late (a stopped member's copies
	// time out as it is found down); late until its second heartbeat.
	c = newCoord(t, 2, 3)
	c.lateCopyOnSlotZero()
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	c.wantLiveSet("after the hedge", all, []uint32{0})
	c.advance(c.l.cfg.StoreTimeout)
	beat := &membership.MemberUpdate{Slot: 0, Alive: true, Ready: true}
	c.l.memberUpdate(beat)
	if sets := c.takeLiveSets(); len(sets) != 0 || !c.l.slot(0).late {
		t.Fatalf("after the timeout and one heartbeat: live sets %v, late %v; want it still late", sets, c.l.slot(0).late)
	}
	c.l.memberUpdate(beat)
	c.wantLiveSet("after the second heartbeat", all, nil)

	// Late, then found down: no longer late, and not late when up again.
	c = newCoord(t, 2, 3)
	c.lateCopyOnSlotZero()
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	c.wantLiveSet("after the hedge", all, []uint32{0})
	c.l.memberUpdate(&membership.MemberUpdate{Slot: 0, Alive: false, Ready: true})
	c.wantLiveSet("after the member was found down", []uint32{1, 2}, nil)
	c.l.memberUpdate(beat)
	c.wantLiveSet("after the member was up again", all, nil)
}

// takeLiveSets returns and removes the live sets queued for the selector.
func (c *coord) takeLiveSets() []*messages.SelectorLiveSet {
	var sets []*messages.SelectorLiveSet
	kept := c.l.out.direct[:0]
	for _, e := range c.l.out.direct {
		if ls, ok := e.msg.(*messages.SelectorLiveSet); ok {
			sets = append(sets, ls)
			continue
		}
		kept = append(kept, e)
	}
	c.l.out.direct = kept
	return sets
}

// wantLiveSet checks the last live set queued for the selector.
func (c *coord) wantLiveSet(when string, live, late []uint32) {
	c.t.Helper()
	sets := c.takeLiveSets()
	if len(sets) == 0 {
		c.t.Fatalf("%s: no live set sent to the selector", when)
	}
	last := sets[len(sets)-1]
	if !slices.Equal(last.GetLive(), live) || !slices.Equal(last.GetLate(), late) {
		c.t.Fatalf("%s: live set %v, want live %v, late %v", when, last, live, late)
	}
}

// A member that goes on answering other copies is busy, not stopped: its
// late copy is not hedged while it answers, and is once it has been quiet
// for StoreHedgeAfter.
func TestCoordinatorStoreHedgeWaitsForTheMemberToGoQuiet(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.cfg.StoreResendAfter = -1 // the hedge alone
	c.lateCopyOnSlotZero()
	for i := range 6 { // member 0 answers another SET's copy every 100 ms
		c.advance(100 * time.Millisecond)
		id := int64(100 + i)
		c.set(uint64(10+i), id, "y")
		sel := c.selects()
		if len(sel) != 1 || sel[0].GetCount() != 2 {
			t.Fatalf("at %d00 ms: selections %v, want only the new SET's: member 0 answers, so no hedge", i+1, sel)
		}
		c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
		for slot, reqs := range c.stores() {
			c.l.storeAck(slot, true, &messages.StoreAck{RequestId: reqs[0].GetRequestId(), Id: id, Version: reqs[0].GetVersion(), Size: 1})
		}
	}
	c.advance(c.l.cfg.StoreHedgeAfter - tickInterval)
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v before member 0 was quiet for StoreHedgeAfter", sel)
	}
	c.advance(2 * tickInterval)
	sel := c.selects()
	if len(sel) != 1 || sel[0].GetCount() != 1 || !slices.Equal(slices.Sorted(slices.Values(sel[0].GetExclude())), []uint32{0, 1}) {
		t.Fatalf("selections %v once member 0 was quiet, want the hedge: one member excluding [0 1]", sel)
	}
}

// A member that has had work only since a copy was sent is quiet from
// then, and is given the time everything in flight to it takes at
// MemberRate: a small copy queued before a large one is hedged only when
// the member has answered neither in that time.
func TestCoordinatorStoreHedgeCountsQuietFromTheFirstCopy(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.cfg.StoreResendAfter = -1 // the hedge alone
	c.lateCopyOnSlotZero()
	c.set(2, 10, strings.Repeat("b", int(DefaultMemberRate/2))) // half a second at MemberRate
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	c.stores()
	c.advance(c.l.cfg.StoreHedgeAfter + 400*time.Millisecond)
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v: hedged before the member had time for the bytes sent to it", sel)
	}
	c.advance(200 * time.Millisecond)
	sel = c.selects()
	if len(sel) != 2 || !slices.Contains(sel[0].GetExclude(), 0) || !slices.Contains(sel[1].GetExclude(), 0) {
		t.Fatalf("selections %v, want both SETs' copies on member 0 hedged once it was quiet that long", sel)
	}
}

// With no member the SET has not used, the hedge finds nobody and the
// late copy is awaited (and resent) as before.
func TestCoordinatorStoreHedgeWithNoOtherMemberWaits(t *testing.T) {
	c := newCoord(t, 2, 2)
	c.set(1, 9, "x")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 2})
	st := c.stores()
	version := st[0][0].GetVersion()
	c.l.storeAck(1, true, &messages.StoreAck{RequestId: st[1][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	c.advance(c.l.cfg.StoreHedgeAfter + tickInterval)
	sel = c.selects()
	if len(sel) != 1 {
		t.Fatalf("selections %v, want the hedge's", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Live: 2})
	if st, r := c.stores(), c.replies(); len(st) != 0 || len(r) != 0 {
		t.Fatalf("stores %v, replies %v with nobody found; want none", st, r)
	}
	c.advance(c.l.cfg.StoreResendAfter)
	if r := c.takeResent(); len(r) != 1 || r[0].slot != 0 {
		t.Fatalf("resent %v, want slot 0's copy", r)
	}
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: st[0][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	if props := c.takeProposals(); len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{0, 1}) {
		t.Fatalf("proposals %v, want the put on [0 1]", props)
	}
}

// The hedge waits, as the timeout does, for the bytes queued to the
// member at MemberRate; negative StoreHedgeAfter turns it off.
func TestCoordinatorStoreHedgeWaitsForQueuedBytesAndCanBeOff(t *testing.T) {
	c := newCoord(t, 1, 2)
	c.set(1, 9, strings.Repeat("x", int(DefaultMemberRate/2))) // half a second at MemberRate
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0}, Live: 2})
	c.stores()
	c.advance(c.l.cfg.StoreHedgeAfter + 300*time.Millisecond)
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v: a large copy hedged as soon as a small one", sel)
	}
	c.advance(300 * time.Millisecond)
	if sel := c.selects(); len(sel) != 1 {
		t.Fatalf("selections %v, want the large copy hedged after StoreHedgeAfter plus its bytes' time", sel)
	}

	c = newCoord(t, 2, 3)
	c.l.cfg.StoreHedgeAfter = -1
	c.lateCopyOnSlotZero()
	c.advance(c.l.cfg.StoreTimeout - tickInterval)
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v before the store timeout with the hedge off", sel)
	}
}

// lateCopyOnSlotZero starts a SET of id 9 (tolerance 2) on members 0 and
// 1, has member 1 answer, and returns the store request sent to member 0,
// unanswered, and the SET's version.
func (c *coord) lateCopyOnSlotZero() (*messages.StoreRequest, uint64) {
	c.set(1, 9, "x")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	st := c.stores()
	version := st[0][0].GetVersion()
	c.l.storeAck(1, true, &messages.StoreAck{RequestId: st[1][0].GetRequestId(), Id: 9, Version: version, Size: 1})
	return st[0][0], version
}

// slotOneAnswered starts a SET of id 9 (tolerance 2, 3 live members) on
// members 0 and 1, has member 1 answer, and returns the store request
// sent to member 0, still unanswered.
func slotOneAnswered(t *testing.T) (*coord, *messages.StoreRequest) {
	t.Helper()
	c := newCoord(t, 2, 3)
	c.l.cfg.StoreHedgeAfter = -1 // the resend and the timeouts alone
	first, _ := c.lateCopyOnSlotZero()
	return c, first
}

// storeOnSlotZero starts a SET of id 9 with value and places its one copy
// on member 0, unanswered.
func (c *coord) storeOnSlotZero(value string) {
	c.set(1, 9, value)
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0}, Live: 1})
	c.stores()
}

// bothStoresTimeOut starts a SET of id 9 (tolerance 2, 3 live members) on
// members 0 and 1, lets both time out, gives the first replacement member
// 2 and the second nobody, and returns the stores queued then. The first
// attempts' request ids are in c.firstStores.
func bothStoresTimeOut(t *testing.T) (*coordWithFirst, map[uint32][]*messages.StoreRequest) {
	t.Helper()
	c := &coordWithFirst{coord: newCoord(t, 2, 3), firstStores: map[uint32]uint64{}}
	c.l.cfg.StoreHedgeAfter = -1 // the timeouts alone
	c.set(1, 9, "x")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	for slot, reqs := range c.stores() {
		c.firstStores[slot] = reqs[0].GetRequestId()
	}
	c.advance(c.l.cfg.StoreTimeout + 100*time.Millisecond) // neither answers
	sel = c.selects()
	if len(sel) != 1 || sel[0].GetCount() != 1 || !slices.Equal(slices.Sorted(slices.Values(sel[0].GetExclude())), []uint32{0, 1}) {
		t.Fatalf("after both timed out: selections %v, want one for 1 member excluding [0 1]", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{2}, Live: 3})
	st := c.stores()
	if len(st[2]) != 1 || st[2][0].GetAgain() {
		t.Fatalf("stores %v, want one to slot 2, a first attempt", st)
	}
	c.firstStores[2] = st[2][0].GetRequestId()
	sel = c.selects()
	if len(sel) != 1 || !slices.Equal(slices.Sorted(slices.Values(sel[0].GetExclude())), []uint32{0, 1, 2}) {
		t.Fatalf("second replacement %v, want one excluding [0 1 2]", sel)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Live: 3})
	if r := c.replies(); len(r) != 0 {
		t.Fatalf("replies %v while members that may have lost an answer are live; want none yet", r)
	}
	return c, c.stores()
}

type coordWithFirst struct {
	*coord
	firstStores map[uint32]uint64
}

// A pause of the gateway longer than the store timeout does not time the
// members out: the clock counts it as one step.
func TestCoordinatorPauseDoesNotTimeOutMembers(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.set(1, 9, "x")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	c.stores()
	c.now = c.now.Add(3 * time.Second) // SIGSTOP for 3 s, then one tick
	c.l.tick()
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("a pause of the gateway timed out its members: %v", sel)
	}
}

// A GET waits for a read barrier, then reads the replica with the fewest
// requests in flight, and falls back to the next when one is missing.
func TestCoordinatorReadsAfterABarrierWithFallback(t *testing.T) {
	c := newCoord(t, 2, 3)
	put := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: 4, Version: 2<<meta.EpochShift | 1, Replicas: []uint32{1, 2}, Size: 1}}}
	c.apply(put)
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: 8, Op: messages.Op_OP_GET, Id: 4}})
	var barrier *consensus.ReadBarrier
	for _, e := range c.l.out.direct {
		if b, ok := e.msg.(*consensus.ReadBarrier); ok {
			barrier = b
		}
	}
	if barrier == nil || len(c.l.out.reads) != 0 {
		t.Fatalf("a GET read before its barrier (reads %v)", c.l.out.reads)
	}
	c.l.barrierDone(barrier.ID)
	var first uint32
	var req *messages.ReadRequest
	for slot, b := range c.l.out.reads {
		first, req = slot, b.GetRequests()[0]
		delete(c.l.out.reads, slot)
	}
	if req == nil || (first != 1 && first != 2) || req.GetVersion() != put.GetPut().GetVersion() {
		t.Fatalf("read %v on slot %d, want the indexed version on 1 or 2", req, first)
	}
	c.l.readReply(0, false, &messages.ReadReply{RequestId: req.GetRequestId(), Status: messages.ReadStatus_READ_MISSING})
	var second uint32
	for slot, b := range c.l.out.reads {
		second, req = slot, b.GetRequests()[0]
	}
	if second == first || (second != 1 && second != 2) {
		t.Fatalf("fallback read on slot %d after slot %d missed", second, first)
	}
	c.l.readReply(0, false, &messages.ReadReply{RequestId: req.GetRequestId(), Status: messages.ReadStatus_READ_OK, Payload: []byte("v")})
	r := c.replies()
	if len(r) != 1 || string(r[0].GetPayload()) != "v" || r[0].GetRequestId() != 8 {
		t.Fatalf("replies %v, want the value to request 8", r)
	}
}

// takeReads returns and clears the queued reads, by slot.
func (c *coord) takeReads() map[uint32][]*messages.ReadRequest {
	out := map[uint32][]*messages.ReadRequest{}
	for slot, b := range c.l.out.reads {
		out[slot] = b.GetRequests()
		delete(c.l.out.reads, slot)
	}
	return out
}

// get sends a GET and releases its read barrier.
func (c *coord) get(request uint64, id int64) {
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: request, Op: messages.Op_OP_GET, Id: id}})
	for _, e := range c.l.out.direct {
		if b, ok := e.msg.(*consensus.ReadBarrier); ok {
			c.l.barrierDone(b.ID)
		}
	}
	c.l.out.direct = nil
}

// Every replica of a GET timing out (their answers lost, as protoactor
// loses a member's messages while its connection to a restarted gateway is
// replaced) makes the leader ask them again, up to maxReadRounds more
// rounds, before it answers that no replica could serve the id.
func TestCoordinatorReadAsksAgainAfterTimeouts(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.cfg.ReadHedgeAfter = -1 // the timeouts alone
	put := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: 4, Version: 2<<meta.EpochShift | 1, Replicas: []uint32{1, 2}, Size: 1}}}
	c.apply(put)

	// Answered in the second round.
	c.get(8, 4)
	asked := 0
	for range 2 { // both replicas time out, one after the other
		if reads := c.takeReads(); len(reads) != 1 {
			t.Fatalf("reads %v, want one replica asked at a time", reads)
		}
		asked++
		c.advance(c.l.cfg.ReadTimeout + tickInterval)
	}
	reads := c.takeReads()
	if len(reads) != 1 || len(c.replies()) != 0 {
		t.Fatalf("after %d timeouts: reads %v, want the first replica asked again and no answer yet", asked, reads)
	}
	for _, reqs := range reads {
		c.l.readReply(0, false, &messages.ReadReply{RequestId: reqs[0].GetRequestId(), Status: messages.ReadStatus_READ_OK, Payload: []byte("v")})
	}
	if r := c.replies(); len(r) != 1 || string(r[0].GetPayload()) != "v" {
		t.Fatalf("replies %v, want the value", r)
	}

	// Never answered: an error after 1+maxReadRounds rounds of both.
	c.get(9, 4)
	timeouts := 0
	var r []*messages.ClientReply
	for ; len(r) == 0 && timeouts < 20; r = c.replies() {
		if len(c.takeReads()) == 0 {
			t.Fatal("no read in flight and no answer")
		}
		c.advance(c.l.cfg.ReadTimeout + tickInterval)
		timeouts++
	}
	if want := 2 * (1 + maxReadRounds); timeouts != want || len(r) != 1 || !strings.HasPrefix(r[0].GetError(), "no replica could serve id 4") {
		t.Errorf("answered %v after %d timeouts, want no replica could serve, after %d", r, timeouts, want)
	}
}

// A read of a large message counts its bytes in flight to the member, as
// a copy does: a GET of 8 MiB may take the read timeout plus 8 MiB at
// MemberRate before the next replica is asked, and a GET of a small
// message queued behind it gets that long too, since it waits for it.
func TestCoordinatorReadLimitGrowsWithBytesInFlight(t *testing.T) {
	c := newCoord(t, 2, 2)
	c.l.cfg.ReadHedgeAfter = -1 // the timeout alone
	const big = 8 << 20
	for id, size := range map[int64]uint32{4: big, 5: 1} {
		c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
			Id: id, Version: 2<<meta.EpochShift | uint64(id), Replicas: []uint32{0, 1}, Size: size}}})
	}
	extra := time.Duration(float64(big) / float64(c.l.cfg.MemberRate) * float64(time.Second))
	if extra < 4*tickInterval {
		t.Fatalf("8 MiB at %d bytes a second adds only %s: the test needs more", c.l.cfg.MemberRate, extra)
	}
	c.get(1, 4)
	first := c.takeReads()
	if len(first) != 1 {
		t.Fatalf("reads %v, want one replica asked", first)
	}
	var slot uint32
	for s := range first {
		slot = s
	}
	// Make the small message's read go to the same member, behind the
	// large one: the other member is busier now.
	c.l.members[1-slot].inflight += 10
	c.get(2, 5)
	if reads := c.takeReads(); len(reads[slot]) != 1 {
		t.Fatalf("reads %v, want the small read sent to member %d too", reads, slot)
	}
	c.l.members[1-slot].inflight -= 10

	c.advance(c.l.cfg.ReadTimeout + tickInterval)
	if reads := c.takeReads(); len(reads) != 0 {
		t.Fatalf("after the read timeout alone: reads %v, want none: the member has %d bytes to send back", reads, big)
	}
	c.advance(extra)
	reads := c.takeReads()
	if len(reads[1-slot]) != 2 {
		t.Fatalf("after the read timeout plus %s: reads %v, want both GETs asked of the other replica", extra, reads)
	}
}

// putOnTwo indexes id on slots 1 and 2 with a message of size bytes.
func (c *coord) putOnTwo(id int64, size uint32) {
	c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
		Id: id, Version: 2<<meta.EpochShift | uint64(id), Replicas: []uint32{1, 2}, Size: size}}})
}

// oneRead returns the one read queued, and its slot.
func (c *coord) oneRead(when string) (uint32, *messages.ReadRequest) {
	c.t.Helper()
	reads := c.takeReads()
	if len(reads) != 1 {
		c.t.Fatalf("%s: reads %v, want one replica asked", when, reads)
	}
	for slot, reqs := range reads {
		if len(reqs) == 1 {
			return slot, reqs[0]
		}
	}
	c.t.Fatalf("%s: reads %v, want one request", when, reads)
	return 0, nil
}

// readOK answers a read with a value.
func (c *coord) readOK(req *messages.ReadRequest, value string) {
	c.l.readReply(0, false, &messages.ReadReply{RequestId: req.GetRequestId(), Id: req.GetId(), Version: req.GetVersion(),
		Status: messages.ReadStatus_READ_OK, Payload: []byte(value)})
}

// A read a member has not answered after ReadHedgeAfter is asked of the
// next replica too, once: the member may be stopped, or its answer lost.
// The first good answer is the GET's, whichever replica gives it; the
// other answer, or the other's timeout, changes nothing.
func TestCoordinatorHedgesALateReadOnce(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.putOnTwo(4, 1)
	for _, hedgeAnswers := range []bool{true, false} {
		c.get(8, 4)
		first, req := c.oneRead("the GET")
		c.advance(c.l.cfg.ReadHedgeAfter - 100*time.Millisecond)
		if reads := c.takeReads(); len(reads) != 0 {
			t.Fatalf("reads %v before ReadHedgeAfter", reads)
		}
		c.advance(150 * time.Millisecond)
		second, hedge := c.oneRead("after ReadHedgeAfter")
		if second == first || (second != 1 && second != 2) || hedge.GetVersion() != req.GetVersion() || hedge.GetRequestId() == req.GetRequestId() {
			t.Fatalf("hedge %v on slot %d after %v on slot %d, want the same version asked of the other replica", hedge, second, req, first)
		}
		winner, loser := hedge, req
		if !hedgeAnswers {
			winner, loser = req, hedge
		}
		c.readOK(winner, "v")
		if r := c.replies(); len(r) != 1 || string(r[0].GetPayload()) != "v" || r[0].GetRequestId() != 8 {
			t.Fatalf("replies %v, want the value to request 8", r)
		}
		if hedgeAnswers {
			c.readOK(loser, "v") // late
		} // else it times out below
		c.advance(c.l.cfg.ReadTimeout + time.Second)
		if r, reads := c.replies(), c.takeReads(); len(r) != 0 || len(reads) != 0 {
			t.Fatalf("after the GET was answered: replies %v, reads %v; want none", r, reads)
		}
	}
	// Neither answers: one hedge only, then the timeouts as before.
	c.get(9, 4)
	c.oneRead("the GET")
	c.advance(c.l.cfg.ReadHedgeAfter + tickInterval)
	c.oneRead("the hedge")
	c.advance(c.l.cfg.ReadTimeout - c.l.cfg.ReadHedgeAfter)
	if reads, r := c.takeReads(), c.replies(); len(reads) != 0 || len(r) != 0 {
		t.Fatalf("before the hedge timed out: reads %v, replies %v; want none", reads, r)
	}
	// With three replicas, still one hedge: the third is not asked while
	// the first two may answer.
	c = newCoord(t, 3, 3)
	c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
		Id: 5, Version: 2<<meta.EpochShift | 5, Replicas: []uint32{0, 1, 2}, Size: 1}}})
	c.get(10, 5)
	c.oneRead("the GET")
	c.advance(c.l.cfg.ReadHedgeAfter + tickInterval)
	c.oneRead("the hedge")
	c.advance(c.l.cfg.ReadHedgeAfter + tickInterval)
	if reads := c.takeReads(); len(reads) != 0 {
		t.Fatalf("a second hedge: reads %v", reads)
	}
}

// A hedge's replica that cannot serve the read does not fail the GET
// while the first replica asked may still answer.
func TestCoordinatorHedgedReadWaitsForTheFirstReplica(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.putOnTwo(4, 1)
	c.get(8, 4)
	_, req := c.oneRead("the GET")
	c.advance(c.l.cfg.ReadHedgeAfter + tickInterval)
	_, hedge := c.oneRead("the hedge")
	c.l.readReply(0, false, &messages.ReadReply{RequestId: hedge.GetRequestId(), Id: 4, Version: hedge.GetVersion(), Status: messages.ReadStatus_READ_MISSING})
	if r, reads := c.replies(), c.takeReads(); len(r) != 0 || len(reads) != 0 {
		t.Fatalf("after the hedge's replica missed: replies %v, reads %v; want none, the first replica may still answer", r, reads)
	}
	c.readOK(req, "v")
	if r := c.replies(); len(r) != 1 || string(r[0].GetPayload()) != "v" {
		t.Fatalf("replies %v, want the first replica's value", r)
	}
}

// The hedge waits, as the timeout does, for the bytes queued to the
// member at MemberRate; negative ReadHedgeAfter turns it off.
func TestCoordinatorReadHedgeWaitsForQueuedBytesAndCanBeOff(t *testing.T) {
	c := newCoord(t, 2, 3)
	half := uint32(c.l.cfg.MemberRate / 2) // half a second's bytes
	c.putOnTwo(4, half)
	c.get(8, 4)
	c.oneRead("the GET")
	c.advance(c.l.cfg.ReadHedgeAfter + 300*time.Millisecond)
	if reads := c.takeReads(); len(reads) != 0 {
		t.Fatalf("reads %v at ReadHedgeAfter+0.3s, want none before half a second's bytes more", reads)
	}
	c.advance(300 * time.Millisecond)
	c.oneRead("after ReadHedgeAfter plus the bytes' time")

	c = newCoord(t, 2, 3)
	c.l.cfg.ReadHedgeAfter = -1
	c.putOnTwo(4, 1)
	c.get(8, 4)
	c.oneRead("the GET")
	c.advance(c.l.cfg.ReadTimeout - tickInterval)
	if reads := c.takeReads(); len(reads) != 0 {
		t.Fatalf("reads %v before the read timeout with the hedge off", reads)
	}
	c.advance(2 * tickInterval)
	c.oneRead("after the read timeout")
}

// When the term ends, the requests the coordinator held go back to the
// router, to be sent to the next leader under the same id, and the
// coordinator's state is gone.
func TestCoordinatorTermEndGivesRequestsBack(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.set(1, 9, "x")
	if len(c.l.router.unsent()) != 0 {
		t.Fatal("the request was not handed to the coordinator")
	}
	c.l.leaderChanged(&consensus.LeaderChanged{Lead: 2, LeadAddress: "gw2:7000", Term: 2})
	if c.l.active || len(c.l.inProgress) != 0 {
		t.Fatal("the coordinator outlived its term")
	}
	// Sent on to the new leader at once, under the same number.
	fwd := c.l.out.forwards["gw2:7000/"+messages.LeaderActor]
	if fwd == nil || len(fwd.batch.GetRequests()) != 1 || fwd.batch.GetRequests()[0].GetSeq() != 1 || fwd.batch.GetOrigin() != 77 {
		t.Fatalf("forwarded %v, want request 77/1 to gw2", fwd)
	}
	// Its answer reaches the session with the session's own number.
	c.l.forwardReplies(&messages.ForwardReplyBatch{Replies: []*messages.ForwardedReply{{Seq: 1, Reply: &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK}}}})
	r := c.replies()
	if len(r) != 1 || r[0].GetRequestId() != 1 || r[0].GetCode() != messages.ReplyCode_REPLY_OK {
		t.Fatalf("replies %v, want OK to request 1", r)
	}
}

// A write proposed again (a gateway re-sent it after a failover) and
// found applied before answers with the first outcome and drops its own
// copies.
// A write sent again after a failover, whose first attempt applied
// before it arrived (committed by a leader that stepped down before it
// answered), is answered from the state machine at once: no new attempt,
// which could fail before its proposal and be answered with a definite
// error although the first attempt took effect (the fault suite found
// that: partitions, seed 95004). A DEL likewise gets what the first did.
func TestCoordinatorRepeatOfAnAppliedRequestIsAnsweredAtOnce(t *testing.T) {
	c := newCoord(t, 2, 3)
	first := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: 3, Version: 2<<meta.EpochShift | 1, Replicas: []uint32{0, 1}, Size: 1}},
		Request: &messages.RequestId{Origin: 5, Seq: 9}}
	del := &messages.LogEntry{Entry: &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: 4, Version: 2<<meta.EpochShift | 2}},
		Request: &messages.RequestId{Origin: 5, Seq: 10}}
	c.apply(first, del)
	c.drain()
	from := actor.NewPID("gw2:7000", messages.LeaderActor)
	c.l.forwarded(from, &messages.ForwardBatch{Origin: 5, Requests: []*messages.ForwardedRequest{
		{Seq: 9, Request: &messages.ClientRequest{Op: messages.Op_OP_SET, Id: 3, Payload: []byte("a")}},
		{Seq: 10, Request: &messages.ClientRequest{Op: messages.Op_OP_DEL, Id: 4}},
		// Not remembered, and sent after its window passed: unknown.
		{Seq: 11, Request: &messages.ClientRequest{Op: messages.Op_OP_SET, Id: 5, Payload: []byte("c")}, WindowEnd: c.state.RequestCount()}}})
	if sel, props := c.selects(), c.takeProposals(); len(sel) != 0 || len(props) != 0 {
		t.Fatalf("the repeats started again: selections %v, proposals %v", sel, props)
	}
	fr := c.l.out.forwardReplies[from.Address+"/"+from.Id]
	if fr == nil || len(fr.batch.GetReplies()) != 3 {
		t.Fatalf("answers to the repeats: %v, want three", fr)
	}
	want := map[uint64]messages.ReplyCode{9: messages.ReplyCode_REPLY_OK, 10: messages.ReplyCode_REPLY_NOT_FOUND, 11: messages.ReplyCode_REPLY_ERROR}
	for _, r := range fr.batch.GetReplies() {
		if r.GetReply().GetCode() != want[r.GetSeq()] {
			t.Errorf("answer to request %d: %v, want %v", r.GetSeq(), r.GetReply(), want[r.GetSeq()])
		}
		if r.GetSeq() == 11 && !strings.HasPrefix(r.GetReply().GetError(), "outcome unknown") {
			t.Errorf("answer to the late request: %v, want outcome unknown", r.GetReply())
		}
	}
	// The same id is free for the next write.
	c.set(1, 3, "b")
	if sel := c.selects(); len(sel) != 1 {
		t.Fatalf("a new SET of the id after the repeat: selections %v, want one", sel)
	}
}

// A repeat that arrives before its first attempt applies is started again;
// when both apply, the second changes nothing, its client hears OK once
// and its copies are pruned.
func TestCoordinatorDuplicateWriteAnswersOnce(t *testing.T) {
	c := newCoord(t, 2, 3)
	first := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: 3, Version: 2<<meta.EpochShift | 1, Replicas: []uint32{0, 1}, Size: 1}},
		Request: &messages.RequestId{Origin: 5, Seq: 9}}
	c.l.forwarded(actor.NewPID("gw2:7000", messages.LeaderActor), &messages.ForwardBatch{Origin: 5, Requests: []*messages.ForwardedRequest{
		{Seq: 9, Request: &messages.ClientRequest{Op: messages.Op_OP_SET, Id: 3, Payload: []byte("a")}}}})
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{1, 2}, Live: 3})
	for slot, reqs := range c.stores() {
		c.l.storeAck(slot, true, &messages.StoreAck{RequestId: reqs[0].GetRequestId(), Id: 3, Version: reqs[0].GetVersion(), Size: 1})
	}
	again := c.takeProposals()
	c.apply(first)
	c.apply(again...)
	fr := c.l.out.forwardReplies["gw2:7000/"+messages.LeaderActor]
	if fr == nil || len(fr.batch.GetReplies()) != 1 || fr.batch.GetReplies()[0].GetReply().GetCode() != messages.ReplyCode_REPLY_OK {
		t.Fatalf("answer to the repeat: %v, want OK", fr)
	}
	if v, _, _ := c.state.Lookup(3); v != first.GetPut().GetVersion() {
		t.Fatalf("the repeat took effect: version %x", v)
	}
	if pruned := c.prunedSlots(again[0].GetPut().GetVersion()); !slices.Equal(pruned, []uint32{1, 2}) {
		t.Fatalf("the repeat's copies pruned on %v, want [1 2]", pruned)
	}
}

// prunes returns the prune requests queued per member slot, in batches
// (pruneCopies) or on their own (pruneStray).
func (c *coord) prunes() map[uint32][]*messages.PruneRequest {
	c.t.Helper()
	out := map[uint32][]*messages.PruneRequest{}
	for slot, b := range c.l.out.prunes {
		out[slot] = append(out[slot], b.GetRequests()...)
	}
	for _, e := range c.l.out.direct {
		if b, ok := e.msg.(*messages.PruneBatch); ok {
			slot, known := c.l.slotOf(e.to)
			if !known {
				c.t.Fatalf("a prune sent to %v, which is no member", e.to)
			}
			out[slot] = append(out[slot], b.GetRequests()...)
		}
	}
	return out
}

// prunedSlots returns the slots queued a prune of version, sorted.
func (c *coord) prunedSlots(version uint64) []uint32 {
	var pruned []uint32
	for slot, reqs := range c.prunes() {
		for _, p := range reqs {
			if p.GetVersion() == version {
				pruned = append(pruned, slot)
			}
		}
	}
	slices.Sort(pruned)
	return pruned
}

// A write re-sent to the leader after more requests applied than the
// state machine remembers (its window_end passed while it travelled) is
// not applied: an earlier attempt may have been forgotten. Its client
// hears the outcome is unknown, its copies are pruned.
func TestCoordinatorTooLateWriteIsUnknown(t *testing.T) {
	c := newCoord(t, 2, 3)
	windowEnd := c.state.RequestCount() + 1
	from := actor.NewPID("gw2:7000", messages.LeaderActor)
	c.l.forwarded(from, &messages.ForwardBatch{Origin: 5, Requests: []*messages.ForwardedRequest{
		{Seq: 9, Request: &messages.ClientRequest{Op: messages.Op_OP_SET, Id: 3, Payload: []byte("a")}, WindowEnd: windowEnd}}})
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{1, 2}, Live: 3})
	for slot, reqs := range c.stores() {
		c.l.storeAck(slot, true, &messages.StoreAck{RequestId: reqs[0].GetRequestId(), Id: 3, Version: reqs[0].GetVersion(), Size: 1})
	}
	props := c.takeProposals()
	if len(props) != 1 || props[0].GetRequest().GetWindowEnd() != windowEnd {
		t.Fatalf("proposals %v, want the put bounded by window_end %d", props, windowEnd)
	}
	// Another gateway's request applies first and fills the window up to
	// window_end.
	c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: 99, Version: 2<<meta.EpochShift | 100}},
		Request: &messages.RequestId{Origin: 6, Seq: 1}})
	c.apply(props...)
	fr := c.l.out.forwardReplies[from.Address+"/"+from.Id]
	if fr == nil || len(fr.batch.GetReplies()) != 1 {
		t.Fatalf("answers to gw2: %v, want one", fr)
	}
	if r := fr.batch.GetReplies()[0].GetReply(); r.GetCode() != messages.ReplyCode_REPLY_ERROR || !strings.HasPrefix(r.GetError(), "outcome unknown") {
		t.Fatalf("answer %v, want outcome unknown", r)
	}
	if _, _, ok := c.state.Lookup(3); ok {
		t.Fatal("the late write took effect")
	}
	if pruned := c.prunedSlots(props[0].GetPut().GetVersion()); !slices.Equal(pruned, []uint32{1, 2}) {
		t.Fatalf("the late write's copies pruned on %v, want [1 2]", pruned)
	}
}

// A request taken from a session goes to the coordinator unbounded the
// first time; given back at the end of the term and sent to the next
// leader, it is bounded by the state machine's request count when it was
// taken plus the window.
func TestCoordinatorBoundsRequestsSentAgain(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: 99, Version: 2<<meta.EpochShift | 100}},
		Request: &messages.RequestId{Origin: 6, Seq: 1}})
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: 5, Op: messages.Op_OP_DEL, Id: 7}})
	first := c.takeProposals()
	if len(first) != 1 || first[0].GetDelete() == nil || first[0].GetRequest().GetWindowEnd() != 0 {
		t.Fatalf("first proposals %v, want the delete without window_end", first)
	}
	c.l.leaderChanged(&consensus.LeaderChanged{Lead: 2, LeadAddress: "gw2:7000", Term: 2})
	fwd := c.l.out.forwards["gw2:7000/"+messages.LeaderActor]
	if want := uint64(1 + meta.RequestWindow); fwd == nil || len(fwd.batch.GetRequests()) != 1 || fwd.batch.GetRequests()[0].GetWindowEnd() != want {
		t.Fatalf("forwarded %v, want the delete with window_end %d", fwd, want)
	}
}

// A restarted leader actor numbers its requests afresh, so an answer to
// its previous incarnation can carry the number of one of its own
// requests. Such an answer names another id or version (or comes from
// another member) and is not taken for the answer: the write waits for
// its own member's ack. A late ack of an earlier epoch's copy is not
// pruned either: an earlier incarnation may have proposed the entry that
// names it, not applied yet. (Issue: an acknowledged SET lost both copies
// after a leader crash under load, in TestLeaderCrashUnderLoad.)
func TestCoordinatorIgnoresAnswersToAnEarlierIncarnation(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.set(5, 7, "hello")
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 2}, Live: 3})
	st := c.stores()
	req0, req2 := st[0][0], st[2][0]
	oldVersion := uint64(1)<<meta.EpochShift | 40

	// From the right member, with the right number, for another write.
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: req0.GetRequestId(), Id: 99, Version: oldVersion, Size: 3})
	// With the right number and write, from another member.
	c.l.storeAck(1, true, &messages.StoreAck{RequestId: req2.GetRequestId(), Id: 7, Version: req2.GetVersion(), Size: 5})
	if props := c.takeProposals(); len(props) != 0 {
		t.Fatalf("proposed %v on answers to other requests", props)
	}
	if pruned := c.prunedSlots(oldVersion); len(pruned) != 0 {
		t.Fatalf("pruned the earlier epoch's copy on %v", pruned)
	}
	// The real acks complete the write; nothing of it is pruned.
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: req0.GetRequestId(), Id: 7, Version: req0.GetVersion(), Size: 5})
	c.l.storeAck(2, true, &messages.StoreAck{RequestId: req2.GetRequestId(), Id: 7, Version: req2.GetVersion(), Size: 5})
	props := c.takeProposals()
	if len(props) != 1 || !slices.Equal(slices.Sorted(slices.Values(props[0].GetPut().GetReplicas())), []uint32{0, 2}) {
		t.Fatalf("proposals %v, want the put on [0 2]", props)
	}
	if pruned := c.prunedSlots(req0.GetVersion()); slices.Contains(pruned, 0) || slices.Contains(pruned, 2) {
		t.Fatalf("pruned the write's own copies on %v", pruned) // slot 1 claimed a copy: it may drop it
	}

	// A late ack of this term's epoch for a copy nobody indexes is
	// garbage: pruned.
	late := uint64(2)<<meta.EpochShift | 1000
	c.l.storeAck(1, true, &messages.StoreAck{RequestId: 1 << 60, Id: 8, Version: late, Size: 1})
	if pruned := c.prunedSlots(late); !slices.Equal(pruned, []uint32{1}) {
		t.Fatalf("late copy of this epoch pruned on %v, want [1]", pruned)
	}

	// A read answer naming another id is not the answer either.
	c.apply(props...)
	c.get(9, 7)
	var slot uint32
	var rr *messages.ReadRequest
	for s, reqs := range c.takeReads() {
		slot, rr = s, reqs[0]
	}
	c.l.readReply(slot, true, &messages.ReadReply{RequestId: rr.GetRequestId(), Id: 99, Version: oldVersion, Status: messages.ReadStatus_READ_OK, Payload: []byte("other")})
	if r := c.replies(); len(r) != 1 || r[0].GetRequestId() != 5 {
		t.Fatalf("replies %v, want only the SET's OK", r)
	}
	c.l.readReply(slot, true, &messages.ReadReply{RequestId: rr.GetRequestId(), Id: 7, Version: rr.GetVersion(), Status: messages.ReadStatus_READ_OK, Payload: []byte("hello")})
	if r := c.replies(); len(r) != 1 || string(r[0].GetPayload()) != "hello" {
		t.Fatalf("replies %v, want hello", r)
	}
}

// A gateway whose consensus stops (a full disk, a stopped consensus
// actor) refuses what it holds: a write it never sent anywhere
// definitely, one it had sent and got back when the term ended with an
// unknown outcome, since it may be in the log. New requests are refused
// at once until consensus runs again; then they wait for a leader.
func TestCoordinatorUnavailableRefusesDefinitelyOnlyWhatWasNeverSent(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.set(1, 9, "x") // handed to this gateway's coordinator
	c.l.leaderChanged(&consensus.LeaderChanged{})
	c.set(2, 10, "y") // no leader known: waits, never sent
	if got := len(c.l.router.unsent()); got != 2 {
		t.Fatalf("%d requests wait to be sent, want 2", got)
	}
	c.l.becomeUnavailable("disk full: test")
	want := map[uint64]codec.Outcome{1: codec.Indeterminate, 2: codec.Definite}
	got := c.replies()
	if len(got) != 2 {
		t.Fatalf("replies %v, want both requests answered", got)
	}
	for _, r := range got {
		if outcome := codec.ClassifyError(r.GetError()); outcome != want[r.GetRequestId()] {
			t.Errorf("request %d answered %q: %v, want %v", r.GetRequestId(), r.GetError(), outcome, want[r.GetRequestId()])
		}
	}
	c.set(3, 11, "z")
	if r := c.replies(); len(r) != 1 || !strings.HasPrefix(r[0].GetError(), "gateway unavailable: disk full") {
		t.Fatalf("a request to the unavailable gateway: %v, want refused at once", r)
	}
	c.l.becomeAvailable()
	c.set(4, 12, "w")
	if r := c.replies(); len(r) != 0 || len(c.l.router.unsent()) != 1 {
		t.Fatalf("after consensus runs again: replies %v, %d waiting; want the request waiting for a leader", r, len(c.l.router.unsent()))
	}
}

// A copy queued behind large messages at its member gets longer to be
// stored: the store timeout plus the bytes in flight to that member at
// MemberRate. A copy sent later to an idle member still times out after
// the store timeout alone, before the earlier ones.
func TestCoordinatorStoreTimeLimitGrowsWithTheBytesQueued(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.cfg.StoreHedgeAfter = -1 // the timeouts alone
	rate := c.l.cfg.MemberRate
	big := strings.Repeat("b", int(2*rate)) // 2 s at the member rate
	c.set(1, 1, big)
	sel := c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0, 1}, Live: 3})
	c.set(2, 2, "x")
	sel = c.selects()
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{1, 2}, Live: 3})
	stores := c.stores()
	if len(stores[0]) != 1 || len(stores[1]) != 2 || len(stores[2]) != 1 {
		t.Fatalf("stores %v, want id 1 on members 0 and 1, id 2 on 1 and 2", stores)
	}

	// After the store timeout only id 2's copy on the idle member 2 is
	// replaced; member 1 has its big copy ahead of id 2's.
	c.advance(c.l.cfg.StoreTimeout + 100*time.Millisecond)
	sel = c.selects()
	if len(sel) != 1 || !slices.Contains(sel[0].GetExclude(), 2) {
		t.Fatalf("selections %v after %v, want one replacing member 2's copy of id 2", sel, c.l.cfg.StoreTimeout+100*time.Millisecond)
	}
	c.l.replicasSelected(&messages.ReplicasSelected{RequestId: sel[0].GetRequestId(), Members: []uint32{0}, Live: 3})
	c.stores()
	// Member 0 answers the big copy; member 1 stays silent, and its copies
	// time out at their longer limit: 2 s for the store timeout and 2 s for
	// the bytes ahead.
	c.l.storeAck(0, true, &messages.StoreAck{RequestId: stores[0][0].GetRequestId(), Id: 1, Version: stores[0][0].GetVersion(), Size: uint32(len(big))})
	c.advance(1700 * time.Millisecond) // 3.8 s after the sends
	if sel := c.selects(); len(sel) != 0 {
		t.Fatalf("selections %v at 3.8 s; member 1's copies have 4 s", sel)
	}
	c.advance(300 * time.Millisecond) // 4.1 s
	if sel := c.selects(); len(sel) != 2 {
		t.Fatalf("selections %v at 4.1 s, want both of member 1's copies replaced", sel)
	}
}

// forwardSet hands the leader one SET another gateway forwarded.
func (c *coord) forwardSet(from *actor.PID, origin, seq uint64, id int64, size int) {
	c.l.forwarded(from, &messages.ForwardBatch{Origin: origin, Requests: []*messages.ForwardedRequest{{Seq: seq,
		Request: &messages.ClientRequest{Op: messages.Op_OP_SET, Id: id, Payload: make([]byte, size)}}}})
}

// forwardGet delivers a GET of id forwarded by the gateway from (origin).
func (c *coord) forwardGet(from *actor.PID, origin, seq uint64, id int64) {
	c.l.forwarded(from, &messages.ForwardBatch{Origin: origin, Requests: []*messages.ForwardedRequest{{Seq: seq,
		Request: &messages.ClientRequest{Op: messages.Op_OP_GET, Id: id}}}})
}

// forwardReplies returns and clears the answers queued for from.
func (c *coord) forwardReplies(from *actor.PID) []*messages.ForwardedReply {
	key := pidKey(from)
	b := c.l.out.forwardReplies[key]
	delete(c.l.out.forwardReplies, key)
	if b == nil {
		return nil
	}
	return b.batch.GetReplies()
}

// completeWrites runs every selected write through its copies and the log.
func (c *coord) completeWrites() {
	c.t.Helper()
	for _, s := range c.selects() {
		c.l.replicasSelected(&messages.ReplicasSelected{RequestId: s.GetRequestId(), Members: []uint32{0, 1}[:s.GetCount()], Live: 3})
	}
	for slot, reqs := range c.stores() {
		for _, r := range reqs {
			c.l.storeAck(slot, true, &messages.StoreAck{RequestId: r.GetRequestId(), Id: r.GetId(), Version: r.GetVersion(), Size: uint32(len(r.GetPayload()))})
		}
	}
	c.apply(c.takeProposals()...)
}

// The leader takes no more than its limit of bytes forwarded by other
// gateways: past it a request is answered busy and nothing is started; a
// gateway holding nothing always gets one in; answers free the room; a
// request already in progress sent again is not refused.
func TestCoordinatorBoundsTheBytesOtherGatewaysForward(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.room = newWriteRoom(100)
	gw2, gw3 := actor.NewPID("gw2:7000", messages.LeaderActor), actor.NewPID("gw3:7000", messages.LeaderActor)
	c.forwardSet(gw2, 2, 1, 10, 60)
	c.forwardSet(gw2, 2, 2, 11, 60)
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetSeq() != 2 || !got[0].GetBusy() || got[0].GetReply() != nil {
		t.Fatalf("answers to gw2 %v, want busy for seq 2 only", got)
	}
	if n := len(c.l.out.selects.GetRequests()); n != 1 {
		t.Fatalf("%d writes started, want only the first", n)
	}
	c.forwardSet(gw3, 3, 1, 12, 60) // gw3 holds nothing: taken past the limit
	c.forwardSet(gw2, 2, 1, 10, 60) // in progress already: not refused
	if got := c.forwardReplies(gw3); len(got) != 0 || c.l.room.total != 120 || len(c.forwardReplies(gw2)) != 0 {
		t.Fatalf("gw3 answered %v, %d bytes held; want gw3's taken, gw2's repeat ignored, 120 bytes", got, c.l.room.total)
	}
	c.completeWrites()
	gw2Answers, gw3Answers := c.forwardReplies(gw2), c.forwardReplies(gw3)
	if len(gw2Answers) != 1 || gw2Answers[0].GetReply().GetCode() != messages.ReplyCode_REPLY_OK || len(gw3Answers) != 1 {
		t.Fatalf("answers %v and %v, want OK to each", gw2Answers, gw3Answers)
	}
	if c.l.room.total != 0 || len(c.l.room.held) != 0 {
		t.Fatalf("%d bytes still held (%v) after every answer", c.l.room.total, c.l.room.held)
	}
	c.forwardSet(gw2, 2, 2, 11, 60) // sent again: taken now
	if got := c.forwardReplies(gw2); len(got) != 0 || c.l.room.total != 60 {
		t.Fatalf("answers %v, %d bytes held; want the request taken", got, c.l.room.total)
	}
	// The term ends: the request goes back, the room goes with the term.
	c.l.leaderChanged(&consensus.LeaderChanged{Lead: 2, LeadAddress: "gw2:7000", Term: 2})
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetReply() != nil || got[0].GetBusy() {
		t.Fatalf("answers at the term's end %v, want seq 2 given back (not taken, not busy)", got)
	}
	if c.l.room.total != 0 {
		t.Fatalf("%d bytes held after the term", c.l.room.total)
	}
}

// The leader's own clients share the room with the other gateways: once
// its share is held, its next SET waits unsent, in order, and starts when
// an answer frees room (at the end of the leader's turn); a forwarded SET
// past the forwarding gateway's share is answered busy meanwhile. One that
// waits its whole deadline is answered busy, a definite error.
func TestCoordinatorSharesTheRoomWithItsOwnClients(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.room = newWriteRoom(100)
	gw2 := actor.NewPID("gw2:7000", messages.LeaderActor)
	c.set(1, 10, strings.Repeat("a", 60))
	c.forwardSet(gw2, 2, 1, 11, 60) // gw2 holds nothing: taken
	c.set(2, 12, strings.Repeat("b", 30))
	c.set(3, 13, strings.Repeat("c", 10))
	c.forwardSet(gw2, 2, 2, 14, 10) // within the limit? no: 120 held
	if n := len(c.l.out.selects.GetRequests()); n != 2 {
		t.Fatalf("%d writes started, want 2: the first own SET and gw2's", n)
	}
	if got := c.forwardReplies(gw2); len(got) != 1 || !got[0].GetBusy() {
		t.Fatalf("answers to gw2 %v, want busy for seq 2", got)
	}
	c.l.routeWaiting() // nothing freed yet: nothing moves
	if n := len(c.l.out.selects.GetRequests()); n != 2 {
		t.Fatalf("%d writes started before any answer, want 2", n)
	}
	c.completeWrites()
	c.l.routeWaiting()
	if n := len(c.l.out.selects.GetRequests()); n != 2 || c.l.room.heldBy(77) != 40 {
		t.Fatalf("%d writes started, %d own bytes held after the answers; want the two waiting SETs, 40 bytes", n, c.l.room.heldBy(77))
	}
	if got := c.replies(); len(got) != 1 || got[0].GetCode() != messages.ReplyCode_REPLY_OK {
		t.Fatalf("own replies %v, want OK to the first SET", got)
	}
	c.completeWrites()
	if got := c.replies(); len(got) != 2 {
		t.Fatalf("own replies %v, want the two that waited", got)
	}

	// A SET that never gets room: busy at its deadline.
	c.forwardSet(gw2, 2, 3, 15, 90)
	c.set(4, 16, strings.Repeat("d", 60)) // holding nothing: taken past the limit
	c.set(5, 17, strings.Repeat("e", 10))
	c.advance(c.l.cfg.RequestTimeout + time.Second)
	var busy int
	for _, r := range c.replies() {
		if r.GetRequestId() == 5 && strings.HasPrefix(r.GetError(), "busy:") {
			busy++
		}
	}
	if busy != 1 {
		t.Fatal("the SET that waited its whole deadline for room was not answered busy")
	}
}

// A GET holds room for the reply it brings back, the stored message's
// size: another gateway's GET past that gateway's share is answered busy,
// as a SET is, and one of the leader's own waits unsent until an answer
// frees room. Without this, GETs of large messages from every gateway's
// clients held the leader's memory unbounded.
func TestCoordinatorCountsGetRepliesInTheRoom(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.room = newWriteRoom(100)
	for id := int64(4); id <= 5; id++ {
		c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
			Id: id, Version: 2<<meta.EpochShift | uint64(id), Replicas: []uint32{1, 2}, Size: 60}}})
	}
	gw2 := actor.NewPID("gw2:7000", messages.LeaderActor)
	forwardGet := func(seq uint64, id int64) { c.forwardGet(gw2, 2, seq, id) }
	forwardGet(1, 4) // gw2 holds nothing: taken
	forwardGet(2, 5) // 120 bytes: past the limit
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetSeq() != 2 || !got[0].GetBusy() {
		t.Fatalf("answers to gw2 %v, want busy for seq 2: %d bytes held", got, c.l.room.total)
	}
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: 1, Op: messages.Op_OP_GET, Id: 5}}) // holds nothing: taken
	c.l.fromSession(c.session, []*messages.ClientRequest{{RequestId: 2, Op: messages.Op_OP_GET, Id: 4}}) // waits
	if c.l.room.total != 120 || !c.l.localWaits {
		t.Fatalf("%d bytes held, own GET waiting %v; want 120 held and the second own GET waiting", c.l.room.total, c.l.localWaits)
	}
	c.serveReads(60)
	if got, own := c.forwardReplies(gw2), c.replies(); len(got) != 1 || len(got[0].GetReply().GetPayload()) != 60 || len(own) != 1 {
		t.Fatalf("answers to gw2 %d (%d bytes), own replies %v; want gw2's GET's 60 bytes and one own reply", len(got), len(got[0].GetReply().GetPayload()), own)
	}
	if c.l.room.total != 0 {
		t.Fatalf("%d bytes held after the answers, want 0", c.l.room.total)
	}
	c.l.routeWaiting()
	if c.l.room.heldBy(77) != 60 {
		t.Fatalf("%d own bytes held after room was freed, want the waiting GET's 60", c.l.room.heldBy(77))
	}
	c.serveReads(60)
	if got := c.replies(); len(got) != 1 || got[0].GetRequestId() != 2 || c.l.room.total != 0 {
		t.Fatalf("own replies %v, %d bytes held; want request 2 answered and nothing held", got, c.l.room.total)
	}
}

// confirmBarriers confirms every read barrier (one may follow another),
// so the reads behind them start.
func (c *coord) confirmBarriers() {
	for range 3 {
		direct := c.l.out.direct
		c.l.out.direct = nil
		for _, e := range direct {
			if b, ok := e.msg.(*consensus.ReadBarrier); ok {
				c.l.barrierDone(b.ID)
			}
		}
	}
}

// serveReads confirms every read barrier, then answers every read sent
// to a member with a message of size bytes.
func (c *coord) serveReads(size int) {
	c.confirmBarriers()
	for _, reqs := range c.takeReads() {
		for _, r := range reqs {
			c.l.readReply(0, false, &messages.ReadReply{RequestId: r.GetRequestId(), Id: r.GetId(), Version: r.GetVersion(),
				Status: messages.ReadStatus_READ_OK, Payload: make([]byte, size)})
		}
	}
}

// A GET is counted in the room at the size the leader knew when it
// arrived; if a SET committed meanwhile grew the message, the read counts
// the larger size from when it starts, so the room admits no more than it
// would have, and frees all it took once the GET is answered.
func TestCoordinatorRecountsAGetWhoseMessageGrew(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.room = newWriteRoom(100)
	put := func(id int64, version uint64, size uint32) {
		c.apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
			Id: id, Version: 2<<meta.EpochShift | version, Replicas: []uint32{1, 2}, Size: size}}})
	}
	put(4, 1, 10)
	put(5, 2, 60)
	gw2 := actor.NewPID("gw2:7000", messages.LeaderActor)
	forwardGet := func(seq uint64, id int64) { c.forwardGet(gw2, 2, seq, id) }
	forwardGet(1, 4)    // counted at 10 bytes
	put(4, 3, 90)       // the message grows before the read starts
	c.confirmBarriers() // the read starts
	if c.l.room.heldBy(2) != 90 {
		t.Fatalf("gw2 holds %d bytes once its GET's read started, want the grown message's 90", c.l.room.heldBy(2))
	}
	forwardGet(2, 5) // 90 + 60: past the limit
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetSeq() != 2 || !got[0].GetBusy() {
		t.Fatalf("answers to gw2 %v, want busy for seq 2 with %d bytes held", got, c.l.room.total)
	}
	c.serveReads(90)
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetSeq() != 1 || len(got[0].GetReply().GetPayload()) != 90 {
		t.Fatalf("answers to gw2 %v, want seq 1's 90 bytes", got)
	}
	if c.l.room.total != 0 {
		t.Fatalf("%d bytes held after the answer, want 0", c.l.room.total)
	}
}

// The first request another gateway forwards in a term is answered at
// once with an empty batch naming the leader, so that gateway probes
// instead of re-sending whole even before any answer is ready; later ones
// are not, until the connection to that gateway breaks.
func TestCoordinatorTellsForwardingGatewaysAtOnceThatItAnswersProbes(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.self = actor.NewPID("gw1:7000", messages.LeaderActor)
	gw2 := actor.NewPID("gw2:7000", messages.LeaderActor)
	told := func() bool {
		b := c.l.out.forwardReplies[pidKey(gw2)]
		c.drain()
		return b != nil && b.batch.GetSender() == "gw1:7000" && len(b.batch.GetReplies()) == 0
	}
	c.forwardSet(gw2, 2, 1, 10, 5)
	if !told() {
		t.Fatal("no empty answer batch naming the leader after gw2's first forward")
	}
	c.forwardSet(gw2, 2, 2, 11, 5)
	if told() {
		t.Fatal("an empty answer batch again after gw2's second forward")
	}
	c.l.connectionLost("gw2:7000")
	c.drain()
	c.forwardSet(gw2, 2, 3, 12, 5)
	if !told() {
		t.Fatal("no empty answer batch after the connection to gw2 broke")
	}
}

// A gateway probes a forwarded request that went unanswered for a while
// instead of sending its message again: the leader says "not taken" only
// if it does not hold the request, and a probe starts nothing.
func TestCoordinatorAnswersProbesOfForwardedRequests(t *testing.T) {
	c := newCoord(t, 2, 3)
	gw2 := actor.NewPID("gw2:7000", messages.LeaderActor)
	c.forwardSet(gw2, 2, 1, 10, 5)
	probe := func(seqs ...uint64) {
		b := &messages.ForwardBatch{Origin: 2}
		for _, s := range seqs {
			b.Requests = append(b.Requests, &messages.ForwardedRequest{Seq: s, Probe: true})
		}
		c.l.forwarded(gw2, b)
	}
	probe(1, 2)
	got := c.forwardReplies(gw2)
	if len(got) != 1 || got[0].GetSeq() != 2 || got[0].GetReply() != nil || got[0].GetBusy() {
		t.Fatalf("answers to probes of a held and an unknown request: %v, want not taken for seq 2 only", got)
	}
	if n := len(c.l.out.selects.GetRequests()); n != 1 || len(c.l.inProgress) != 1 {
		t.Fatalf("%d writes started, %d held: a probe started something", n, len(c.l.inProgress))
	}
	c.completeWrites()
	c.forwardReplies(gw2)
	probe(1) // answered already: no longer held
	if got := c.forwardReplies(gw2); len(got) != 1 || got[0].GetSeq() != 1 || got[0].GetReply() != nil {
		t.Fatalf("answer to a probe of a finished request: %v, want not taken", got)
	}
}

// A forwarded request unanswered for forwardRetry is probed at a leader
// whose answers say it answers probes, and sent again whole to one that
// never said so (an older version, which would take a probe for a request).
func TestGatewayProbesOnlyLeadersThatAnswerProbes(t *testing.T) {
	c := newCoord(t, 2, 3)
	c.l.leaderChanged(&consensus.LeaderChanged{Lead: 2, LeadAddress: "gw2:7000", Term: 2})
	c.set(1, 9, "x")
	key := "gw2:7000/" + messages.LeaderActor
	sentOnce := func() *messages.ForwardedRequest {
		t.Helper()
		fwd := c.l.out.forwards[key]
		if fwd == nil || len(fwd.batch.GetRequests()) != 1 {
			t.Fatalf("forwarded %v, want one request", fwd)
		}
		c.drain()
		return fwd.batch.GetRequests()[0]
	}
	if r := sentOnce(); r.GetProbe() || r.GetRequest() == nil {
		t.Fatalf("first send %v, want the request", r)
	}
	c.advance(forwardRetry + tickInterval)
	if r := sentOnce(); r.GetProbe() || string(r.GetRequest().GetPayload()) != "x" {
		t.Fatalf("after forwardRetry to a gateway not known to answer probes: %v, want the request again", r)
	}
	c.l.forwardReplies(&messages.ForwardReplyBatch{Sender: "gw2:7000"})
	c.advance(forwardRetry + tickInterval)
	if r := sentOnce(); !r.GetProbe() || r.GetRequest() != nil || r.GetSeq() != 1 {
		t.Fatalf("after forwardRetry to a gateway that answers probes: %v, want a probe of seq 1", r)
	}
	// Not taken there: sent again, whole.
	c.l.forwardReplies(&messages.ForwardReplyBatch{Sender: "gw2:7000", Replies: []*messages.ForwardedReply{{Seq: 1}}})
	c.advance(tickInterval)
	if r := sentOnce(); r.GetProbe() || string(r.GetRequest().GetPayload()) != "x" {
		t.Fatalf("after a probe was answered not taken: %v, want the request again", r)
	}
}
