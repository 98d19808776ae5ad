package membership

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/stallclock"
	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/messages"
)

// Internal messages of the membership actor.
type (
	// endpointDown reports that the remote connection to an address broke.
	endpointDown struct{ address string }
	tick         struct{}
)

// membershipActor takes member heartbeats. While its gateway's leader is
// active it keeps the members' liveness (Liveness) and reports it to the
// leader actor, its sibling; otherwise it redirects every heartbeat to the
// gateway that leads. It learns of broken connections from remote's
// EndpointTerminatedEvent.
type membershipActor struct {
	cfg      Config
	leader   *actor.PID // the leader actor of this gateway
	resync   bool       // a restart: ask the leader where leadership stands
	log      zerolog.Logger
	liveness *Liveness
	pids     map[string]*actor.PID // each member's supervisor, by member id, to acknowledge
	sub      *eventstream.Subscription
	stop     func()
	// clock times liveness; a stall of this process does not count
	// against the members.
	clock *stallclock.Clock
	// active is set while this gateway's leader is active; leaderAddress
	// is the node address of the gateway that leads ("" if none known).
	active        bool
	leaderAddress string
}

// New returns the producer of a membership actor that reports to leader,
// the leader actor of the same gateway. Spawn it before the leader actor,
// at the top level, named messages.MembershipActor (and AnswerAlso under
// messages.LegacyMembershipActor). The leader tells it whether it leads;
// once restarted after a crash it asks the leader (Resync), as the
// leader's word from before the crash is gone with the old instance.
func New(cfg Config, leader *actor.PID, log zerolog.Logger) actor.Producer {
	cfg = cfg.withDefaults()
	incarnations := 0 // one actor per producer, which it calls in turn
	return func() actor.Actor {
		incarnations++
		return &membershipActor{
			cfg: cfg, leader: leader, resync: incarnations > 1,
			log: log.With().Str("actor", messages.MembershipActor).Logger(),
		}
	}
}

// Receive implements actor.Actor.
func (m *membershipActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.liveness = NewLiveness(m.cfg)
		m.pids = make(map[string]*actor.PID)
		m.clock = stallclock.New(m.cfg.HeartbeatTimeout/2, time.Now())
		self, root := ctx.Self(), ctx.ActorSystem().Root
		m.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt interface{}) {
			if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				root.Send(self, &endpointDown{address: e.Address})
			}
		})
		m.stop = ticker.Every(root, m.cfg.HeartbeatTimeout/4, m.cfg.HeartbeatTimeout/4, self, tick{})
		if m.resync {
			m.log.Info().Msg("membership restarted; asking the leader actor where leadership stands")
			ctx.Send(m.leader, &Resync{})
		}
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
	case *Leadership:
		m.leadershipChanged(msg)
	case *PresumeAlive:
		m.liveness.Presume(msg.Members, m.clock.Advance(time.Now()), time.Now())
		clear(m.pids)
		m.active = true
	case *MemberRegistered:
		m.registered(ctx, msg)
	case *endpointDown:
		if d := m.liveness.ConnectionLost(msg.address, m.clock.Advance(time.Now())); d != nil {
			m.log.Warn().Str("member", d.MemberID).Uint32("slot", d.Slot).Str("node", d.NodeAddress).Msg("member connection lost; member is down")
			m.update(ctx, d.Update)
		}
	case *InjectPanic:
		m.log.Warn().Msg("fault injection: membership panics now")
		panic("injected membership fault")
	case tick:
		for _, d := range m.liveness.Expire(m.clock.Advance(time.Now())) {
			m.log.Warn().Str("member", d.MemberID).Uint32("slot", d.Slot).Dur("silent_for", d.SilentFor).
				Dur("gateway_stalled_total", m.clock.Skipped()).Msg("member missed its heartbeats; member is down")
			m.update(ctx, d.Update)
		}
	}
}

// redirect answers a heartbeat on a gateway whose leader is not active:
// the member heartbeats to the leader instead (or, while none is known,
// tries its other gateways).
func (m *membershipActor) redirect(ctx actor.Context) {
	if sender := ctx.Sender(); sender != nil {
		ctx.Send(sender, &messages.HeartbeatAck{Redirect: true, Leader: m.leaderAddress})
	}
}

// leadershipChanged follows the leader actor: a membership actor whose
// leader is no longer active forgets the members' liveness, which is the
// active leader's to keep.
func (m *membershipActor) leadershipChanged(l *Leadership) {
	m.leaderAddress = l.LeaderAddress
	if m.active && !l.Active {
		m.liveness.Forget()
		clear(m.pids)
	}
	m.active = l.Active
}

func (m *membershipActor) heartbeat(ctx actor.Context, hb *messages.MemberHeartbeat) {
	out, err := m.liveness.Heartbeat(Heartbeat{
		MemberID: hb.GetMemberId(), NodeAddress: hb.GetNodeAddress(), AdminAddress: hb.GetAdminAddress(),
		StorageReady: hb.GetStorageReady(), Messages: hb.GetMessages(), Bytes: hb.GetBytes(),
		WritesRefused: hb.GetWritesRefused(), DiskFree: hb.GetDiskFreeBytes(), Wall: time.Now(),
	}, m.clock.Advance(time.Now()))
	if err != nil {
		m.log.Warn().Str("from", senderAddress(ctx)).Err(err).Msg("heartbeat ignored")
		return
	}
	if ctx.Sender() != nil {
		m.pids[hb.GetMemberId()] = ctx.Sender()
	}
	if out.Register != nil {
		ctx.Send(m.leader, out.Register)
	}
	if out.Ack && ctx.Sender() != nil {
		ctx.Send(ctx.Sender(), &messages.HeartbeatAck{Slot: out.Slot})
	}
	if out.CameUp {
		m.log.Info().Str("member", hb.GetMemberId()).Uint32("slot", out.Slot).Str("node", hb.GetNodeAddress()).Msg("member is up")
	}
	m.update(ctx, out.Update)
}

func (m *membershipActor) registered(ctx actor.Context, msg *MemberRegistered) {
	r := m.liveness.Registered(msg.MemberID, msg.Slot, m.clock.Advance(time.Now()))
	if r == nil {
		return
	}
	if u := r.Update; u != nil {
		m.log.Info().Str("member", msg.MemberID).Uint32("slot", msg.Slot).Str("node", r.NodeAddress).Bool("storage_ready", u.Ready).Msg("member is up")
		m.update(ctx, u)
	}
	if pid := m.pids[msg.MemberID]; pid != nil {
		ctx.Send(pid, &messages.HeartbeatAck{Slot: msg.Slot})
	}
}

// update tells the leader a member's state, if there is one to tell.
func (m *membershipActor) update(ctx actor.Context, u *MemberUpdate) {
	if u != nil {
		ctx.Send(m.leader, u)
	}
}

func senderAddress(ctx actor.Context) string {
	if s := ctx.Sender(); s != nil {
		return s.Address
	}
	return ""
}
