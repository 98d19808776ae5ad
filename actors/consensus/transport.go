package consensus

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/cluster/probe"
	"github.com/tolerex/tolerex/messages"
)

// peers is the Raft transport: it knows every gateway's node address,
// gathers the Raft messages of one turn into one RaftBatch per gateway,
// and keeps snapshot messages for the node to send (in chunks).
//
// It sends through protoactor's remote layer only to a gateway known to be
// up. protoactor starts a connection attempt for every send to a dead
// address (ARCHITECTURE §9), and after a failed one its endpoint writer
// sleeps 2 s before it reports the endpoint gone, holding back (and then
// dropping) everything sent to that address meanwhile: a gateway that came
// back just after such an attempt was deaf to this one for up to 2 s. So a
// gateway is *down* from the start, and again whenever its connection
// broke, until it takes a connection from this one (a probe, made off the
// actor at most once per downProbeInterval: with TLS the remote layer's
// mutual-TLS handshake, see package probe) or a message from it arrives;
// what Raft sends it meanwhile is dropped, which Raft takes as messages
// lost on the way and sends again. A probe's error is kept as the reason
// the gateway is unreachable (for /readyz and /api/raft): a certificate
// from another cluster then reads as such, and is not dialled every 2 s.
//
// It also holds back commit notices. Each time the commit index moves, a
// leader's raft sends every follower an append message without entries
// that only carries the new commit index; under load that is one more
// message each way per follower for every Raft entry, half of all the
// group's traffic (measured: 1,924 of 3,813 appends a second at SET 64).
// Such a notice is kept until releaseNotices (the node calls it
// commitNoticeDelay after the first one was held) and dropped if a later
// append to the same gateway goes out first: that one carries a commit
// index at least as high and is answered the same way, so the follower
// loses nothing but a few milliseconds of knowing what is committed, which
// no client waits for (the leader decides commits; reads are served by the
// leader). To raft a dropped notice is a message lost on the way, which it
// is built to tolerate; the heartbeats carry the commit index too.
type peers struct {
	self    uint64
	log     zerolog.Logger
	byID    map[uint64]*peer
	pending map[uint64][][]byte
	snaps   []*raftpb.Message
	// notices are the commit notices held back, by gateway: the latest
	// only, as a later one carries everything an earlier one does.
	notices map[uint64]*raftpb.Message
}

type peer struct {
	id        uint64
	address   string
	pid       *actor.PID
	down      bool
	probing   bool // a probe in flight
	lastProbe time.Time
	// unreachable is why the last probe failed ("" after a good one).
	unreachable string
}

// downProbeInterval is how often a gateway that is down is probed, and
// probeTimeout how long a probe may wait for its connection.
const (
	downProbeInterval = 200 * time.Millisecond
	probeTimeout      = time.Second
)

// peerProbed is a probe's outcome, for the consensus actor.
type peerProbed struct {
	address string
	err     error
}

func newPeers(self uint64, log zerolog.Logger) *peers {
	return &peers{self: self, log: log, byID: make(map[uint64]*peer), pending: make(map[uint64][][]byte),
		notices: make(map[uint64]*raftpb.Message)}
}

// set records a gateway's node address.
func (p *peers) set(id uint64, address string) {
	if id == p.self || address == "" {
		return
	}
	if old, ok := p.byID[id]; ok && old.address == address {
		return
	}
	p.byID[id] = &peer{id: id, address: address, pid: actor.NewPID(address, messages.ConsensusActor), down: true}
}

func (p *peers) remove(id uint64) { delete(p.byID, id) }

// learn records the address of a gateway that sent a message, if it is
// not known yet: a gateway that joins a group hears from the leader before
// it has applied the configuration that names the leader's address.
func (p *peers) learn(id uint64, sender *actor.PID) {
	if sender == nil || id == 0 {
		return
	}
	if _, known := p.byID[id]; !known {
		p.set(id, sender.Address)
	}
}

// pid is a gateway's consensus actor, nil if its address is unknown.
func (p *peers) pid(id uint64) *actor.PID {
	if pr, ok := p.byID[id]; ok {
		return pr.pid
	}
	return nil
}

// address is a gateway's node address, "" if unknown.
func (p *peers) address(id uint64) string {
	if pr, ok := p.byID[id]; ok {
		return pr.address
	}
	return ""
}

// idOf is the Raft id of the gateway at a node address.
func (p *peers) idOf(address string) (uint64, bool) {
	for id, pr := range p.byID {
		if pr.address == address {
			return id, true
		}
	}
	return 0, false
}

// send queues a Raft message for its gateway, or holds it back if it is
// a commit notice.
func (p *peers) send(m *raftpb.Message) {
	switch {
	case m.GetType() == raftpb.MsgSnap:
		p.snaps = append(p.snaps, m)
		return
	case isCommitNotice(m):
		p.notices[m.GetTo()] = m
		return
	case m.GetType() == raftpb.MsgApp:
		delete(p.notices, m.GetTo()) // this append carries the commit index too
	}
	p.queue(m)
}

// isCommitNotice reports an append message without entries: one that
// only tells a follower the commit index.
func isCommitNotice(m *raftpb.Message) bool {
	return m.GetType() == raftpb.MsgApp && len(m.GetEntries()) == 0
}

// holdsNotices reports commit notices held back.
func (p *peers) holdsNotices() bool { return len(p.notices) > 0 }

// releaseNotices queues the commit notices held back, for the next flush.
func (p *peers) releaseNotices() {
	for to, m := range p.notices {
		delete(p.notices, to)
		p.queue(m)
	}
}

func (p *peers) queue(m *raftpb.Message) {
	data, err := proto.Marshal(m)
	if err != nil {
		p.log.Error().Err(err).Msg("encode raft message")
		return
	}
	p.pending[m.GetTo()] = append(p.pending[m.GetTo()], data)
}

// down marks the gateway at address unreachable and tells raft.
func (p *peers) down(address string, n *node) {
	id, ok := p.idOf(address)
	if !ok {
		return
	}
	pr := p.byID[id]
	if !pr.down {
		p.log.Warn().Uint64("gateway", id).Str("address", address).Msg("connection to gateway lost")
	}
	pr.down = true
	if n.rn != nil {
		n.rn.ReportUnreachable(id)
	}
}

// heard marks a gateway reachable: a message from it arrived. It reports
// whether the gateway was down.
func (p *peers) heard(id uint64) bool {
	pr, ok := p.byID[id]
	if !ok || !pr.down {
		return false
	}
	pr.down, pr.unreachable = false, ""
	p.log.Info().Uint64("gateway", id).Str("address", pr.address).Msg("gateway reachable")
	return true
}

// probed records a probe's outcome: a gateway that accepted the
// connection is reachable.
func (p *peers) probed(msg *peerProbed) {
	id, ok := p.idOf(msg.address)
	if !ok {
		return
	}
	pr := p.byID[id]
	pr.probing = false
	if msg.err != nil {
		if reason := msg.err.Error(); reason != pr.unreachable {
			pr.unreachable = reason
			probe.FailureEvent(&p.log, msg.err).Uint64("gateway", id).Str("address", pr.address).Err(msg.err).Msg("gateway unreachable")
		}
		return
	}
	pr.unreachable = ""
	if pr.down {
		pr.down = false
		p.log.Info().Uint64("gateway", id).Str("address", pr.address).Msg("gateway reachable (took a probe connection)")
	}
}

// probesDue lists the addresses of the gateways that are down and due a
// probe (at most one in flight and one per downProbeInterval for each),
// and counts those probes as started.
func (p *peers) probesDue(now time.Time) []string {
	var due []string
	for _, pr := range p.byID {
		if !pr.down || pr.probing || now.Sub(pr.lastProbe) < downProbeInterval {
			continue
		}
		pr.probing, pr.lastProbe = true, now
		due = append(due, pr.address)
	}
	return due
}

// up is the gateway with this id if it is known and up, else nil.
func (p *peers) up(id uint64) *peer {
	if pr, ok := p.byID[id]; ok && !pr.down {
		return pr
	}
	return nil
}

// unreachableReasons says, by gateway id, why each gateway that is down
// failed its last probe ("" when none did).
func (p *peers) unreachableReasons() string {
	var reasons []string
	for _, id := range slices.Sorted(maps.Keys(p.byID)) {
		if pr := p.byID[id]; pr.down && pr.unreachable != "" {
			reasons = append(reasons, fmt.Sprintf("gateway %d at %s: %s", id, pr.address, pr.unreachable))
		}
	}
	return strings.Join(reasons, "; ")
}

// flush sends what the turn queued to the gateways that are up, and
// probes (off the actor, with check) those that are down; each outcome
// comes back as a peerProbed.
func (p *peers) flush(ctx actor.Context, check probe.Func) {
	for _, address := range p.probesDue(time.Now()) {
		root, self := ctx.ActorSystem().Root, ctx.Self()
		go func() { root.Send(self, &peerProbed{address: address, err: check(address, probeTimeout)}) }()
	}
	for to, msgs := range p.pending {
		delete(p.pending, to)
		pr := p.up(to)
		if pr == nil {
			continue // not known (yet), or down: raft will send again
		}
		// As a request, so the receiver learns this gateway's address even
		// before it applied the change that added it.
		ctx.Request(pr.pid, &messages.RaftBatch{Messages: msgs})
	}
}

// takeSnapshots returns the snapshot messages raft asked to send since the
// last call; the node sends them (snapshots.go).
func (p *peers) takeSnapshots() []*raftpb.Message {
	snaps := p.snaps
	p.snaps = nil
	return snaps
}

// receiveBatch steps the Raft messages another gateway sent.
func (n *node) receiveBatch(ctx actor.Context, b *messages.RaftBatch) {
	for _, data := range b.GetMessages() {
		var m raftpb.Message
		if err := proto.Unmarshal(data, &m); err != nil {
			n.log.Warn().Err(err).Msg("undecodable raft message; dropped")
			continue
		}
		if n.fromRemoved(ctx, m.GetFrom()) {
			return
		}
		n.peers.learn(m.GetFrom(), ctx.Sender())
		if n.peers.heard(m.GetFrom()) {
			n.reportReach()
		}
		if n.lostData(ctx, &m) {
			return
		}
		if n.refusesEntries(&m) {
			continue // disk full: as if lost on the way (disk.go)
		}
		if err := n.rn.Step(&m); err != nil && err != raft.ErrStepPeerNotFound {
			n.log.Debug().Err(err).Stringer("type", m.GetType()).Uint64("from", m.GetFrom()).Msg("step")
		}
	}
}

// lostData reports (and stops consensus over) a leader's heartbeat that
// says this gateway acknowledged entries its log does not hold: its data
// dir was lost or replaced while the group kept it as a member. Raft
// cannot repair that (it would panic, and restart, and panic again): the
// gateway must leave the group and join again under a new id.
func (n *node) lostData(ctx actor.Context, m *raftpb.Message) bool {
	if m.GetType() != raftpb.MsgHeartbeat {
		return false
	}
	last, err := n.raftLog.Storage().LastIndex()
	if err != nil || m.GetCommit() <= last {
		return false
	}
	n.unavailable(ctx, fmt.Errorf("the leader (gateway %d) says this gateway (id %d) acknowledged the log up to index %d, but its log ends at %d: "+
		"its data was lost or replaced. Remove it from the group (tolerex cluster remove-gateway %d), then start it on an empty data dir "+
		"with a new --gateway-id and --initial-cluster-state existing, and add it (tolerex cluster add-gateway)",
		m.GetFrom(), n.cfg.ID, m.GetCommit(), last, n.cfg.ID))
	n.rn = nil
	if n.stopTicks != nil {
		n.stopTicks()
	}
	return true
}

// reportReach tells the gateway's Health why the gateways that are down
// are unreachable, for /readyz.
func (n *node) reportReach() {
	if n.cfg.Health != nil {
		n.cfg.Health.setUnreachable(n.peers.unreachableReasons())
	}
}
