// Package leader is a gateway's leader actor (its child is the selector;
// its sibling, the membership actor of actors/membership, tells it which
// members are alive).
// Every gateway runs a leader actor; the one on the Raft leader is active.
// The active leader turns client requests into replicated writes and
// fallback reads: it asks the selector for members, sends
// StoreRequest/ReadRequest to their storage actors (never blocking on a
// reply: replies come back as messages correlated by request id), and
// changes the metadata only by proposing entries to the gateways' Raft
// group (actors/consensus) and acting on them once applied. Its state for
// a term is built fresh when the term begins and dropped when it ends.
//
// Every leader actor, active or not, routes the client requests of its
// gateway's sessions: to its own coordinator while it is active, to the
// active leader's actor on another gateway otherwise, and again to the new
// leader when leadership moves, until each request is answered or its
// deadline passes.
package leader

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/actors/selector"
	"github.com/tolerex/tolerex/actors/stallclock"
	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// Config configures the leader.
type Config struct {
	// Tolerance is how many members store every message (1..7).
	Tolerance int
	// Balancer picks the replica-selection policy.
	Balancer selector.Policy
	// Consensus is the gateway's consensus actor, and View the state
	// machine it applies entries to.
	Consensus *actor.PID
	View      *consensus.StateView
	// StoreTimeout bounds one member's store; the member is then replaced.
	StoreTimeout time.Duration
	// StoreResendAfter is how long a copy may go unanswered by a live
	// member before the same copy is sent to that member once more, with
	// the bytes in flight to it counted as for StoreTimeout: an answer can
	// be lost without the member being down (docs/design.md, write path),
	// and asking again costs the member one more write of the copy where
	// waiting costs the client the whole StoreTimeout. 0 means
	// DefaultStoreResendAfter; negative never sends a copy again before
	// StoreTimeout.
	StoreResendAfter time.Duration
	// StoreHedgeAfter is how long a copy may go unanswered before one
	// more member is asked to store it too, with the bytes in flight to
	// the late member counted as for StoreTimeout, while the late copy
	// stays in flight: the first Tolerance copies stored are the ones the
	// index names, and a copy that lands after them is pruned. Once per
	// SET, only if the late member has answered nothing for as long
	// (plus everything in flight to it at MemberRate: a busy member is
	// not a stopped one), and only if the selector has a member the SET
	// has not used. The late member is then chosen last for new copies
	// (markLate). A stopped member is found down only after seconds (the
	// members' heartbeat timeout, 2 s): storing one more copy costs a
	// member one write where waiting costs the client those seconds. 0
	// means DefaultStoreHedgeAfter; negative never asks another member
	// before the copy fails.
	StoreHedgeAfter time.Duration
	// ReadTimeout bounds one member's read; the next replica is then tried.
	ReadTimeout time.Duration
	// ReadHedgeAfter is how long a member may leave a read unanswered
	// before the next replica is asked too, with the bytes in flight to
	// the member counted as for ReadTimeout; the first good answer is the
	// GET's. Once per GET. A reply can be lost without the member being
	// down, and a stopped member is found down only after seconds: asking
	// a second replica costs it one read where waiting costs the client
	// the whole ReadTimeout. 0 means DefaultReadHedgeAfter; negative never
	// asks a second replica before ReadTimeout.
	ReadHedgeAfter time.Duration
	// MemberRate is the slowest rate, in bytes a second, at which a member
	// is expected to store what it is sent: a copy's time limit is
	// StoreTimeout plus the bytes of the copies in flight to that member,
	// its own included, at this rate (default DefaultMemberRate), so that
	// copies queued behind large messages are not taken for lost.
	MemberRate uint64
	// RequestTimeout bounds how long a client request may wait for its
	// answer, sent again to a new leader after a failover included. A
	// write not answered by then is answered "outcome unknown".
	RequestTimeout time.Duration
	// Membership is the gateway's membership actor (actors/membership),
	// the leader actor's sibling: the leader tells it whether it leads,
	// and it reports the members' liveness and asks for registrations.
	Membership *actor.PID
	// MaxHeldBytes bounds the message bytes (SET messages, GET replies)
	// the active leader holds at once, until answered: its own clients'
	// and those other gateways forwarded, shared equally among the
	// gateways that have some held (writeRoom). Past it, a forwarded
	// request is answered "busy" and sent again, and one of its own waits
	// (0: no bound). A gateway passes its --max-inflight-bytes.
	MaxHeldBytes int64
	// FaultInjection makes the leader panic on a SET whose message is
	// PanicMessage, in the middle of the batch that carries it (crash
	// tests only).
	FaultInjection bool
	Tree           *tree.Registry
	Metrics        *Metrics
	Status         *Status
	Logger         zerolog.Logger
}

// DefaultStoreResendAfter is Config.StoreResendAfter's default: a quarter
// of the default store timeout, and about 150 times the mean time the
// members took to store a SET's copies with 64 connections writing on
// this project's 2-core machine (3.2 ms, docs/benchmarks.md).
const DefaultStoreResendAfter = 500 * time.Millisecond

// DefaultStoreHedgeAfter is Config.StoreHedgeAfter's default: an eighth
// of the default store timeout, as long as DefaultReadHedgeAfter, and
// about 80 times the mean time the members took to store a SET's copies
// with 64 connections writing on this project's 2-core machine (3.2 ms,
// docs/benchmarks.md).
const DefaultStoreHedgeAfter = 250 * time.Millisecond

// DefaultReadHedgeAfter is Config.ReadHedgeAfter's default: a quarter of
// the default read timeout, and well above a GET's time at the members
// with 64 connections reading on this project's 2-core machine (a few
// ms, docs/benchmarks.md).
const DefaultReadHedgeAfter = 250 * time.Millisecond

// MaxTolerance is the largest supported tolerance.
const MaxTolerance = 7

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Tolerance < 1 || c.Tolerance > MaxTolerance {
		return fmt.Errorf("tolerance %d out of range 1..%d", c.Tolerance, MaxTolerance)
	}
	if _, err := selector.ParsePolicy(string(c.Balancer)); err != nil {
		return err
	}
	if c.View == nil {
		return fmt.Errorf("leader: no state view")
	}
	setDefault(&c.StoreTimeout, 2*time.Second)
	if c.StoreResendAfter == 0 {
		c.StoreResendAfter = DefaultStoreResendAfter
	}
	if c.StoreHedgeAfter == 0 {
		c.StoreHedgeAfter = DefaultStoreHedgeAfter
	}
	setDefault(&c.ReadTimeout, time.Second)
	if c.ReadHedgeAfter == 0 {
		c.ReadHedgeAfter = DefaultReadHedgeAfter
	}
	if c.MemberRate == 0 {
		c.MemberRate = DefaultMemberRate
	}
	setDefault(&c.RequestTimeout, 10*time.Second)
	return nil
}

// newOrigin picks the random, non-zero number that identifies the client
// requests one incarnation of a leader actor takes (with their sequence
// numbers): it must differ from every other gateway's and from every
// earlier incarnation's, or the state machine would take a new request for
// a repeat of an old one and drop it.
func newOrigin() (uint64, error) {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("leader: pick an origin: %w", err)
		}
		if o := binary.BigEndian.Uint64(b[:]); o != 0 {
			return o, nil
		}
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// New returns the producer of the leader actor; spawn it named
// messages.LeaderActor with props from cfg.Tree. cfg must be validated.
func New(cfg Config) actor.Producer {
	return func() actor.Actor {
		return &leader{cfg: cfg, log: cfg.Logger.With().Str("actor", messages.LeaderActor).Logger()}
	}
}

type leader struct {
	cfg   Config
	log   zerolog.Logger
	state stateReader
	self  *actor.PID
	root  *actor.RootContext
	// wall is the clock the leader reads (time.Now; tests set their own);
	// its timeouts use it through the stall-clamped clock.
	wall func() time.Time

	selector   *actor.PID
	membership *actor.PID
	// clock times member requests; a stall of this process does not
	// count against the members.
	clock     *stallclock.Clock
	stopTicks func()
	endpoints *eventstream.Subscription
	ticks     int
	// nextID numbers requests to members and the selector; it never goes
	// back, so a late answer from an earlier term matches nothing.
	nextID  uint64
	out     *outbox
	mailbox tree.Mailbox // set by the tree registry's props; may be nil

	// router holds the requests of this gateway's sessions until they are
	// answered; lead is who leads, as consensus last said.
	router *router
	lead   consensus.LeaderChanged
	// answersProbes holds the node addresses of the gateways whose answers
	// to forwarded requests say they answer probes (until the connection
	// to one breaks: it may come back as an older version).
	answersProbes map[string]bool
	// ready is set when consensus said this gateway's leadership in
	// lead.Term is ready (its state machine is current).
	ready bool
	// unavailable says why this gateway cannot serve at all (its Raft log
	// is unreadable or its disk full, or consensus was stopped); requests
	// are refused with it at once until consensus is available again.
	unavailable string

	// termState is the coordinator's state for the term in which this
	// gateway leads; a fresh, inactive one otherwise. Its fields are used
	// as the leader's own.
	*termState
}

// SetMailbox implements tree.MailboxAware: the leader flushes its outbox
// when its mailbox is empty.
func (l *leader) SetMailbox(m tree.Mailbox) { l.mailbox = m }

// slotView is the leader's live view of one registered member.
type slotView struct {
	storage  *actor.PID
	alive    bool
	ready    bool
	inflight int
	// inflightBytes is the payload bytes of the copies in flight to it.
	inflightBytes uint64
	messages      uint64
	bytes         uint64
	lastHeard     time.Time
	// writesRefused says why the member takes no writes (its disk is
	// nearly full): it is read from but not chosen for new copies.
	writesRefused string
	diskFree      uint64
	// late is set when a copy sent to it went unanswered past
	// Config.StoreHedgeAfter: the selector chooses it last (markLate).
	// beatsSinceLate counts the heartbeats reported since.
	late           bool
	beatsSinceLate int
	// quietSince is when it last answered a request (heardFrom), or was
	// sent one while it had none in flight (track), whichever came last:
	// since then it has had something to answer and answered nothing.
	quietSince time.Time
}

// usable says whether the member may be read from (and sent prunes).
func (s *slotView) usable() bool { return s.storage != nil && s.alive && s.ready }

// writable says whether the member may be chosen for new copies.
func (s *slotView) writable() bool { return s.usable() && s.writesRefused == "" }

// tick is the leader's housekeeping timer.
type tick struct{}

// leaderLost reports a broken connection to another gateway.
type leaderLost struct{ address string }

// selfRun is a message the leader sends itself to run code later on its
// own goroutine (the fault suite's planted bugs use it).
type selfRun interface{ run(*leader) }

func (l *leader) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		l.start(ctx)
	case *actor.Restarting:
		l.stop(ctx, "leader restarting")
	case *actor.Stopping:
		l.stop(ctx, "leader stopping")
	case *messages.ClientBatch:
		l.fromSession(ctx.Sender(), msg.GetRequests())
	case *messages.ClientRequest:
		l.fromSession(ctx.Sender(), []*messages.ClientRequest{msg})
	case *messages.ForwardBatch:
		l.forwarded(ctx.Sender(), msg)
	case *messages.ForwardReplyBatch:
		l.forwardReplies(msg)
	case *leaderLost:
		l.connectionLost(msg.address)
	case *consensus.Unavailable:
		l.becomeUnavailable(msg.Reason)
	case *consensus.Available:
		l.becomeAvailable()
	case *consensus.LeaderChanged:
		l.leaderChanged(msg)
	case *consensus.LeadershipReady:
		l.leadershipReady(msg)
	case *consensus.Applied:
		l.applied(msg)
	case *consensus.ProposalsDropped:
		l.proposalsDropped(msg)
	case *consensus.BarrierDone:
		l.barrierDone(msg.ID)
	case *consensus.BarrierFailed:
		l.barrierFailed(msg)
	case *messages.SelectedBatch:
		for _, r := range msg.GetReplies() {
			l.replicasSelected(r)
		}
	case *messages.StoreAckBatch:
		// The sender tells which member answered, for acks nobody waits
		// for any more.
		from, known := l.slotOf(ctx.Sender())
		for _, a := range msg.GetAcks() {
			l.storeAck(from, known, a)
		}
	case *messages.ReadReplyBatch:
		from, known := l.slotOf(ctx.Sender())
		for _, r := range msg.GetReplies() {
			l.readReply(from, known, r)
		}
	case flushOutbox:
		l.flush(ctx)
	case *membership.MemberUpdate:
		l.memberUpdate(msg)
	case *membership.RegisterMember:
		l.registerMember(msg)
	case *membership.Resync:
		l.resyncMembership()
	case *statusRequest:
		ctx.Respond(l.status(ctx))
	case *messages.MemberLivenessRequest:
		ctx.Respond(l.liveness(ctx))
	case *locateRequest:
		ctx.Respond(l.locate(ctx, msg.id))
	case tick:
		l.tick()
	case *InjectPanic:
		l.log.Warn().Msg("fault injection: leader panics now")
		panic("injected leader fault")
	case selfRun:
		msg.run(l)
	}
	if l.out != nil {
		l.routeWaiting()
		l.endTurn(ctx)
	}
}

// connectionLost follows a broken connection to another gateway. If it
// leads, what was sent there may be lost: send it again (to it, or to the
// next leader). Either way that gateway forgets whether this one answers
// probes, and this one forgets whether that one does.
func (l *leader) connectionLost(address string) {
	delete(l.answersProbes, address)
	delete(l.toldProbes, address)
	l.router.resend(address)
	l.route()
}

// InjectPanic makes the leader panic; gateways started with
// --fault-injection send it on POST /debug/fault/leader-panic.
type InjectPanic struct{}

// PanicMessage is the message of a SET that makes a leader started with
// FaultInjection panic while it takes the batch carrying it.
const PanicMessage = "tolerex-fault-injection: panic the leader"

func (l *leader) start(ctx actor.Context) {
	l.state = stateReader{view: l.cfg.View}
	l.self, l.root = ctx.Self(), ctx.ActorSystem().Root
	l.out = newOutbox()
	if l.wall == nil {
		l.wall = time.Now
	}
	l.clock = stallclock.New(maxClockStep, l.wall())
	// A fresh origin for every start of the actor: a restarted leader
	// numbers its requests from 1 again, and the state machine must not
	// take them for the requests of the incarnation before.
	origin, err := newOrigin()
	if err != nil {
		panic(err)
	}
	l.router = newRouter(origin, l.cfg.RequestTimeout)
	l.router.limitForwarding(l.cfg.MaxHeldBytes / forwardWindowShare)
	l.answersProbes = make(map[string]bool)
	// Requests to members and the selector are numbered from a random
	// start too: answers to the incarnation before may still arrive, and
	// must not match a request of this one (they are also checked against
	// the id and version they name).
	first, err := newOrigin()
	if err != nil {
		panic(err)
	}
	l.nextID = first >> 1
	l.termState = newTermState(0, 0)
	l.selector = l.spawn(ctx, "selector", "selector", selector.NewActor(l.cfg.Balancer, uint64(time.Now().UnixNano())))
	l.membership = l.cfg.Membership
	l.stopTicks = ticker.Every(ctx.ActorSystem().Root, tickInterval, tickInterval, ctx.Self(), tick{})
	self, root := ctx.Self(), ctx.ActorSystem().Root
	l.endpoints = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
			root.Send(self, &leaderLost{address: e.Address})
		}
	})
	if l.cfg.Consensus != nil {
		ctx.Request(l.cfg.Consensus, &consensus.Subscribe{})
	}
	if l.cfg.Status != nil {
		l.cfg.Status.SetProblem("")
	}
	l.publishStatus()
}

func (l *leader) spawn(ctx actor.Context, name, kind string, producer actor.Producer) *actor.PID {
	pid, err := ctx.SpawnNamed(l.cfg.Tree.Props(kind, producer), name)
	if err != nil {
		panic(fmt.Errorf("spawn %s: %w", name, err))
	}
	return pid
}

// stop ends the term's work and answers every request this gateway's
// sessions are waiting for: this actor is going away (or restarting, and
// a restart does not know them).
func (l *leader) stop(ctx actor.Context, reason string) {
	if l.stopTicks != nil {
		l.stopTicks()
	}
	if l.endpoints != nil {
		ctx.ActorSystem().EventStream.Unsubscribe(l.endpoints)
	}
	if l.termState != nil {
		l.endTerm()
	}
	if l.router != nil {
		for _, rt := range l.router.all() {
			l.toSession(rt.session, stopReply(rt, reason))
		}
	}
	if l.out != nil {
		l.flush(ctx)
	}
	l.publishStatus()
}

// stopReply answers a request whose leader actor stops: a write's outcome
// is unknown (it may have reached the log), a read simply failed.
func stopReply(rt *routed, reason string) *messages.ClientReply {
	text := "outcome unknown: " + reason + " before this request was answered; read the id to see whether it took effect"
	if rt.req.GetOp() == messages.Op_OP_GET {
		text = reason
	}
	return &messages.ClientReply{RequestId: rt.request, Code: messages.ReplyCode_REPLY_ERROR, Error: text}
}

// becomeUnavailable refuses every request from now on: this gateway's
// consensus cannot run. A request never sent to a leader is refused
// definitely; one that was (even if it waits to be sent again) may still
// take effect, so its outcome is unknown.
func (l *leader) becomeUnavailable(reason string) {
	l.unavailable = codec.UnavailablePrefix + reason
	for _, ref := range l.inProgress {
		if ref.to != nil { // another gateway's: it sends it to the next leader
			l.giveBack(ref)
		}
	}
	l.termState = newTermState(0, 0)
	for _, rt := range l.router.all() {
		text := l.unavailable
		if rt.everSent() && rt.req.GetOp() != messages.Op_OP_GET {
			text = "outcome unknown: this gateway became unavailable (" + reason + ") after it had sent the request to a leader; read the id to see whether it took effect"
		}
		l.toSession(rt.session, &messages.ClientReply{RequestId: rt.request, Code: messages.ReplyCode_REPLY_ERROR, Error: text})
	}
	l.publishStatus()
}

// becomeAvailable takes requests again: consensus runs again after an
// Unavailable. They wait for a leader as at any start.
func (l *leader) becomeAvailable() {
	if l.unavailable == "" {
		return
	}
	l.log.Info().Str("was", l.unavailable).Msg("consensus runs again: taking requests")
	l.unavailable = ""
	l.publishStatus()
}

func (l *leader) newRequestID() uint64 {
	l.nextID++
	return l.nextID
}

// slotOf finds the member whose storage actor is pid.
func (l *leader) slotOf(pid *actor.PID) (uint32, bool) {
	if pid == nil {
		return 0, false
	}
	for slot := range l.members {
		if v := &l.members[slot]; v.storage != nil && v.storage.Address == pid.Address {
			return uint32(slot), true
		}
	}
	return 0, false
}

func (l *leader) slot(slot uint32) *slotView {
	if int(slot) >= len(l.members) {
		return nil
	}
	return &l.members[slot]
}

// syncSlot makes the leader's view of a member match its registration.
func (l *leader) syncSlot(m meta.Member) {
	for int(m.Slot) >= len(l.members) {
		l.members = append(l.members, slotView{})
	}
	v := &l.members[m.Slot]
	if v.storage == nil || v.storage.Address != m.NodeAddress {
		v.storage = actor.NewPID(m.NodeAddress, messages.StorageActor)
	}
}

func (l *leader) tick() {
	now := l.now()
	l.expire(now)
	l.expireRouted(l.wall())
	for _, rt := range l.router.unanswered(l.wall(), forwardRetry) {
		if l.answersProbes[rt.sentTo] {
			l.queueForward(actor.NewPID(rt.sentTo, messages.LeaderActor), &messages.ForwardedRequest{Seq: rt.seq, Probe: true})
		} else {
			l.router.notTaken(rt.seq) // an older gateway: sent again, whole
		}
	}
	l.route()
	l.ticks++
	if l.active && l.ticks%loadReportTicks == 0 {
		l.pushLoad()
	}
}

// now reads the leader's clock.
func (l *leader) now() time.Time { return l.clock.Advance(l.wall()) }

// Timing of the leader's housekeeping.
const (
	// maxClockStep is the most time one gap between two readings of the
	// leader's clock counts for: several ticks.
	maxClockStep = 5 * tickInterval
	tickInterval = 50 * time.Millisecond
	// forwardRetry is how long a request forwarded to the leader may stay
	// unanswered before the leader is asked whether it still holds it.
	forwardRetry = 2 * time.Second
	// forwardWindowShare: a gateway forwards at most this fraction of
	// MaxHeldBytes at once (of its own --max-inflight-bytes: the
	// leader's is taken to be the same). Forwarded messages share the
	// connection to the leader with the Raft messages, which wait behind
	// them: with 5 gateways and 4 MB SETs from 64 connections on the
	// followers, the followers' whole budgets in flight delayed heartbeats
	// past the election timeout, leadership changed every second or two
	// and no SET succeeded; with a quarter, none changed (docs/benchmarks.md,
	// "Large messages").
	forwardWindowShare = 4
	// busyPause is how long a gateway whose forwarded requests were all
	// answered "busy" waits before it sends one again.
	busyPause       = tickInterval
	loadReportTicks = 20 // push exact per-member load to the selector every second
)

func (l *leader) pushLoad() {
	l.send(l.selector, &messages.SelectorLoad{Messages: l.state.Counts()})
}

// pushLiveSet gives the selector the members it may choose for new
// copies: the live ones that take writes.
func (l *leader) pushLiveSet() {
	var live, late []uint32
	for slot := range l.members {
		if v := &l.members[slot]; v.writable() {
			live = append(live, uint32(slot))
			if v.late {
				late = append(late, uint32(slot))
			}
		}
	}
	l.send(l.selector, &messages.SelectorLiveSet{Live: live, Late: late})
	if m := l.cfg.Metrics; m != nil {
		m.LiveMembers.Set(float64(l.liveCount()))
	}
}
