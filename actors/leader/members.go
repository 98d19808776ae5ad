package leader

import (
	"time"

	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/messages"
)

// The leader's side of membership: the membership actor (its sibling,
// actors/membership) reports members' liveness and asks for registrations;
// the leader keeps the live set the selector chooses from and records
// registrations in the log.

// memberUpdate applies a member's liveness to the leader's view.
func (l *leader) memberUpdate(u *membership.MemberUpdate) {
	v := l.slot(u.Slot)
	if v == nil {
		return
	}
	wasUsable, wasWritable, wasRefusing := v.usable(), v.writable(), v.writesRefused != ""
	v.alive, v.ready = u.Alive, u.Ready
	if v.late && u.Alive {
		v.beatsSinceLate++
	}
	v.messages, v.bytes, v.lastHeard = u.Messages, u.Bytes, u.LastHeard
	v.writesRefused, v.diskFree = u.WritesRefused, u.DiskFree
	mem, known := l.state.Member(u.Slot)
	if m := l.cfg.Metrics; m != nil && known {
		m.MemberMessages.WithLabelValues(mem.ID).Set(float64(u.Messages))
		m.MemberBytes.WithLabelValues(mem.ID).Set(float64(u.Bytes))
	}
	if refusing := v.writesRefused != ""; refusing != wasRefusing {
		if refusing {
			l.log.Warn().Str("member", mem.ID).Uint32("slot", u.Slot).Str("reason", v.writesRefused).
				Msg("member refuses writes; new copies go to other members, reads still use it")
		} else {
			l.log.Info().Str("member", mem.ID).Uint32("slot", u.Slot).Msg("member takes writes again")
		}
	}
	if v.late && (v.beatsSinceLate >= lateBeats || !v.usable()) {
		l.clearLate(u.Slot) // it runs, or its requests fail over now
	}
	if wasUsable == v.usable() && wasWritable == v.writable() {
		return
	}
	l.pushLiveSet()
	l.publishStatus() // the live count feeds /readyz
	if !v.usable() {
		l.memberDown(u.Slot)
	}
}

// lateBeats is how many heartbeats a late member must be heard from,
// after it was found late, to be chosen for new copies as before: one may
// have been sent before the member stopped, the next shows that it runs.
const lateBeats = 2

// markLate records that a copy sent to slot went unanswered past
// Config.StoreHedgeAfter: the selector chooses the member only when the
// other members do not make up a write's copies, until it answers a
// request, lateBeats of its heartbeats have been reported since, or it is
// found down. A stopped member is found down only after its heartbeat
// timeout; without this, every SET placed on it meanwhile would wait for
// its hedge.
func (l *leader) markLate(slot uint32) {
	v := l.slot(slot)
	if v == nil || v.late {
		return
	}
	v.late, v.beatsSinceLate = true, 0
	l.log.Warn().Uint32("slot", slot).Msg("member left a copy unanswered; choosing it last for new copies until it answers or heartbeats again")
	l.pushLiveSet()
}

// heardFrom records that the member in slot answered a request: it is
// not stopped.
func (l *leader) heardFrom(slot uint32) {
	v := l.slot(slot)
	if v == nil {
		return
	}
	v.quietSince = l.now()
	l.clearLate(slot)
}

// clearLate records that the member in slot is no longer late.
func (l *leader) clearLate(slot uint32) {
	v := l.slot(slot)
	if v == nil || !v.late {
		return
	}
	v.late = false
	l.log.Info().Uint32("slot", slot).Msg("member no longer late; choosing it for new copies as before")
	l.pushLiveSet()
}

// registerMember records a member in the log unless it is already
// registered with the same addresses.
func (l *leader) registerMember(r *membership.RegisterMember) {
	if !l.active {
		return // the member asks again with its next heartbeat
	}
	if slot, ok := l.state.SlotOf(r.MemberID); ok {
		if m, _ := l.state.Member(slot); m.NodeAddress == r.NodeAddress && m.AdminAddress == r.AdminAddress {
			l.send(l.membership, &membership.MemberRegistered{MemberID: r.MemberID, Slot: slot})
			return
		}
	}
	if l.registering[r.MemberID] {
		return
	}
	l.registering[r.MemberID] = true
	entry := &messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{
		MemberId: r.MemberID, NodeAddress: r.NodeAddress, AdminAddress: r.AdminAddress,
	}}}
	if err := l.propose(&proposal{entry: entry, memberID: r.MemberID, started: time.Now()}); err != nil {
		delete(l.registering, r.MemberID)
	}
}

// resyncMembership tells a membership actor restarted after a crash what
// the one before knew: whether this leader leads (since its term began:
// the members are presumed alive until their heartbeats say otherwise, as
// at the start of a term) and which gateway does.
func (l *leader) resyncMembership() {
	if l.term != 0 {
		l.send(l.membership, &membership.PresumeAlive{Members: l.state.Members()})
		l.send(l.membership, &membership.Leadership{LeaderAddress: l.leaderAddress(), Active: true})
		return
	}
	l.send(l.membership, &membership.Leadership{LeaderAddress: l.leaderAddress(), Active: false})
}
