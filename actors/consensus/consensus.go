// Package consensus is a gateway's part of the gateways' Raft group: one
// actor owns an etcd raft RawNode (go.etcd.io/raft/v3), ticks it from a
// timer message, steps the Raft messages other gateways send it, and runs
// the Ready loop inside Receive. It stores the Raft log through
// storage/raftlog on a goroutine of its own (AsyncStorageWrites: the leader
// sends its entries to followers while it writes them, followers answer
// only once theirs are durable, and a slow disk never holds up a tick),
// applies committed entries to the metadata state machine (actors/meta) on
// every gateway, and tells the local leader actor what happened: who
// leads, what was applied, which reads may go ahead.
package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/cluster/probe"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/diskspace"
	"github.com/tolerex/tolerex/storage/raftlog"
)

// Peer is a gateway of the initial Raft group.
type Peer struct {
	ID          uint64
	NodeAddress string
}

// Config configures the consensus actor.
type Config struct {
	// ID is this gateway's Raft id (not 0).
	ID uint64
	// NodeAddress is this gateway's node address.
	NodeAddress string
	// Peers is the initial group, this gateway included, used only when
	// the Raft log is empty and Join is not set: the group starts with
	// these voters.
	Peers []Peer
	// Join starts a gateway with an empty log that waits to be added to
	// an existing group (it learns the log from the leader).
	Join bool
	// Dir holds the Raft log.
	Dir string
	// Sync fsyncs the Raft log before anything that depends on it; false
	// is unsafe.
	Sync bool
	// TickInterval is the Raft tick; ElectionTicks and HeartbeatTicks are
	// in ticks.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// MinFreeBytes is the free space the Raft log's filesystem must keep:
	// below it the gateway takes no new log entries (disk.go). 0 turns
	// the check off. Statfs, if set, replaces diskspace.Statfs (tests).
	MinFreeBytes uint64
	Statfs       diskspace.StatFunc
	// FS, if set, replaces the operating system's filesystem under the
	// Raft log (tests: one whose fsyncs are slow).
	FS raftlog.FS
	// SnapshotEntries is how many applied entries trigger a snapshot of the
	// state machine (and the log before it is then compacted, but for
	// CatchUpEntries kept for followers that lag a little).
	SnapshotEntries uint64
	CatchUpEntries  uint64
	// View is the state machine, shared read-only with the other actors.
	View *StateView
	// Health, if set, gets this gateway's readiness.
	Health *Health
	// Probe checks that another gateway takes a connection from this one
	// before anything is sent to it (package probe; nil: probe.Plaintext,
	// as a node run with --insecure).
	Probe probe.Func
	// Tree, if set, gives this node's supervision tree; the consensus
	// actor answers other gateways' TreeRequests with it.
	Tree    func() *messages.NodeTree
	Metrics *Metrics
	Logger  zerolog.Logger
}

// Defaults for Config.
const (
	DefaultTickInterval    = 50 * time.Millisecond
	DefaultElectionTicks   = 10
	DefaultHeartbeatTicks  = 1
	DefaultSnapshotEntries = 20_000
	DefaultCatchUpEntries  = 5_000
)

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.ID == 0 {
		return errors.New("consensus: gateway id 0 is not allowed")
	}
	if c.Dir == "" || c.View == nil || c.NodeAddress == "" {
		return errors.New("consensus: needs a directory, a node address and a state view")
	}
	if !c.Join {
		self := false
		seen := make(map[uint64]bool)
		for _, p := range c.Peers {
			if p.ID == 0 || p.NodeAddress == "" || seen[p.ID] {
				return fmt.Errorf("consensus: initial cluster member %d=%q: ids must be distinct and non-zero, addresses given", p.ID, p.NodeAddress)
			}
			seen[p.ID] = true
			self = self || p.ID == c.ID
		}
		if !self {
			return fmt.Errorf("consensus: the initial cluster does not name this gateway (id %d)", c.ID)
		}
	}
	if c.Probe == nil {
		c.Probe = probe.Plaintext
	}
	if c.TickInterval <= 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.HeartbeatTicks >= c.ElectionTicks {
		return fmt.Errorf("consensus: heartbeat ticks %d must be below election ticks %d", c.HeartbeatTicks, c.ElectionTicks)
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.CatchUpEntries == 0 {
		c.CatchUpEntries = DefaultCatchUpEntries
	}
	return nil
}

// New returns the producer of the consensus actor; spawn it named
// messages.ConsensusActor. cfg must be validated.
func New(cfg Config) actor.Producer { return producer(cfg, &restartState{}) }

// producer makes every incarnation of the actor with the same kept state.
func producer(cfg Config, kept *restartState) actor.Producer {
	return func() actor.Actor {
		return &node{cfg: cfg, kept: kept, log: cfg.Logger.With().Str("actor", "consensus").Uint64("raft_id", cfg.ID).Logger()}
	}
}

// restartState is what the consensus actor keeps when its supervisor
// restarts it (a new node is made each time): who subscribed, whether
// the Raft log's last write failed for want of space, and whether this
// gateway must step aside from leading. It is only touched
// on the actor's goroutine.
type restartState struct {
	subscribers []*actor.PID
	noSpace     bool
	// stepAside, once set, is why this gateway must not lead (StepAside).
	stepAside string
}

// node is the consensus actor.
type node struct {
	cfg Config
	log zerolog.Logger

	raftLog *raftlog.Log
	rn      *raft.RawNode
	self    *actor.PID
	root    *actor.RootContext

	kept      *restartState
	stopTicks func()
	endpoints *eventstream.Subscription

	// What has been applied to the state machine, and the configuration
	// as of then (for snapshots).
	applied   uint64
	confState *raftpb.ConfState
	// snapshotIndex is the index of the last snapshot taken or received;
	// snapshotting is set while one is being encoded or stored.
	snapshotIndex uint64
	snapshotting  bool

	lead, term uint64
	isLeader   bool
	// confPending is set while a change of the group this gateway
	// proposed as leader is not applied yet.
	confPending bool
	ready       bool // leader, and the entries of earlier terms are applied

	peers    *peers
	barriers *barriers
	inbound  *snapshotAssembly
	// outbound snapshots waiting for their ack, by follower id: the index
	// sent and when.
	outbound map[uint64]sentSnapshot
	ticks    uint64
	// lastTick is when the last tick was taken, for the tick-interval
	// metric.
	lastTick time.Time
	// handOverTerm is the term in which this gateway last logged a hand-off
	// it must make (handOverIfAside): the first attempt and the first
	// failure of each term are logged, not every retry.
	handOverTerm, handOverFailedTerm uint64
	// noticesDue is set while a releaseNotices is on its way.
	noticesDue bool
	// disk guards the Raft log's free space (set by start); diskFull
	// says why no entries are taken, "" while they are.
	disk     *diskspace.Guard
	diskFull string
	// removedHow, once set, says how this gateway learned that it was
	// removed from the group; the turn ends with leaveGroup (removal.go).
	removedHow string
	// removedNoticed is when each removed gateway was last told so.
	removedNoticed map[uint64]time.Time
}

// Internal messages.
type (
	tick    struct{}
	written struct{ batch []raftlog.Written }
	// snapshotStored reports a snapshot CreateSnapshot stored (or not).
	snapshotStored struct {
		index uint64
		err   error
	}
	// snapshotEncoded carries a snapshot encoded off the actor's goroutine.
	snapshotEncoded struct {
		index uint64
		cs    *raftpb.ConfState
		data  []byte
		err   error
	}
	// snapshotUnsent reports a snapshot that could not be sent: its data
	// could not be read.
	snapshotUnsent struct {
		to, index uint64
		err       error
	}
	endpointDown struct{ address string }
	// releaseNotices sends the commit notices the transport held back.
	releaseNotices struct{}
	// spaceCheck asks whether the Raft log's disk has room again after
	// a write failed with ENOSPC (disk.go).
	spaceCheck struct{}
)

// commitNoticeDelay is how long the transport may hold back a commit
// notice (see peers) for a later append to carry instead. Under load the
// leader proposes a new entry about every millisecond.
const commitNoticeDelay = 5 * time.Millisecond

// Receive handles one message and then whatever Raft has ready.
func (n *node) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		n.start(ctx)
	case *actor.Stopping:
		n.stop(ctx, "consensus stopping")
		return
	case *actor.Restarting:
		n.stop(ctx, "consensus restarting")
		return
	case tick:
		n.tick(ctx)
	case *Subscribe:
		n.subscribe(ctx)
	case *StatusRequest:
		ctx.Respond(n.status())
	case *messages.RaftStatusRequest:
		ctx.Respond(n.raftStatus())
	case *messages.TreeRequest:
		ctx.Respond(&messages.TreeReply{Tree: n.tree()})
	case spaceCheck:
		n.checkSpaceBack(ctx)
	case *InjectPanic:
		panic("consensus: fault injection")
	default:
		if n.rn == nil {
			n.refuseWithoutRaft(ctx, msg)
			return
		}
		n.handle(ctx, msg)
	}
	if n.rn != nil {
		n.processReady(ctx)
		n.sendQueued(ctx)
		if n.removedHow != "" {
			n.leaveGroup(ctx)
		}
	}
}

// sendQueued sends what the turn queued for other gateways, and makes
// sure commit notices held back are released in time.
func (n *node) sendQueued(ctx actor.Context) {
	n.peers.flush(ctx, n.cfg.Probe)
	for _, m := range n.peers.takeSnapshots() {
		n.sendSnapshot(m)
	}
	if n.peers.holdsNotices() && !n.noticesDue {
		n.noticesDue = true
		root, self := n.root, n.self
		time.AfterFunc(commitNoticeDelay, func() { root.Send(self, releaseNotices{}) })
	}
}

func (n *node) handle(ctx actor.Context, msg any) {
	switch msg := msg.(type) {
	case *written:
		n.written(ctx, msg.batch)
	case *messages.RaftBatch:
		n.receiveBatch(ctx, msg)
	case *messages.RaftSnapshotChunk:
		n.receiveChunk(ctx, msg)
	case *messages.RaftSnapshotAck:
		n.snapshotAcked(msg)
	case *messages.GatewayRemovedNotice:
		n.removedNotice(msg)
	case *Propose:
		n.propose(ctx, msg)
	case *ReadBarrier:
		n.barriers.add(ctx, n, msg.ID, ctx.Sender())
	case *TransferLeadership:
		ctx.Respond(n.transfer(msg.To))
	case *StepAside:
		n.kept.stepAside = msg.Reason
		n.log.Warn().Str("reason", msg.Reason).Msg("this gateway cannot coordinate: it hands over its leadership whenever it leads")
		n.handOverIfAside()
		n.processReady(ctx)
	case *messages.GatewayChange:
		n.gatewayChange(ctx, msg)
	case *snapshotEncoded:
		n.snapshotEncoded(msg)
	case *snapshotStored:
		n.snapshotStored(msg)
	case *snapshotUnsent:
		n.snapshotUnsent(msg)
	case *endpointDown:
		n.peers.down(msg.address, n)
	case *peerProbed:
		n.peers.probed(msg)
		n.reportReach()
	case releaseNotices:
		n.noticesDue = false
		n.peers.releaseNotices()
	}
}
