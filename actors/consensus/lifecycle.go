package consensus

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/raftlog"
)

// Health is what the consensus actor publishes for readiness checks
// without a round trip through its mailbox.
type Health struct {
	lead     atomic.Uint64
	problem  atomic.Pointer[string]
	diskFull atomic.Pointer[string]
	// unreachable says why the gateways found down are unreachable.
	unreachable atomic.Pointer[string]
}

// Lead returns the Raft id of the leader this gateway knows (0: none).
func (h *Health) Lead() uint64 { return h.lead.Load() }

// NotReady says why this gateway's consensus cannot serve (its Raft log
// cannot be read, or no leader is known), or nil.
func (h *Health) NotReady() error {
	if p := h.problem.Load(); p != nil {
		return errors.New(*p)
	}
	if p := h.diskFull.Load(); p != nil {
		return errors.New(*p)
	}
	if h.lead.Load() == 0 {
		if u := h.unreachable.Load(); u != nil {
			return fmt.Errorf("no Raft leader known; unreachable: %s", *u)
		}
		return errors.New("no Raft leader known")
	}
	return nil
}

// problemText is the problem, "" if none (or h is nil).
func (h *Health) problemText() string {
	if h == nil {
		return ""
	}
	if p := h.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// setDiskFull records why the Raft log takes no new entries ("": it
// does).
func (h *Health) setDiskFull(reason string) { storeReason(&h.diskFull, reason) }

func (h *Health) setProblem(problem string) { storeReason(&h.problem, problem) }

// setUnreachable records why the gateways found down are unreachable
// ("": none is, or none was probed).
func (h *Health) setUnreachable(reasons string) { storeReason(&h.unreachable, reasons) }

// storeReason stores reason in p, or nil for "".
func storeReason(p *atomic.Pointer[string], reason string) {
	if reason == "" {
		p.Store(nil)
		return
	}
	p.Store(&reason)
}

// raftMaxMessageBytes bounds the entries in one append message, and
// raftMaxInflight the append messages in flight to one follower.
const (
	raftMaxMessageBytes = 1 << 20
	raftMaxInflight     = 256
	// raftMaxUncommitted bounds the entries a leader holds proposed and not
	// committed; proposals beyond are dropped (the client hears an error).
	raftMaxUncommitted = 256 << 20
)

func (n *node) start(ctx actor.Context) {
	n.self, n.root = ctx.Self(), ctx.ActorSystem().Root
	n.peers = newPeers(n.cfg.ID, n.log)
	n.barriers = newBarriers()
	n.inbound = newSnapshotAssembly()
	n.outbound = make(map[uint64]sentSnapshot)
	n.disk = newDiskGuard(n.cfg)
	if n.waitForSpace(ctx) {
		return
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	lg, err := raftlog.Open(n.cfg.Dir, raftlog.Options{
		Sync:       n.cfg.Sync,
		FS:         n.cfg.FS,
		Logger:     n.log,
		OnWritten:  func(batch []raftlog.Written) { root.Send(self, &written{batch: batch}) },
		OnSnapshot: func(index uint64, err error) { root.Send(self, &snapshotStored{index: index, err: err}) },
	})
	if err != nil {
		n.unavailable(ctx, err)
		return
	}
	n.raftLog = lg
	n.checkDisk()
	if err := n.restoreFromStorage(); err != nil {
		n.unavailable(ctx, err)
		return
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        n.cfg.ID,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             n.cfg.HeartbeatTicks,
		Storage:                   lg.Storage(),
		Applied:                   n.applied,
		AsyncStorageWrites:        true,
		MaxSizePerMsg:             raftMaxMessageBytes,
		MaxInflightMsgs:           raftMaxInflight,
		MaxUncommittedEntriesSize: raftMaxUncommitted,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		// Client requests reach the leader through the gateways' own
		// routing, under request ids; a proposal raft forwarded from a
		// gateway that just lost leadership would be a copy nobody
		// waits for. Refused instead, it is given back and re-routed.
		DisableProposalForwarding: true,
		Logger:                    raftLogger{log: n.log.With().Str("lib", "raft").Logger()},
	})
	if err != nil {
		n.unavailable(ctx, fmt.Errorf("start raft: %w", err))
		return
	}
	n.rn = rn
	if lg.Empty() && !n.cfg.Join {
		if err := n.bootstrap(); err != nil {
			n.unavailable(ctx, err)
			return
		}
	}
	for _, p := range n.cfg.Peers {
		n.peers.set(p.ID, p.NodeAddress)
	}
	for _, g := range n.cfg.View.own().Gateways() {
		n.peers.set(g.ID, g.NodeAddress)
	}
	n.stopTicks = ticker.Every(ctx.ActorSystem().Root, n.cfg.TickInterval, n.cfg.TickInterval, self, tick{})
	n.endpoints = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
			root.Send(self, &endpointDown{address: e.Address})
		}
	})
	hs, cs, _ := lg.Storage().InitialState()
	n.log.Info().Uint64("term", hs.GetTerm()).Uint64("commit", hs.GetCommit()).Uint64("applied", n.applied).
		Uints64("voters", cs.GetVoters()).Uints64("learners", cs.GetLearners()).Bool("join", n.cfg.Join).
		Int("messages", n.cfg.View.own().Len()).Msg("consensus started")
}

// restoreFromStorage loads the state machine from the stored snapshot:
// raft then hands the entries after it to apply again.
func (n *node) restoreFromStorage() error {
	snap, err := n.raftLog.Storage().Snapshot()
	if err != nil {
		return fmt.Errorf("read raft snapshot: %w", err)
	}
	n.confState = &raftpb.ConfState{}
	if raft.IsEmptySnap(snap) {
		n.cfg.View.replace(meta.New())
		return nil
	}
	data, err := n.raftLog.SnapshotData(snap.GetMetadata().GetIndex())
	if err != nil {
		return fmt.Errorf("read raft snapshot data: %w", err)
	}
	state, err := decodeState(data)
	if err != nil {
		return fmt.Errorf("raft snapshot at %d: %w", snap.GetMetadata().GetIndex(), err)
	}
	n.cfg.View.replace(state)
	n.applied = snap.GetMetadata().GetIndex()
	n.snapshotIndex = n.applied
	n.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*raftpb.ConfState)
	return nil
}

// bootstrap starts a new group with the configured peers as voters.
func (n *node) bootstrap() error {
	peers := make([]raft.Peer, 0, len(n.cfg.Peers))
	for _, p := range n.cfg.Peers {
		info, err := proto.Marshal(&messages.GatewayInfo{Id: p.ID, NodeAddress: p.NodeAddress})
		if err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		peers = append(peers, raft.Peer{ID: p.ID, Context: info})
	}
	if err := n.rn.Bootstrap(peers); err != nil {
		return fmt.Errorf("bootstrap raft group: %w", err)
	}
	n.log.Info().Int("voters", len(peers)).Msg("new Raft group bootstrapped")
	return nil
}

// unavailable leaves the actor up without Raft: the log cannot be read,
// and restarting would fail the same way.
func (n *node) unavailable(ctx actor.Context, err error) {
	reason := "raft log unusable: " + err.Error()
	n.log.Error().Err(err).Str("dir", n.cfg.Dir).Msg("consensus cannot run; this gateway serves nothing until its Raft log is repaired (see the reason)")
	if h := n.cfg.Health; h != nil {
		h.setProblem(reason)
	}
	n.publish(ctx, &Unavailable{Reason: reason})
	if n.raftLog != nil {
		if err := n.raftLog.Close(); err != nil {
			n.log.Error().Err(err).Msg("close raft log")
		}
		n.raftLog = nil
	}
}

func (n *node) stop(ctx actor.Context, reason string) {
	if n.stopTicks != nil {
		n.stopTicks()
	}
	if n.endpoints != nil {
		ctx.ActorSystem().EventStream.Unsubscribe(n.endpoints)
	}
	if n.barriers != nil {
		n.barriers.failAll(ctx, reason)
	}
	if n.raftLog != nil {
		if err := n.raftLog.Close(); err != nil {
			n.log.Error().Err(err).Msg("close raft log")
		}
		n.raftLog = nil
	}
	n.rn = nil
	if h := n.cfg.Health; h != nil {
		h.lead.Store(0)
	}
	// Until a restart says otherwise, no leader is known: a leader actor
	// ends its term and gives its requests back (the subscribers outlive
	// a restart: restartState).
	n.publish(ctx, &LeaderChanged{})
	// Stopped for good (Strategy: it kept crashing): nothing will be led
	// here until the gateway restarts, so requests are refused at once.
	if p := n.cfg.Health.problemText(); p != "" {
		n.publish(ctx, &Unavailable{Reason: p})
	}
}

// refuseWithoutRaft answers a request that expects a reply while Raft does
// not run here (the log is unusable, consensus stopped for good or left
// the group, or it waits for disk space), so that the asker, such as the
// admin API of a removed gateway, learns why at once instead of waiting
// out its timeout. Other messages (Raft traffic, proposals and read
// barriers, which the leader actor stopped sending on Unavailable) are
// dropped.
func (n *node) refuseWithoutRaft(ctx actor.Context, msg any) {
	reason := n.cfg.Health.problemText()
	retry := reason == ""
	if retry {
		reason = "consensus is not running on this gateway"
		if h := n.cfg.Health; h != nil {
			if err := h.NotReady(); err != nil {
				reason = err.Error()
			}
		}
	}
	switch msg.(type) {
	case *messages.GatewayChange:
		ctx.Respond(&messages.GatewayChangeReply{Error: "this gateway takes no part in the Raft group: " + reason, Retry: retry})
	case *TransferLeadership:
		ctx.Respond(errors.New("this gateway takes no part in the Raft group: " + reason))
	}
}

// subscribe adds the sender to the subscribers (once: a restarted actor
// keeps its PID) and tells it who leads and, on a leader, whether its
// leadership is ready.
func (n *node) subscribe(ctx actor.Context) {
	sender := ctx.Sender()
	if sender == nil {
		return
	}
	if !slices.ContainsFunc(n.kept.subscribers, sender.Equal) {
		n.kept.subscribers = append(n.kept.subscribers, sender)
	}
	if n.rn == nil {
		switch p := n.cfg.Health.problemText(); {
		case p != "":
			ctx.Send(sender, &Unavailable{Reason: p})
		case n.kept.noSpace && n.diskFull != "":
			ctx.Send(sender, &Unavailable{Reason: n.diskFull})
		}
		return
	}
	ctx.Send(sender, n.leaderChanged())
	if n.ready {
		ctx.Send(sender, &LeadershipReady{Term: n.term})
	}
}

func (n *node) publish(ctx actor.Context, msg any) {
	for _, s := range n.kept.subscribers {
		ctx.Send(s, msg)
	}
}

func (n *node) leaderChanged() *LeaderChanged {
	return &LeaderChanged{Lead: n.lead, LeadAddress: n.leadAddress(), Term: n.term, Local: n.isLeader}
}

// leadAddress is the node address of the leader, "" if none is known.
func (n *node) leadAddress() string {
	if n.lead == n.cfg.ID {
		return n.cfg.NodeAddress
	}
	return n.peers.address(n.lead)
}

func (n *node) tick(ctx actor.Context) {
	if n.rn == nil {
		return
	}
	n.ticks++
	now := time.Now()
	if m := n.cfg.Metrics; m != nil && !n.lastTick.IsZero() {
		m.TickInterval.Observe(now.Sub(n.lastTick).Seconds())
	}
	n.lastTick = now
	n.checkDisk()
	n.rn.Tick()
	n.handOverIfAside()
	n.barriers.retry(n)
	n.expireSnapshots()
	n.processReady(ctx)
	n.sendQueued(ctx)
}

// handOverIfAside starts a leadership transfer if this gateway leads but
// must not (mustNotLead) and no transfer is under way: whenever it leads,
// not only when the reason arose, since a gateway that handed over may be
// elected again (a transfer to it, or an election its log wins). A transfer
// that does not complete within an election timeout is dropped by Raft and
// started again on the next tick. The first attempt and the first failure
// of each term are logged.
func (n *node) handOverIfAside() {
	if n.rn == nil {
		return
	}
	reason, consequence := n.mustNotLead()
	if reason == "" {
		return
	}
	st := n.rn.BasicStatus()
	if !n.isLeader || st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
		return
	}
	to, err := n.startTransfer(0)
	if err != nil {
		if n.handOverFailedTerm != n.term {
			n.handOverFailedTerm = n.term
			n.log.Warn().Err(err).Uint64("term", n.term).Str("reason", reason).Msg("could not hand leadership over; " + consequence)
		}
		return
	}
	if n.handOverTerm != n.term {
		n.handOverTerm = n.term
		n.log.Info().Uint64("term", n.term).Uint64("to", to).Str("reason", reason).Msg("handing leadership over: this gateway must not lead")
	}
}

// mustNotLead says why this gateway must not lead, and what follows while
// it does; "" when it may lead.
func (n *node) mustNotLead() (reason, consequence string) {
	switch {
	case n.kept.stepAside != "":
		return "stepping aside: " + n.kept.stepAside, "this gateway leads without a coordinator"
	case n.diskFull != "":
		return n.diskFull, "this gateway refuses writes while it leads"
	}
	return "", ""
}
