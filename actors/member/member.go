// Package member holds the actors of a member node: the member supervisor
// (registration and heartbeats to the gateway, restarts of a crashed
// storage actor with bounded exponential backoff) and the storage actor
// that owns the node's durable store.
package member

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/probe"
	"github.com/tolerex/tolerex/messages"
)

// RestartPolicy bounds how a crashed storage actor is restarted: after
// InitialBackoff, doubling up to MaxBackoff, at most MaxRestarts times
// within Window; one more failure stops it for good (the member then
// reports its storage as down and the gateway stops using it).
type RestartPolicy struct {
	MaxRestarts    int
	Window         time.Duration
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

// DefaultRestartPolicy restarts quickly at first and gives up on a store
// that keeps crashing.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{MaxRestarts: 10, Window: time.Minute, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// Backoff returns the delay before the n-th restart (n >= 1) in the window.
func (p RestartPolicy) Backoff(n int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// Status is what the member node shows the outside world (heartbeats,
// readiness, metrics, its /api/cluster). Actors write it, HTTP handlers
// read it.
type Status struct {
	Registered   atomic.Bool
	Slot         atomic.Uint32
	StorageReady atomic.Bool
	Messages     atomic.Uint64
	Bytes        atomic.Uint64
	GaveUp       atomic.Bool // the storage actor crashed too often and was stopped
	// CorruptReads counts reads that found their record damaged and were
	// answered READ_CORRUPT (the gateway then reads another replica).
	CorruptReads atomic.Uint64

	// ReadOnly is true while the store is open read-only (the disk was
	// nearly full when it was opened).
	ReadOnly atomic.Bool

	lastCorruption atomic.Pointer[string]
	storeCorrupt   atomic.Pointer[string]
	gateway        atomic.Pointer[string]

	diskFree, diskTotal, minFree atomic.Uint64
	diskFull                     atomic.Pointer[string]
	writeFailure                 atomic.Pointer[string]
	// unreachable says why the gateways whose last probe failed are
	// unreachable (membership.Reach.Unreachable).
	unreachable atomic.Pointer[string]
}

// SetDisk records the free space last seen on the store's filesystem,
// the watermark, and why writes are refused because of it ("" when they
// are not).
func (s *Status) SetDisk(free, total, minFree uint64, full string) {
	s.diskFree.Store(free)
	s.diskTotal.Store(total)
	s.minFree.Store(minFree)
	storeString(&s.diskFull, full)
}

// DiskFree is the free space last seen on the store's filesystem.
func (s *Status) DiskFree() uint64 { return s.diskFree.Load() }

// DiskTotal is the size of the store's filesystem.
func (s *Status) DiskTotal() uint64 { return s.diskTotal.Load() }

// MinFree is the free-space watermark under which writes are refused.
func (s *Status) MinFree() uint64 { return s.minFree.Load() }

// SetWriteFailure records why the store cannot take writes until the
// member restarts; "" clears it.
func (s *Status) SetWriteFailure(reason string) { storeString(&s.writeFailure, reason) }

// WritesRefused says why the member refuses writes ("disk full: ..."), or
// "" while it takes them. It still serves reads of what it holds.
func (s *Status) WritesRefused() string {
	if msg := s.diskFull.Load(); msg != nil {
		return *msg
	}
	if msg := s.writeFailure.Load(); msg != nil {
		return *msg
	}
	return ""
}

func storeString(p *atomic.Pointer[string], v string) {
	if v == "" {
		p.Store(nil)
		return
	}
	p.Store(&v)
}

// RecordCorruption notes damage found in the store: a corrupt read, or
// damaged records the store skipped when it was opened.
func (s *Status) RecordCorruption(err error) {
	msg := err.Error()
	s.lastCorruption.Store(&msg)
}

// LastCorruption is the last damage recorded, or "" if none was.
func (s *Status) LastCorruption() string {
	if msg := s.lastCorruption.Load(); msg != nil {
		return *msg
	}
	return ""
}

// SetStoreCorrupt marks the store as unusable because it is corrupt, with
// err saying why; nil clears the mark.
func (s *Status) SetStoreCorrupt(err error) {
	if err == nil {
		s.storeCorrupt.Store(nil)
		return
	}
	msg := err.Error()
	s.storeCorrupt.Store(&msg)
	s.RecordCorruption(err)
}

// StoreCorrupt says why the store is unusable because it is corrupt, or ""
// if it is not.
func (s *Status) StoreCorrupt() string {
	if msg := s.storeCorrupt.Load(); msg != nil {
		return *msg
	}
	return ""
}

// setGateway records the gateway the member heartbeats to.
func (s *Status) setGateway(address string) { s.gateway.Store(&address) }

func (s *Status) setUnreachable(reasons string) { storeString(&s.unreachable, reasons) }

// Gateway is the node address of the gateway the member last heard from
// as the leader, "" before it registered.
func (s *Status) Gateway() string {
	if g := s.gateway.Load(); g != nil {
		return *g
	}
	return ""
}

// NotReady says why the member cannot serve (its /readyz reason), or nil
// when it can.
func (s *Status) NotReady() error {
	switch {
	case s.GaveUp.Load():
		return errors.New("storage actor kept crashing and was stopped")
	case s.StoreCorrupt() != "":
		return fmt.Errorf("storage corrupt: %s", s.StoreCorrupt())
	case s.WritesRefused() != "" && !s.StorageReady.Load():
		return fmt.Errorf("%s; no store open, nothing served", s.WritesRefused())
	case s.WritesRefused() != "":
		return fmt.Errorf("%s; refusing writes, serving reads", s.WritesRefused())
	case !s.StorageReady.Load():
		return errors.New("storage not open")
	case !s.Registered.Load():
		if u := s.unreachable.Load(); u != nil {
			return fmt.Errorf("not registered with the gateway yet; unreachable: %s", *u)
		}
		return errors.New("not registered with the gateway yet")
	}
	return nil
}

// Config configures the member supervisor.
type Config struct {
	MemberID     string
	AdminAddress string
	// Gateways are the gateways' node addresses (--join); the member
	// heartbeats to the one that leads.
	Gateways          []string
	HeartbeatInterval time.Duration
	Restart           RestartPolicy
	Storage           StorageConfig
	// Probe checks that a gateway takes a connection from this member
	// before a heartbeat is handed to the remote layer (package probe;
	// nil: probe.Plaintext, as a node run with --insecure).
	Probe  probe.Func
	Tree   *tree.Registry
	Status *Status
	Logger zerolog.Logger
}

// NewSupervisor returns the producer of the member supervisor actor; spawn
// it named messages.MemberActor.
func NewSupervisor(cfg Config) actor.Producer {
	if cfg.Probe == nil {
		cfg.Probe = probe.Plaintext
	}
	return func() actor.Actor { return &supervisor{cfg: cfg} }
}

type supervisor struct {
	cfg       Config
	homing    *membership.Homing
	reach     *membership.Reach
	storage   *actor.PID
	stopBeats func()
	endpoints *eventstream.Subscription
	// toldLegacy: the log said once that a gateway answered heartbeats
	// at the legacy name.
	toldLegacy bool
}

// gatewayLost reports that the connection to a gateway broke.
type gatewayLost struct{ address string }

// gatewayProbed reports whether a gateway took a connection from this
// member (membership.Reach).
type gatewayProbed struct {
	address string
	err     error
}

type heartbeatTick struct{}

func (s *supervisor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.homing = membership.NewHoming(s.cfg.Gateways)
		s.reach = membership.NewReach()
		s.spawnStorage(ctx)
		s.stopBeats = ticker.Every(ctx.ActorSystem().Root, 0, s.cfg.HeartbeatInterval, ctx.Self(), heartbeatTick{})
		self, root := ctx.Self(), ctx.ActorSystem().Root
		s.endpoints = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				root.Send(self, &gatewayLost{address: e.Address})
			}
		})
	case *actor.Stopping, *actor.Restarting:
		if s.stopBeats != nil {
			s.stopBeats()
		}
		if s.endpoints != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(s.endpoints)
		}
	case heartbeatTick:
		s.heartbeat(ctx)
	case *gatewayLost:
		s.reach.Lost(msg.address)
		s.homing.Lost(msg.address)
	case *gatewayProbed:
		s.probed(ctx, msg)
	case *actor.DeadLetterResponse:
		s.deadLetter(msg)
	case *messages.HeartbeatAck:
		before := s.homing.Target()
		now := s.homing.Answered(msg.GetRedirect(), msg.GetLeader())
		switch after := s.homing.Target(); {
		case now:
			s.cfg.Logger.Info().Str("from", before).Str("to", after).Msg("heartbeating to another gateway: the one that leads")
			s.heartbeat(ctx) // at once: re-home within a heartbeat
		case after != before:
			s.cfg.Logger.Debug().Str("from", before).Str("to", after).Msg("gateway knows no leader; trying the next at the next heartbeat")
		}
		if msg.GetRedirect() {
			return
		}
		s.answeredAtLegacyName()
		if !s.cfg.Status.Registered.Swap(true) {
			s.cfg.Logger.Info().Uint32("slot", msg.GetSlot()).Str("gateway", s.homing.Target()).Msg("registered with gateway")
		}
		s.cfg.Status.Slot.Store(msg.GetSlot())
		s.cfg.Status.setGateway(s.homing.Target())
	case *messages.TreeRequest:
		ctx.Respond(&messages.TreeReply{Tree: s.cfg.Tree.Local(ctx.ActorSystem().Address(), "member", s.cfg.MemberID)})
	}
}

func (s *supervisor) spawnStorage(ctx actor.Context) {
	props := s.cfg.Tree.Props("storage", NewStorage(s.cfg.Storage, s.cfg.Status, s.cfg.Logger))
	pid, err := ctx.SpawnNamed(props, "storage")
	if err != nil {
		// Only a name clash can fail here, which would be a bug in this
		// package; crash the supervisor so it shows.
		panic(err)
	}
	s.storage = pid
}

// deadLetter follows a heartbeat that came back as a dead letter. One the
// gateway itself returned (no Target; the local remote layer names the
// target when it could not reach the gateway, and homing learns of that
// from the broken connection) means the gateway has no actor under the
// name tried: a gateway older than this member knows only the legacy
// name (and one still starting, neither yet), so the next heartbeat goes
// to the other name.
func (s *supervisor) deadLetter(msg *actor.DeadLetterResponse) {
	if msg.GetTarget() != nil {
		return
	}
	s.homing.NoActor()
	s.cfg.Logger.Debug().Str("gateway", s.homing.Target()).Str("actor", s.homing.Actor()).
		Msg("heartbeat came back as a dead letter: trying the gateway's other name for the membership actor")
}

// answeredAtLegacyName logs, once, that a gateway answered heartbeats
// under the membership actor's old name.
func (s *supervisor) answeredAtLegacyName() {
	if s.toldLegacy || s.homing.Actor() != messages.LegacyMembershipActor {
		return
	}
	s.toldLegacy = true
	s.cfg.Logger.Info().Str("gateway", s.homing.Target()).
		Msg("heartbeating to this gateway at leader/members: it had no actor at membership (a gateway older than this member, or one still starting)")
}

// heartbeat makes the heartbeat that is due: to the gateway homing names,
// once that gateway is known to accept connections (membership.Reach).
func (s *supervisor) heartbeat(ctx actor.Context) {
	s.homing.Sent()
	switch target := s.homing.Target(); s.reach.Contact(target) {
	case membership.ContactSend:
		s.sendHeartbeat(ctx)
	case membership.ContactProbe:
		s.probe(ctx, target)
	}
}

// probe checks off the actor that a gateway takes a connection from this
// member (Config.Probe); the outcome comes back as gatewayProbed. The
// probe is bounded by two heartbeats: by then homing has moved on from a
// gateway that does not answer anyway.
func (s *supervisor) probe(ctx actor.Context, address string) {
	self, root, limit := ctx.Self(), ctx.ActorSystem().Root, 2*s.cfg.HeartbeatInterval
	check := s.cfg.Probe
	go func() { root.Send(self, &gatewayProbed{address: address, err: check(address, limit)}) }()
}

// probed follows a probe: a gateway that is up and still the target gets
// its heartbeat now (the one that was due); one that is down is left for
// the next gateway at once. Why gateways are unreachable goes to the
// member's Status (its /readyz), and to the log when it changes (a
// refused connection only at debug level: the gateway is not running).
func (s *supervisor) probed(ctx actor.Context, msg *gatewayProbed) {
	if s.reach.Probed(msg.address, msg.err) {
		s.cfg.Status.setUnreachable(s.reach.Unreachable())
		if msg.err != nil {
			probe.FailureEvent(&s.cfg.Logger, msg.err).Str("gateway", msg.address).Err(msg.err).Msg("gateway unreachable")
		}
	}
	if msg.address != s.homing.Target() {
		return
	}
	if msg.err != nil {
		s.homing.Lost(msg.address)
		return
	}
	s.sendHeartbeat(ctx)
}

// sendHeartbeat sends a heartbeat to the gateway homing names.
func (s *supervisor) sendHeartbeat(ctx actor.Context) {
	st := s.cfg.Status
	ctx.Request(actor.NewPID(s.homing.Target(), s.homing.Actor()), &messages.MemberHeartbeat{
		MemberId:      s.cfg.MemberID,
		NodeAddress:   ctx.ActorSystem().Address(),
		AdminAddress:  s.cfg.AdminAddress,
		StorageReady:  st.StorageReady.Load(),
		Messages:      st.Messages.Load(),
		Bytes:         st.Bytes.Load(),
		WritesRefused: st.WritesRefused(),
		DiskFreeBytes: st.DiskFree(),
	})
}

// HandleFailure makes the supervisor its children's supervision strategy:
// restart the storage actor after an exponential backoff, at most
// MaxRestarts times within Window, then stop it.
func (s *supervisor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason interface{}, message interface{}) {
	policy := s.cfg.Restart
	rs.Fail()
	failures := rs.NumberOfFailures(policy.Window)
	text, stack := tree.Reason(reason)
	log := s.cfg.Logger.With().Str("actor", child.Id).Str("reason", text).Str("stack", stack).Int("failures_in_window", failures).Logger()
	if failures > policy.MaxRestarts {
		log.Error().Dur("window", policy.Window).Msg("actor keeps crashing; stopping it")
		s.cfg.Status.GaveUp.Store(true)
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	backoff := policy.Backoff(failures)
	log.Error().Dur("backoff", backoff).Msg("actor crashed; restarting it")
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
	time.AfterFunc(backoff, func() { sup.RestartChildren(child) })
}
