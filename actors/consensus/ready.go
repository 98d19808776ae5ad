package consensus

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/raftlog"
)

// processReady runs the Ready loop (AsyncStorageWrites): appends go to the
// Raft log's committer, committed entries are applied here and now,
// everything else goes to the other gateways. Responses to the appends are
// delivered when the committer reports them durable (written).
func (n *node) processReady(ctx actor.Context) {
	for n.rn != nil && n.rn.HasReady() {
		rd := n.rn.Ready()
		if rd.SoftState != nil {
			n.softState(ctx, rd.SoftState)
		}
		if len(rd.ReadStates) > 0 {
			n.barriers.confirmed(rd.ReadStates)
		}
		for _, m := range rd.Messages {
			switch m.GetTo() {
			case raft.LocalAppendThread:
				n.raftLog.Write(raftlog.Write{HardState: hardStateOf(m), Entries: m.GetEntries(), Snapshot: m.GetSnapshot(), Token: m})
			case raft.LocalApplyThread:
				n.apply(ctx, m.GetEntries())
				n.deliver(m.GetResponses())
			default:
				n.peers.send(m)
			}
		}
		n.barriers.release(ctx, n.applied, n.cfg.Metrics)
	}
}

// hardStateOf is the hard state a MsgStorageAppend carries, or nil.
func hardStateOf(m *raftpb.Message) *raftpb.HardState {
	if m.Term == nil && m.Vote == nil && m.Commit == nil {
		return nil
	}
	return &raftpb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
}

// deliver steps responses addressed to this gateway and sends the rest.
func (n *node) deliver(responses []*raftpb.Message) {
	for _, r := range responses {
		if r.GetTo() == n.cfg.ID {
			if err := n.rn.Step(r); err != nil {
				n.log.Debug().Err(err).Stringer("type", r.GetType()).Msg("step local response")
			}
			continue
		}
		n.peers.send(r)
	}
}

// written handles a group commit of the Raft log: a snapshot received from
// the leader replaces the state machine, then the responses go out.
func (n *node) written(ctx actor.Context, batch []raftlog.Written) {
	n.observeWritten(batch)
	for _, w := range batch {
		m, ok := w.Token.(*raftpb.Message)
		if !ok {
			continue
		}
		if w.Err != nil {
			// The log refuses every later write; crash, and let the
			// supervisor restart the actor, which reopens it; on a full
			// disk once there is room (disk.go, waitForSpace).
			if errors.Is(w.Err, syscall.ENOSPC) {
				n.kept.noSpace = true
			}
			panic(fmt.Errorf("raft log write failed: %w", w.Err))
		}
		if snap := m.GetSnapshot(); !raft.IsEmptySnap(snap) {
			n.installSnapshot(ctx, snap)
		}
		n.deliver(m.GetResponses())
	}
}

// observeWritten records how long a group commit of the Raft log took,
// and each of its appends.
func (n *node) observeWritten(batch []raftlog.Written) {
	m := n.cfg.Metrics
	if m == nil || len(batch) == 0 || batch[0].Err != nil {
		return
	}
	if batch[0].Synced {
		m.LogSyncSeconds.Observe(batch[0].Commit.Seconds())
	}
	for _, w := range batch {
		if msg, ok := w.Token.(*raftpb.Message); ok && len(msg.GetEntries()) > 0 {
			m.LogAppendSeconds.Observe((w.Queued + w.Commit).Seconds())
		}
	}
}

// installSnapshot replaces the state machine with a snapshot the leader
// sent (and the Raft log just stored).
func (n *node) installSnapshot(ctx actor.Context, snap *raftpb.Snapshot) {
	index := snap.GetMetadata().GetIndex()
	if index <= n.applied {
		return
	}
	state, err := decodeState(snap.GetData())
	if err != nil {
		// Raft already holds the snapshot; a state machine without it would
		// silently diverge. Crash: the restart loads it from the log and
		// fails the same way, which makes the gateway not ready.
		panic(fmt.Errorf("install raft snapshot at %d: %w", index, err))
	}
	n.cfg.View.replace(state)
	n.applied, n.snapshotIndex = index, index
	n.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*raftpb.ConfState)
	for _, g := range state.Gateways() {
		n.peers.set(g.ID, g.NodeAddress)
	}
	n.log.Info().Uint64("index", index).Int("messages", state.Len()).Msg("state machine replaced by the leader's snapshot")
	n.publish(ctx, &Applied{})
}

// apply applies committed entries to the state machine, in order, and
// tells the subscribers.
func (n *node) apply(ctx actor.Context, entries []*raftpb.Entry) {
	started := time.Now()
	var applied []AppliedEntry
	n.cfg.View.update(func(s *meta.State) {
		for _, e := range entries {
			if e.GetIndex() <= n.applied {
				continue // in a snapshot installed meanwhile
			}
			n.applied = e.GetIndex()
			switch e.GetType() {
			case raftpb.EntryNormal:
				if len(e.GetData()) == 0 {
					// The empty entry a new leader appends: everything of
					// earlier terms is applied now.
					if n.isLeader && e.GetTerm() == n.term && !n.ready {
						n.ready = true
						n.publish(ctx, &LeadershipReady{Term: n.term})
					}
					continue
				}
				applied = n.applyNormal(s, e, applied)
			case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
				n.applyConfChange(s, e)
			}
		}
	})
	if m := n.cfg.Metrics; m != nil {
		m.ApplySeconds.Observe(time.Since(started).Seconds())
		m.Applied.Set(float64(n.applied))
		first, _ := n.raftLog.Storage().FirstIndex()
		last, _ := n.raftLog.Storage().LastIndex()
		m.LogEntries.Set(float64(last + 1 - first))
		m.LogMemoryBytes.Set(float64(n.raftLog.Stats().MemoryBytes))
	}
	if len(applied) > 0 {
		n.publish(ctx, &Applied{Entries: applied})
	}
	n.maybeSnapshot(ctx)
}

// applyNormal applies the metadata entries of one Raft log entry (a
// LogBatch). Apply is total: a batch that cannot be decoded, or an entry
// the state machine rejects, is skipped, counted and logged, the same way
// on every gateway.
func (n *node) applyNormal(s *meta.State, e *raftpb.Entry, out []AppliedEntry) []AppliedEntry {
	var batch messages.LogBatch
	if err := proto.Unmarshal(e.GetData(), &batch); err != nil {
		n.rejected(e.GetIndex(), fmt.Errorf("decode: %w", err))
		return out
	}
	for _, le := range batch.GetEntries() {
		ae := AppliedEntry{Index: e.GetIndex(), Entry: le}
		ae.Effect, ae.Err = s.Apply(le)
		if ae.Err != nil {
			n.rejected(e.GetIndex(), ae.Err)
		}
		out = append(out, ae)
	}
	return out
}

// rejected counts and logs an entry the state machine rejected.
func (n *node) rejected(index uint64, err error) {
	if m := n.cfg.Metrics; m != nil {
		m.Rejected.Inc()
	}
	n.log.Error().Err(err).Uint64("index", index).Msg("log entry rejected by the state machine; skipped (it changes nothing, on every gateway)")
}

// applyConfChange applies a membership change of the Raft group.
func (n *node) applyConfChange(s *meta.State, e *raftpb.Entry) {
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryConfChange {
		var v1 raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			n.log.Error().Err(err).Uint64("index", e.GetIndex()).Msg("undecodable configuration change; skipped")
			return
		}
		cc = &v1
	} else {
		var v2 raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &v2); err != nil {
			n.log.Error().Err(err).Uint64("index", e.GetIndex()).Msg("undecodable configuration change; skipped")
			return
		}
		cc = &v2
	}
	n.confState = n.rn.ApplyConfChange(cc)
	n.confPending = false
	v2 := cc.AsV2()
	var info messages.GatewayInfo
	hasInfo := len(v2.GetContext()) > 0 && proto.Unmarshal(v2.GetContext(), &info) == nil
	for _, c := range v2.GetChanges() {
		id := c.GetNodeId()
		switch c.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			if hasInfo && info.GetId() == id {
				s.SetGateway(meta.Gateway{ID: id, NodeAddress: info.GetNodeAddress()})
				n.peers.set(id, info.GetNodeAddress())
			}
		case raftpb.ConfChangeRemoveNode:
			s.RemoveGateway(id)
			n.peers.remove(id)
			if id == n.cfg.ID && n.removedHow == "" {
				n.removedHow = fmt.Sprintf("this gateway applied its own removal at index %d", e.GetIndex())
			}
		}
	}
	n.log.Info().Uint64("index", e.GetIndex()).Uints64("voters", n.confState.GetVoters()).
		Uints64("learners", n.confState.GetLearners()).Msg("Raft group configuration changed")
}

// softState follows leadership changes.
func (n *node) softState(ctx actor.Context, ss *raft.SoftState) {
	wasLeader := n.isLeader
	n.lead = ss.Lead
	n.term = n.rn.BasicStatus().GetTerm()
	n.isLeader = ss.RaftState == raft.StateLeader
	if !n.isLeader {
		n.ready = false
		n.confPending = false
		if wasLeader {
			n.barriers.failAll(ctx, "leadership lost")
		}
	}
	if h := n.cfg.Health; h != nil {
		h.lead.Store(n.lead)
	}
	if m := n.cfg.Metrics; m != nil {
		m.observeLeader(n.lead, n.term, n.isLeader)
	}
	n.log.Info().Uint64("lead", n.lead).Str("lead_address", n.leadAddress()).Uint64("term", n.term).
		Stringer("state", ss.RaftState).Msg("Raft leadership changed")
	n.publish(ctx, n.leaderChanged())
	n.handOverIfAside()
}

// maxBatchEntries and maxBatchBytes bound the metadata entries in one
// Raft log entry.
const (
	maxBatchEntries = 1024
	maxBatchBytes   = 512 << 10
)

// propose appends client entries to the log, if this gateway leads: as few
// Raft entries as fit (one fsync and one replication round serve them
// all, and the log in memory holds one entry's overhead for many).
func (n *node) propose(ctx actor.Context, p *Propose) {
	if !n.isLeader {
		// Raft would forward them to the leader; the leader actor that
		// proposed them must not think it leads, so refuse instead (the
		// requests are routed to the leader by the gateways).
		n.drop(ctx, p.Entries, DropNotLeader)
		return
	}
	if n.diskFull != "" {
		reason := n.diskFull
		if n.rn.BasicStatus().LeadTransferee != 0 {
			reason = DropTransfer // handing over because of it: the next leader takes them
		}
		n.drop(ctx, p.Entries, reason)
		return
	}
	for start := 0; start < len(p.Entries); {
		batch := &messages.LogBatch{}
		size, end := 0, start
		for ; end < len(p.Entries) && end-start < maxBatchEntries; end++ {
			sz := proto.Size(p.Entries[end])
			if end > start && size+sz > maxBatchBytes {
				break
			}
			size += sz
			batch.Entries = append(batch.Entries, p.Entries[end])
		}
		data, err := proto.Marshal(batch)
		if err == nil {
			err = n.rn.Propose(data)
		}
		if err == nil && n.cfg.Metrics != nil {
			n.cfg.Metrics.Proposals.Add(float64(len(batch.Entries)))
		}
		if err != nil {
			// n.isLeader follows raft's soft state only at the next
			// Ready: raft may have stepped down already (a transfer
			// that just completed), so ask it.
			reason, st := "overloaded: the log refused the request ("+err.Error()+")", n.rn.BasicStatus()
			switch {
			case errors.Is(err, raft.ErrProposalDropped) && st.RaftState != raft.StateLeader:
				reason = DropNotLeader
			case errors.Is(err, raft.ErrProposalDropped) && st.LeadTransferee != 0:
				reason = DropTransfer
			}
			n.drop(ctx, p.Entries[start:], reason)
			return
		}
		start = end
	}
}

// drop hands entries Raft did not take back to the proposer.
func (n *node) drop(ctx actor.Context, entries []*messages.LogEntry, reason string) {
	if len(entries) > 0 && ctx.Sender() != nil {
		ctx.Send(ctx.Sender(), &ProposalsDropped{Entries: entries, Reason: reason})
	}
}

// transfer starts a leadership transfer.
func (n *node) transfer(to uint64) error {
	to, err := n.startTransfer(to)
	if err == nil {
		n.log.Info().Uint64("to", to).Msg("transferring Raft leadership")
	}
	return err
}

// startTransfer is transfer without the log line; it returns the gateway
// the leadership goes to.
func (n *node) startTransfer(to uint64) (uint64, error) {
	if !n.isLeader {
		return 0, errors.New("not the Raft leader")
	}
	if to == 0 {
		to = n.bestTransferee()
	}
	if to == 0 || to == n.cfg.ID {
		return 0, errors.New("no other voter to transfer leadership to")
	}
	n.rn.TransferLeader(to)
	return to, nil
}

// bestTransferee is the voter, other than this gateway, with the most of
// the log among those recently heard from (CheckQuorum keeps that current);
// if none was, among all. A transfer to a voter that is down would only
// time out.
func (n *node) bestTransferee() uint64 {
	var best, match uint64
	bestActive := false
	st := n.rn.Status()
	for _, id := range n.confState.GetVoters() {
		pr, ok := st.Progress[id]
		if !ok || id == n.cfg.ID {
			continue
		}
		better := best == 0 || (pr.RecentActive && !bestActive) || (pr.RecentActive == bestActive && pr.Match > match)
		if better {
			best, match, bestActive = id, pr.Match, pr.RecentActive
		}
	}
	return best
}
