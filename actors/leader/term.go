package leader

import (
	"fmt"
	"time"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// termState is the coordinator's state for one term in which this gateway
// leads the Raft group. It is built when consensus says the leadership is
// ready and dropped, whole, when the term ends: nothing of one term's work
// leaks into the next. The zero term is the state of a gateway that does
// not lead: inactive and empty.
type termState struct {
	term uint64
	// active is set once the term's epoch is applied: versions minted from
	// then on exceed every version minted before.
	active       bool
	epochPending bool
	epoch        uint64 // the epoch proposed for this term
	counter      uint64 // version counter inside the epoch

	members    []slotView
	requests   map[uint64]*outstanding
	selections map[uint64]*write
	// resent holds, by id, the SET in progress that sent a copy again to a
	// member (placement.isAskedAgain), until its entry applies or it fails
	// (writes of one id run one at a time): a late answer to the first
	// attempt is matched against it.
	resent      map[int64]*write
	deadlines   deadlineHeap
	registering map[string]bool
	busy        idQueues
	// proposals are the puts and deletes proposed and not applied yet, by
	// request id.
	proposals map[requestKey]*proposal
	// inProgress is every client request the coordinator holds, so it can
	// give each back when the term ends, and take a request sent twice
	// only once.
	inProgress map[requestKey]clientRef
	// room bounds the message bytes of the requests in inProgress;
	// localWaits says this gateway's own requests wait for it (route).
	room       writeRoom
	localWaits bool
	// toldProbes holds the node addresses of the forwarding gateways
	// sent an answer batch in this term (which tells them this leader
	// answers probes) since the connection to them last broke.
	toldProbes map[string]bool
	reads      readBatches
}

// newTermState returns the state of a term; roomLimit bounds the message
// bytes of the requests it holds (0: no bound).
func newTermState(term uint64, roomLimit int64) *termState {
	return &termState{
		term:        term,
		room:        newWriteRoom(roomLimit),
		requests:    make(map[uint64]*outstanding),
		selections:  make(map[uint64]*write),
		resent:      make(map[int64]*write),
		registering: make(map[string]bool),
		busy:        newIDQueues(),
		proposals:   make(map[requestKey]*proposal),
		inProgress:  make(map[requestKey]clientRef),
		toldProbes:  make(map[string]bool),
	}
}

// proposal is an entry proposed to the log: what to do once it is applied.
type proposal struct {
	entry   *messages.LogEntry
	ref     clientRef // the client request, for puts and deletes
	started time.Time
	// member registration
	memberID string
}

// leaderChanged follows consensus: a term in which this gateway led ends
// when leadership moves or a new term starts; requests waiting for an
// answer go to the new leader.
func (l *leader) leaderChanged(lc *consensus.LeaderChanged) {
	prev := l.lead
	l.lead = *lc
	if l.term != 0 && (!lc.Local || lc.Term != l.term) {
		l.endTerm()
	}
	if !lc.Local || lc.Term != prev.Term {
		l.ready = false
	}
	if lc.Lead != prev.Lead || lc.Term != prev.Term {
		l.log.Info().Uint64("lead", lc.Lead).Str("lead_address", lc.LeadAddress).Uint64("term", lc.Term).
			Bool("local", lc.Local).Int("waiting_requests", l.router.len()).Msg("leader changed; routing requests to it")
		l.router.resend("")
	}
	l.send(l.membership, &membership.Leadership{LeaderAddress: l.leaderAddress(), Active: false})
	l.route()
	l.publishStatus()
}

// leaderAddress is the node address of the gateway that leads, "" if none
// is known.
func (l *leader) leaderAddress() string {
	if l.lead.Lead == 0 {
		return ""
	}
	return l.lead.LeadAddress
}

// leadershipReady begins the term: the state machine is current, so the
// coordinator is built from it, and the term's epoch is proposed.
func (l *leader) leadershipReady(msg *consensus.LeadershipReady) {
	if !l.lead.Local || msg.Term != l.lead.Term || l.term == msg.Term {
		return
	}
	l.ready = true
	l.termState = newTermState(msg.Term, l.cfg.MaxHeldBytes)
	now := l.wall()
	members := l.state.Members()
	for _, m := range members {
		l.syncSlot(m)
		// Presumed alive until proven otherwise: their heartbeats are on
		// their way here (members re-home within a heartbeat or two), and
		// a member that is in fact down fails its first request fast.
		v := l.slot(m.Slot)
		v.alive, v.ready, v.lastHeard = true, true, now
	}
	l.send(l.membership, &membership.PresumeAlive{Members: members})
	l.pushLiveSet()
	l.pushLoad()
	l.epoch = l.state.Epoch() + 1
	l.epochPending = true
	l.propose(&proposal{entry: epochEntry(l.epoch), started: now})
	l.log.Info().Uint64("term", msg.Term).Uint64("epoch", l.epoch).Int("members", len(members)).
		Int("messages", l.state.Len()).Msg("leading: proposing the term's epoch")
}

// activate starts serving once the term's epoch is applied (and resets
// the version counter when a later epoch of the term is).
func (l *leader) activate() {
	l.counter = 0
	l.epochPending = false
	if l.active {
		return
	}
	l.active = true
	l.send(l.membership, &membership.Leadership{LeaderAddress: l.leaderAddress(), Active: true})
	l.log.Info().Uint64("term", l.term).Uint64("epoch", l.epoch).Int("live_members", l.liveCount()).
		Int("waiting_requests", l.router.len()).Msg("leader active")
	l.route()
	l.publishStatus()
}

// endTerm drops the term's state. Every client request the coordinator
// held goes back to the gateway that took it, which sends it to the next
// leader under the same request id: the log applies a write once however
// often it is proposed. Copies stored for writes never proposed are
// dropped.
func (l *leader) endTerm() {
	if l.term != 0 {
		l.log.Info().Uint64("term", l.term).Int("requests_given_back", len(l.inProgress)).Msg("term over; coordinator dropped")
	}
	for _, o := range l.requests {
		if w := o.write; w != nil && !w.done && len(w.place.stored) > 0 {
			w.done = true
			l.pruneCopies(w.id, w.version, uint32(len(w.payload)), w.place.stored)
		}
	}
	for _, ref := range l.inProgress {
		l.giveBack(ref)
	}
	l.send(l.membership, &membership.Leadership{LeaderAddress: l.leaderAddress(), Active: false})
	l.termState = newTermState(0, 0)
	if m := l.cfg.Metrics; m != nil {
		// Only the active leader knows the members: a deposed one shows
		// none rather than its last view.
		m.LiveMembers.Set(0)
		m.ForwardedBytes.Set(0)
		m.MemberMessages.Reset()
		m.MemberBytes.Reset()
	}
	l.publishStatus()
}

func epochEntry(epoch uint64) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Epoch{Epoch: &messages.EpochEntry{Epoch: epoch}}}
}

// propose sends an entry to consensus. It first checks the entry against
// the state, so the log never holds an entry the state machine would
// reject (one that would then be rejected on every gateway); such an entry
// is a bug, and is refused with an error instead.
func (l *leader) propose(p *proposal) error {
	if err := l.state.Check(p.entry); err != nil {
		if m := l.cfg.Metrics; m != nil {
			m.RefusedProposals.Inc()
		}
		l.log.Error().Err(err).Str("entry", p.entry.String()).Msg("refusing to propose an invalid metadata entry (a bug)")
		return fmt.Errorf("refused before it was logged: %w", err)
	}
	if key, ok := keyOf(p.entry.GetRequest()); ok {
		l.proposals[key] = p
	}
	l.queueProposal(p.entry)
	return nil
}

// applied acts on committed entries consensus applied: it answers the
// requests they carry out and drops the copies they made obsolete.
func (l *leader) applied(msg *consensus.Applied) {
	for _, ae := range msg.Entries {
		l.appliedEntry(ae)
	}
	if len(msg.Entries) == 0 && l.term != 0 {
		// A snapshot replaced the state: follow its members.
		for _, m := range l.state.Members() {
			l.syncSlot(m)
		}
	}
	l.publishStatus()
}

func (l *leader) appliedEntry(ae consensus.AppliedEntry) {
	e := ae.Entry
	var p *proposal
	if key, ok := keyOf(e.GetRequest()); ok {
		if p = l.proposals[key]; p != nil {
			delete(l.proposals, key)
		}
	}
	if ae.Err != nil {
		if p != nil {
			l.rejectedProposal(p, "internal error: the request was not applied (nothing was stored)")
		}
		return
	}
	if p != nil {
		if m := l.cfg.Metrics; m != nil {
			m.CommitSeconds.Observe(time.Since(p.started).Seconds())
		}
	}
	if ae.Effect.TooLate {
		l.tooLate(e, ae.Effect, p)
		return
	}
	switch x := e.GetEntry().(type) {
	case *messages.LogEntry_Put:
		l.prune(x.Put.GetId(), ae.Effect)
		if p != nil {
			l.reply(p.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK})
			l.finish(x.Put.GetId())
		}
	case *messages.LogEntry_Delete:
		l.prune(x.Delete.GetId(), ae.Effect)
		if p != nil {
			code := messages.ReplyCode_REPLY_OK
			if !ae.Effect.Existed {
				code = messages.ReplyCode_REPLY_NOT_FOUND
			}
			l.reply(p.ref, &messages.ClientReply{Code: code})
			l.finish(x.Delete.GetId())
		}
	case *messages.LogEntry_Member:
		if l.term == 0 {
			return
		}
		id := x.Member.GetMemberId()
		delete(l.registering, id)
		slot, ok := l.state.SlotOf(id)
		if !ok {
			return
		}
		m, _ := l.state.Member(slot)
		l.syncSlot(m)
		l.log.Info().Str("member", m.ID).Uint32("slot", m.Slot).Str("node", m.NodeAddress).Msg("member registered")
		l.send(l.membership, &membership.MemberRegistered{MemberID: m.ID, Slot: m.Slot})
	case *messages.LogEntry_Epoch:
		if l.epochPending && x.Epoch.GetEpoch() == l.epoch && l.state.Epoch() == l.epoch {
			l.activate()
		}
	}
}

// proposalsDropped handles entries consensus did not take: this gateway no
// longer leads (their requests go to the next leader), or it refused them
// for good (too much uncommitted, or its disk nearly full: a definite
// error, whose reason consensus gives in the client's words).
func (l *leader) proposalsDropped(msg *consensus.ProposalsDropped) {
	for _, e := range msg.Entries {
		key, ok := keyOf(e.GetRequest())
		if !ok {
			if m := e.GetMember(); m != nil {
				delete(l.registering, m.GetMemberId())
			}
			continue
		}
		p := l.proposals[key]
		if p == nil {
			continue
		}
		delete(l.proposals, key)
		if !l.lead.Local || !l.active || msg.Reason == consensus.DropNotLeader || msg.Reason == consensus.DropTransfer {
			if put := e.GetPut(); put != nil {
				l.pruneCopies(put.GetId(), put.GetVersion(), put.GetSize(), put.GetReplicas())
			}
			l.giveBack(p.ref)
			continue
		}
		l.rejectedProposal(p, msg.Reason+"; nothing was stored")
	}
}

// tooLateReply answers a SET or DEL the state machine no longer applied:
// re-sent after more writes than its window remembers, it might repeat an
// earlier attempt (term.go, tooLate).
const tooLateReply = "outcome unknown: the request was sent again after too many later writes to tell whether its first attempt took effect; this attempt did not; read the id to see"

// tooLate drops the copies of a put the state machine did not apply
// because its request came too late (meta.Effect.TooLate), and answers its
// client that the outcome is unknown.
func (l *leader) tooLate(e *messages.LogEntry, eff meta.Effect, p *proposal) {
	id := entryID(e)
	l.prune(id, eff)
	l.log.Warn().Int64("id", id).Uint64("window_end", e.GetRequest().GetWindowEnd()).
		Msg("a request reached the log too late to be applied exactly once; answered outcome unknown")
	if p != nil {
		l.replyError(p.ref, tooLateReply)
		l.finish(id)
	}
}

// rejectedProposal answers the client of a proposal that will not take
// effect with reason, drops the copies of a put and releases what waited
// for it.
func (l *leader) rejectedProposal(p *proposal, reason string) {
	if put := p.entry.GetPut(); put != nil {
		l.pruneCopies(put.GetId(), put.GetVersion(), put.GetSize(), put.GetReplicas())
	}
	if p.ref.valid() {
		l.replyError(p.ref, reason)
		l.finish(entryID(p.entry))
	}
	if p.memberID != "" {
		delete(l.registering, p.memberID)
	}
}

// entryID is the message id a put or delete entry is about.
func entryID(e *messages.LogEntry) int64 {
	switch x := e.GetEntry().(type) {
	case *messages.LogEntry_Put:
		return x.Put.GetId()
	case *messages.LogEntry_Delete:
		return x.Delete.GetId()
	}
	return 0
}

// prune tells members to drop the version an applied entry made obsolete.
func (l *leader) prune(id int64, eff meta.Effect) {
	if len(eff.PruneSlots) == 0 || !l.active {
		return
	}
	l.pruneCopies(id, eff.PruneVersion, eff.PruneSize, eff.PruneSlots)
}

// pruneCopies tells members to drop one version of id that nobody will
// read again. It is best effort: a member that is down or misses it keeps
// garbage, never serves it (reads ask for an exact version).
func (l *leader) pruneCopies(id int64, version uint64, size uint32, slots []uint32) {
	msg := &messages.PruneRequest{Id: id, Version: version, Size: size}
	for _, slot := range slots {
		if v := l.slot(slot); v != nil && v.usable() {
			l.queuePrune(slot, msg)
		}
	}
}

// mintVersion returns a version larger than every version minted before,
// in this epoch or any earlier one.
func (l *leader) mintVersion() uint64 {
	l.counter++
	if l.counter >= meta.MaxCounter/2 && !l.epochPending {
		// Far ahead of need: move to a new epoch, which resets the counter
		// once it is applied.
		l.epoch = l.state.Epoch() + 1
		l.epochPending = true
		if err := l.propose(&proposal{entry: epochEntry(l.epoch), started: time.Now()}); err != nil {
			l.epochPending = false
		}
	}
	return l.state.Epoch()<<meta.EpochShift | l.counter
}
