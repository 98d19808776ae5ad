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
	if wasUsable == v.usable() && wasWritable == v.writable() {
		return
	}
	l.pushLiveSet()
	l.publishStatus() // the live count feeds /readyz
	if !v.usable() {
		l.memberDown(u.Slot)
	}
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
