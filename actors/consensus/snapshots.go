package consensus

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// Snapshots. The state machine is snapshotted every SnapshotEntries applied
// entries: only the copy (meta.State.Freeze) runs on the actor's goroutine,
// encoding runs on its own, and the Raft log stores it and compacts the
// entries before it. A follower too far behind for the entries kept gets
// the snapshot from the leader in chunks (RaftSnapshotChunk) and answers
// with a RaftSnapshotAck once Raft took it; the leader then reports the
// snapshot done, or failed when no ack came within snapshotAckTimeout.

// snapshotAckTimeout is how long a leader waits for a follower to take a
// snapshot before it reports the send failed (Raft then sends it again).
const snapshotAckTimeout = 30 * time.Second

// sentSnapshot is a snapshot sent to a follower, waiting for its ack.
type sentSnapshot struct {
	index uint64
	at    time.Time
}

func decodeState(data []byte) (*meta.State, error) {
	var snap messages.MetaSnapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("decode state snapshot: %w", err)
	}
	return meta.Restore(&snap)
}

// maybeSnapshot starts a snapshot once enough entries were applied since
// the last one.
func (n *node) maybeSnapshot(ctx actor.Context) {
	if n.snapshotting || n.applied < n.snapshotIndex+n.cfg.SnapshotEntries {
		return
	}
	n.snapshotting = true
	started := time.Now()
	frozen := n.cfg.View.own().Freeze()
	index, cs := n.applied, proto.Clone(n.confState).(*raftpb.ConfState)
	pause := time.Since(started)
	root, self, log := ctx.ActorSystem().Root, ctx.Self(), n.log
	go func() {
		data, err := proto.Marshal(frozen.Snapshot())
		if err == nil {
			log.Info().Uint64("index", index).Int("messages", frozen.Len()).Int("bytes", len(data)).
				Dur("pause", pause).Dur("encode", time.Since(started)).Msg("snapshot taken")
		}
		root.Send(self, &snapshotEncoded{index: index, cs: cs, data: data, err: err})
	}()
}

func (n *node) snapshotEncoded(msg *snapshotEncoded) {
	if msg.err != nil || n.raftLog == nil {
		n.snapshotting = false
		n.log.Error().Err(msg.err).Uint64("index", msg.index).Msg("snapshot not taken")
		return
	}
	n.raftLog.CreateSnapshot(msg.index, msg.cs, msg.data, n.cfg.CatchUpEntries)
}

func (n *node) snapshotStored(msg *snapshotStored) {
	n.snapshotting = false
	if msg.err != nil {
		n.log.Error().Err(msg.err).Uint64("index", msg.index).Msg("snapshot not stored")
		return
	}
	n.snapshotIndex = max(n.snapshotIndex, msg.index)
	if m := n.cfg.Metrics; m != nil {
		m.Snapshots.Inc()
	}
}

// snapshotAssembly gathers the chunks of snapshots being received, one per
// sending gateway.
type snapshotAssembly struct {
	from map[uint64]*incoming
}

type incoming struct {
	index  uint64
	chunks uint32
	next   uint32
	header []byte
	data   []byte
}

func newSnapshotAssembly() *snapshotAssembly {
	return &snapshotAssembly{from: make(map[uint64]*incoming)}
}

// receiveChunk adds a chunk; with the last one, the snapshot message goes
// to Raft and the sender gets its ack.
func (n *node) receiveChunk(ctx actor.Context, c *messages.RaftSnapshotChunk) {
	if n.diskFull != "" {
		return // disk full: the snapshot is not stored; the leader sends it again (disk.go)
	}
	if n.fromRemoved(ctx, c.GetFrom()) {
		return
	}
	in := n.inbound.from[c.GetFrom()]
	if c.GetChunk() == 0 {
		in = &incoming{index: c.GetIndex(), chunks: c.GetChunks(), header: c.GetMessage()}
		n.inbound.from[c.GetFrom()] = in
	}
	if in == nil || in.index != c.GetIndex() || in.next != c.GetChunk() || c.GetChunks() != in.chunks {
		// A chunk out of order (one was lost, or a new snapshot started):
		// drop the assembly; the leader sends again when the ack is late.
		delete(n.inbound.from, c.GetFrom())
		return
	}
	in.data = append(in.data, c.GetData()...)
	in.next++
	if in.next < in.chunks {
		return
	}
	delete(n.inbound.from, c.GetFrom())
	var m raftpb.Message
	if err := proto.Unmarshal(in.header, &m); err != nil || m.GetSnapshot() == nil {
		n.log.Warn().Err(err).Uint64("from", c.GetFrom()).Msg("undecodable snapshot message; dropped")
		return
	}
	m.Snapshot.Data = in.data
	n.peers.learn(m.GetFrom(), ctx.Sender())
	if n.peers.heard(m.GetFrom()) {
		n.reportReach()
	}
	if err := n.rn.Step(&m); err != nil {
		n.log.Warn().Err(err).Uint64("from", m.GetFrom()).Msg("step snapshot")
		return
	}
	n.log.Info().Uint64("from", m.GetFrom()).Uint64("index", in.index).Int("bytes", len(in.data)).Msg("snapshot received")
	if sender := ctx.Sender(); sender != nil {
		ctx.Send(sender, &messages.RaftSnapshotAck{From: n.cfg.ID, Index: in.index})
	}
}

// snapshotChunkBytes is the largest slice of snapshot data in one chunk.
const snapshotChunkBytes = 1 << 20

// sendSnapshot sends a snapshot raft asked for to a follower: the message
// without its data first, then the data in chunks. Storage() holds the
// snapshot without its data (raftlog.Log.SnapshotData), so a goroutine
// reads the data from the Raft log and sends the chunks, and the actor
// goes on with ticks and clients meanwhile. The follower's ack, a failed
// read (snapshotUnsent) or snapshotAckTimeout ends the send.
func (n *node) sendSnapshot(m *raftpb.Message) {
	to, index := m.GetTo(), m.GetSnapshot().GetMetadata().GetIndex()
	pid := n.peers.pid(to)
	if pid == nil {
		// Not known (yet): failed, so that raft asks again rather than
		// wait for a snapshot that was never sent.
		n.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	header := proto.Clone(m).(*raftpb.Message)
	data := header.GetSnapshot().GetData() // set only if raft had not stored it yet
	header.Snapshot.Data = nil
	head, err := proto.Marshal(header)
	if err != nil {
		n.log.Error().Err(err).Msg("encode snapshot message")
		n.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	n.outbound[to] = sentSnapshot{index: index, at: time.Now()}
	lg, root, self, from, log := n.raftLog, n.root, n.self, n.cfg.ID, n.log
	go func() {
		if len(data) == 0 {
			var readErr error
			if data, readErr = lg.SnapshotData(index); readErr != nil {
				root.Send(self, &snapshotUnsent{to: to, index: index, err: readErr})
				return
			}
		}
		chunks := max(1, (len(data)+snapshotChunkBytes-1)/snapshotChunkBytes)
		for i := range chunks {
			chunk := &messages.RaftSnapshotChunk{From: from, Index: index, Chunk: uint32(i), Chunks: uint32(chunks)}
			if i == 0 {
				chunk.Message = head
			}
			chunk.Data = data[min(i*snapshotChunkBytes, len(data)):min((i+1)*snapshotChunkBytes, len(data))]
			root.RequestWithCustomSender(pid, chunk, self)
		}
		log.Info().Uint64("to", to).Uint64("index", index).Int("bytes", len(data)).Int("chunks", chunks).Msg("snapshot sent")
	}()
}

// snapshotUnsent reports a snapshot whose data could not be read (most
// likely a newer snapshot replaced it) as failed, so that raft sends the
// stored one.
func (n *node) snapshotUnsent(msg *snapshotUnsent) {
	if sent, ok := n.outbound[msg.to]; !ok || sent.index != msg.index {
		return
	}
	delete(n.outbound, msg.to)
	n.log.Warn().Err(msg.err).Uint64("to", msg.to).Uint64("index", msg.index).Msg("snapshot not sent; Raft will send the stored one")
	n.rn.ReportSnapshot(msg.to, raft.SnapshotFailure)
}

// snapshotAcked reports a snapshot a follower took.
func (n *node) snapshotAcked(a *messages.RaftSnapshotAck) {
	if sent, ok := n.outbound[a.GetFrom()]; ok && sent.index == a.GetIndex() {
		delete(n.outbound, a.GetFrom())
		n.rn.ReportSnapshot(a.GetFrom(), raft.SnapshotFinish)
	}
}

// expireSnapshots reports snapshots that were not acked in time as failed.
func (n *node) expireSnapshots() {
	for to, sent := range n.outbound {
		if time.Since(sent.at) > snapshotAckTimeout {
			delete(n.outbound, to)
			n.log.Warn().Uint64("to", to).Uint64("index", sent.index).Msg("snapshot not acknowledged in time; Raft will send it again")
			n.rn.ReportSnapshot(to, raft.SnapshotFailure)
		}
	}
}
