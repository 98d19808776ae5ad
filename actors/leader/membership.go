package leader

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/messages"
)

// Messages between the membership actor and the leader.
type (
	// registerMember asks the leader to record a member in the log.
	registerMember struct {
		memberID, nodeAddress, adminAddress string
	}
	// memberRegistered tells the membership actor a member's slot.
	memberRegistered struct {
		memberID string
		slot     uint32
	}
	// memberUpdate tells the leader a registered member's liveness and
	// load.
	memberUpdate struct {
		slot            uint32
		alive, ready    bool
		messages, bytes uint64
		lastHeard       time.Time
		// writesRefused says why the member takes no writes (its disk is
		// nearly full); it still serves reads.
		writesRefused string
		diskFree      uint64
	}
	// endpointDown reports that the remote connection to an address broke.
	endpointDown   struct{ address string }
	membershipTick struct{}
	// leadership tells the membership actor whether its gateway's leader
	// is active, and which gateway leads. Only the active leader keeps
	// track of members; the others send members there.
	leadership struct {
		leaderAddress string
		active        bool
	}
	// presumeAlive starts a term: the registered members count as alive,
	// as of now, until they miss their heartbeats.
	presumeAlive struct{ members []meta.Member }
)

// registrationRetry is how long a registration may stay unanswered before
// the next heartbeat asks again (the log append may have failed).
const registrationRetry = 2 * time.Second

// membership takes member heartbeats and decides who is alive: a member
// is alive while it heartbeats; it is down at once when its connection
// breaks (remote's EndpointTerminatedEvent) or after HeartbeatTimeout of
// silence. Registration itself goes through the leader's log.
type membership struct {
	cfg     Config
	log     zerolog.Logger
	members map[string]*memberState // by member id
	byAddr  map[string]string       // node address -> member id
	sub     *eventstream.Subscription
	stop    func()
	// clock times liveness; a stall of this process does not count
	// against the members.
	clock *stallClock
	// active is set while this gateway's leader is active; leaderAddress
	// is the node address of the gateway that leads ("" if none known).
	active        bool
	leaderAddress string
}

type memberState struct {
	id, nodeAddress, adminAddress string
	pid                           *actor.PID // the member's supervisor, to acknowledge
	slot                          uint32
	registered                    bool
	registering                   time.Time // when registration was last asked for
	alive, ready                  bool
	lastReady                     bool      // storage readiness in the last heartbeat
	lastHeard                     time.Time // wall time, for display
	heardAt                       time.Time // clock time of the last heartbeat
	quarantinedUntil              time.Time // clock time
	messages, bytes               uint64
	writesRefused                 string
	diskFree                      uint64
}

func newMembership(cfg Config, log zerolog.Logger) actor.Producer {
	return func() actor.Actor {
		return &membership{cfg: cfg, log: log.With().Str("actor", messages.MembershipActor).Logger()}
	}
}

func (m *membership) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.members = make(map[string]*memberState)
		m.byAddr = make(map[string]string)
		m.clock = newStallClock(m.cfg.HeartbeatTimeout/2, time.Now())
		self, root := ctx.Self(), ctx.ActorSystem().Root
		m.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt interface{}) {
			if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				root.Send(self, &endpointDown{address: e.Address})
			}
		})
		m.stop = ticker.Every(root, m.cfg.HeartbeatTimeout/4, m.cfg.HeartbeatTimeout/4, self, membershipTick{})
	case *actor.Stopping, *actor.Restarting:
		if m.sub != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(m.sub)
		}
		if m.stop != nil {
			m.stop()
		}
	case *messages.MemberHeartbeat:
		if !m.active {
			m.redirect(ctx)
			return
		}
		m.heartbeat(ctx, msg)
	case *leadership:
		m.leadershipChanged(msg)
	case *presumeAlive:
		m.presume(msg.members)
	case *memberRegistered:
		m.registered(ctx, msg)
	case *endpointDown:
		m.endpointDown(ctx, msg.address)
	case membershipTick:
		m.expire(ctx, m.clock.advance(time.Now()))
	}
}

// redirect answers a heartbeat on a gateway whose leader is not active:
// the member heartbeats to the leader instead (or, while none is known,
// tries its other gateways).
func (m *membership) redirect(ctx actor.Context) {
	if sender := ctx.Sender(); sender != nil {
		ctx.Send(sender, &messages.HeartbeatAck{Redirect: true, Leader: m.leaderAddress})
	}
}

// leadershipChanged follows the leader actor: a membership actor whose
// leader is no longer active forgets the members' liveness, which is the
// active leader's to keep.
func (m *membership) leadershipChanged(l *leadership) {
	m.leaderAddress = l.leaderAddress
	if m.active && !l.active {
		clear(m.members)
		clear(m.byAddr)
	}
	m.active = l.active
}

// presume records the registered members as alive now, at the start of a
// term; their heartbeats confirm it, or their silence ends it.
func (m *membership) presume(members []meta.Member) {
	now := m.clock.advance(time.Now())
	clear(m.members)
	clear(m.byAddr)
	for _, mem := range members {
		st := &memberState{
			id: mem.ID, nodeAddress: mem.NodeAddress, adminAddress: mem.AdminAddress,
			slot: mem.Slot, registered: true, alive: true, ready: true, lastReady: true,
			lastHeard: time.Now(), heardAt: now,
		}
		m.members[st.id] = st
		m.byAddr[st.nodeAddress] = st.id
	}
	m.active = true
}

func (m *membership) heartbeat(ctx actor.Context, hb *messages.MemberHeartbeat) {
	now := m.clock.advance(time.Now())
	if hb.GetMemberId() == "" || hb.GetNodeAddress() == "" {
		m.log.Warn().Str("from", senderAddress(ctx)).Msg("heartbeat without member id or node address; ignored")
		return
	}
	st := m.members[hb.GetMemberId()]
	if st == nil {
		st = &memberState{id: hb.GetMemberId()}
		m.members[st.id] = st
	}
	if now.Before(st.quarantinedUntil) {
		return
	}
	if st.nodeAddress != hb.GetNodeAddress() || st.adminAddress != hb.GetAdminAddress() {
		if st.nodeAddress != "" {
			delete(m.byAddr, st.nodeAddress)
		}
		st.nodeAddress, st.adminAddress = hb.GetNodeAddress(), hb.GetAdminAddress()
		m.byAddr[st.nodeAddress] = st.id
		st.registered = false // the new addresses must reach the log first
	}
	st.pid = ctx.Sender()
	st.lastHeard, st.heardAt, st.lastReady = time.Now(), now, hb.GetStorageReady()
	st.messages, st.bytes = hb.GetMessages(), hb.GetBytes()
	st.writesRefused, st.diskFree = hb.GetWritesRefused(), hb.GetDiskFreeBytes()
	if !st.registered {
		if now.Sub(st.registering) > registrationRetry {
			st.registering = now
			ctx.Send(ctx.Parent(), &registerMember{memberID: st.id, nodeAddress: st.nodeAddress, adminAddress: st.adminAddress})
		}
		return
	}
	if st.pid != nil {
		ctx.Send(st.pid, &messages.HeartbeatAck{Slot: st.slot})
	}
	wasAlive := st.alive && st.ready
	st.alive, st.ready = true, hb.GetStorageReady()
	if !wasAlive && st.ready {
		m.log.Info().Str("member", st.id).Uint32("slot", st.slot).Str("node", st.nodeAddress).Msg("member is up")
	}
	m.update(ctx, st)
}

func (m *membership) registered(ctx actor.Context, msg *memberRegistered) {
	st := m.members[msg.memberID]
	if st == nil {
		return
	}
	st.registering, st.registered, st.slot = time.Time{}, true, msg.slot
	// The registration answers the heartbeat that asked for it: the member
	// is up as of that heartbeat, so it is usable before it learns it is
	// registered (and reports itself ready).
	if m.clock.advance(time.Now()).Sub(st.heardAt) <= m.cfg.HeartbeatTimeout {
		st.alive, st.ready = true, st.lastReady
		m.log.Info().Str("member", st.id).Uint32("slot", st.slot).Str("node", st.nodeAddress).Bool("storage_ready", st.ready).Msg("member is up")
		m.update(ctx, st)
	}
	if st.pid != nil {
		ctx.Send(st.pid, &messages.HeartbeatAck{Slot: st.slot})
	}
}

func (m *membership) endpointDown(ctx actor.Context, address string) {
	st := m.members[m.byAddr[address]]
	if st == nil || !st.alive {
		return
	}
	st.alive = false
	st.quarantinedUntil = m.clock.advance(time.Now()).Add(m.cfg.Quarantine)
	m.log.Warn().Str("member", st.id).Uint32("slot", st.slot).Str("node", address).Msg("member connection lost; member is down")
	m.update(ctx, st)
}

func (m *membership) expire(ctx actor.Context, now time.Time) {
	for _, st := range m.members {
		if st.alive && now.Sub(st.heardAt) > m.cfg.HeartbeatTimeout {
			st.alive = false
			m.log.Warn().Str("member", st.id).Uint32("slot", st.slot).Dur("silent_for", now.Sub(st.heardAt)).
				Dur("gateway_stalled_total", m.clock.skipped()).Msg("member missed its heartbeats; member is down")
			m.update(ctx, st)
		}
	}
}

func (m *membership) update(ctx actor.Context, st *memberState) {
	if !st.registered {
		return
	}
	ctx.Send(ctx.Parent(), &memberUpdate{
		slot: st.slot, alive: st.alive, ready: st.ready,
		messages: st.messages, bytes: st.bytes, lastHeard: st.lastHeard,
		writesRefused: st.writesRefused, diskFree: st.diskFree,
	})
}

func senderAddress(ctx actor.Context) string {
	if s := ctx.Sender(); s != nil {
		return s.Address
	}
	return ""
}

// memberUpdate applies a member's liveness to the leader's view.
func (l *leader) memberUpdate(u *memberUpdate) {
	v := l.slot(u.slot)
	if v == nil {
		return
	}
	wasUsable, wasWritable, wasRefusing := v.usable(), v.writable(), v.writesRefused != ""
	v.alive, v.ready = u.alive, u.ready
	v.messages, v.bytes, v.lastHeard = u.messages, u.bytes, u.lastHeard
	v.writesRefused, v.diskFree = u.writesRefused, u.diskFree
	mem, known := l.state.Member(u.slot)
	if m := l.cfg.Metrics; m != nil && known {
		m.MemberMessages.WithLabelValues(mem.ID).Set(float64(u.messages))
		m.MemberBytes.WithLabelValues(mem.ID).Set(float64(u.bytes))
	}
	if refusing := v.writesRefused != ""; refusing != wasRefusing {
		if refusing {
			l.log.Warn().Str("member", mem.ID).Uint32("slot", u.slot).Str("reason", v.writesRefused).
				Msg("member refuses writes; new copies go to other members, reads still use it")
		} else {
			l.log.Info().Str("member", mem.ID).Uint32("slot", u.slot).Msg("member takes writes again")
		}
	}
	if wasUsable == v.usable() && wasWritable == v.writable() {
		return
	}
	l.pushLiveSet()
	l.publishStatus() // the live count feeds /readyz
	if !v.usable() {
		l.memberDown(u.slot)
	}
}

// registerMember records a member in the log unless it is already
// registered with the same addresses.
func (l *leader) registerMember(r *registerMember) {
	if !l.active {
		return // the member asks again with its next heartbeat
	}
	if slot, ok := l.state.SlotOf(r.memberID); ok {
		if m, _ := l.state.Member(slot); m.NodeAddress == r.nodeAddress && m.AdminAddress == r.adminAddress {
			l.send(l.membership, &memberRegistered{memberID: r.memberID, slot: slot})
			return
		}
	}
	if l.registering[r.memberID] {
		return
	}
	l.registering[r.memberID] = true
	entry := &messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{
		MemberId: r.memberID, NodeAddress: r.nodeAddress, AdminAddress: r.adminAddress,
	}}}
	if err := l.propose(&proposal{entry: entry, memberID: r.memberID, started: time.Now()}); err != nil {
		delete(l.registering, r.memberID)
	}
}
