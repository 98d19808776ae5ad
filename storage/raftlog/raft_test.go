package raftlog

import (
	"io"
	"log"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// raftNode drives a one-voter raft.RawNode with AsyncStorageWrites over a
// Log, the way the consensus actor is meant to: MsgStorageAppend becomes a
// Write whose report steps the message's responses; committed entries are
// applied to a state machine (a list of the proposals) that is snapshotted
// every snapshotEvery entries, keeping keep entries.
type raftNode struct {
	t         *testing.T
	rn        *raft.RawNode
	log       *Log
	written   chan Written
	snapshots chan snapshotReport
	state     []string
	applied   uint64
	confState *raftpb.ConfState
}

const (
	raftSnapshotEvery = 7
	raftKeep          = 3
)

// startRaftNode opens the store in dir and starts raft on it: bootstrapped
// when the store is Empty, restored from its snapshot otherwise.
func startRaftNode(t *testing.T, dir string) *raftNode {
	n := &raftNode{t: t, written: make(chan Written, 1024), snapshots: make(chan snapshotReport, 64)}
	l, err := Open(dir, Options{
		Sync:       true,
		OnWritten:  func(ws []Written) { n.handOver(ws) },
		OnSnapshot: func(index uint64, err error) { n.snapshots <- snapshotReport{index, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	n.log = l
	snap, err := l.Storage().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if index := snap.GetMetadata().GetIndex(); index > 0 {
		data, err := l.SnapshotData(index)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 0 {
			n.state = strings.Split(string(data), "\n")
		}
	}
	n.applied = snap.GetMetadata().GetIndex()
	n.confState = snap.GetMetadata().GetConfState()
	n.rn, err = raft.NewRawNode(&raft.Config{
		ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: l.Storage(), Applied: n.applied,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, AsyncStorageWrites: true,
		Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.Empty() {
		if err := n.rn.Bootstrap([]raft.Peer{{ID: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// handOver is OnWritten: it passes the reports to the driving goroutine.
func (n *raftNode) handOver(ws []Written) {
	for _, w := range ws {
		n.written <- w
	}
}

// runUntil handles Readies and reports, and ticks raft's clock, until done
// says so. The node elects itself once its election timeout passes.
func (n *raftNode) runUntil(done func() bool) {
	n.t.Helper()
	deadline := time.After(waitTimeout)
	ticker := time.NewTicker(2 * time.Millisecond)
	defer ticker.Stop()
	for !done() {
		if n.rn.HasReady() {
			n.handleReady()
			continue
		}
		select {
		case w := <-n.written:
			if w.Err != nil {
				n.t.Fatalf("write: %v", w.Err)
			}
			n.stepAll(w.Token.(*raftpb.Message).GetResponses())
		case r := <-n.snapshots:
			if r.err != nil {
				n.t.Fatalf("snapshot %d: %v", r.index, r.err)
			}
		case <-ticker.C:
			n.rn.Tick()
		case <-deadline:
			n.t.Fatalf("raft made no progress within %v: %+v", waitTimeout, n.rn.Status())
		}
	}
}

func (n *raftNode) handleReady() {
	rd := n.rn.Ready()
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			w := Write{Entries: m.GetEntries(), Snapshot: m.GetSnapshot(), Token: m}
			if m.Term != nil {
				w.HardState = &raftpb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
			}
			n.log.Write(w)
		case raft.LocalApplyThread:
			n.apply(m.GetEntries())
			n.stepAll(m.GetResponses())
		default:
			n.t.Fatalf("message to %d in a group of one", m.GetTo())
		}
	}
}

func (n *raftNode) stepAll(ms []*raftpb.Message) {
	for _, m := range ms {
		if err := n.rn.Step(m); err != nil {
			n.t.Fatalf("step %v: %v", m.GetType(), err)
		}
	}
}

func (n *raftNode) apply(entries []*raftpb.Entry) {
	for _, e := range entries {
		switch e.GetType() {
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				n.t.Fatal(err)
			}
			n.confState = n.rn.ApplyConfChange(&cc)
		case raftpb.EntryNormal:
			if len(e.GetData()) > 0 {
				n.state = append(n.state, string(e.GetData()))
			}
		}
		n.applied = e.GetIndex()
		if n.applied%raftSnapshotEvery == 0 {
			n.log.CreateSnapshot(n.applied, n.confState, []byte(strings.Join(n.state, "\n")), raftKeep)
		}
	}
}

// propose proposes values as the leader and waits until they are applied.
func (n *raftNode) propose(values ...string) {
	n.t.Helper()
	n.runUntil(func() bool { return n.rn.Status().RaftState == raft.StateLeader })
	want := len(n.state) + len(values)
	for _, v := range values {
		if err := n.rn.Propose([]byte(v)); err != nil {
			n.t.Fatal(err)
		}
	}
	n.runUntil(func() bool { return len(n.state) >= want })
}

func (n *raftNode) close() {
	n.t.Helper()
	if err := n.log.Close(); err != nil {
		n.t.Fatal(err)
	}
}

// TestRaftRunsOnTheStore bootstraps a raft node on an empty store, commits
// proposals (snapshots and compactions happen along the way), restarts it
// twice from the store and checks that every proposal is applied exactly
// once, in order, and that the log was compacted.
func TestRaftRunsOnTheStore(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for round := range 3 {
		n := startRaftNode(t, dir)
		if round > 0 && n.log.Empty() {
			t.Fatalf("round %d: store is empty after a restart", round)
		}
		for i := range 20 {
			v := strings.Repeat("x", i) + string(rune('a'+round))
			want = append(want, v)
			n.propose(v)
		}
		if !slices.Equal(n.state, want) {
			t.Fatalf("round %d: state %q, want %q", round, n.state, want)
		}
		st := n.log.Stats()
		if st.SnapshotIndex == 0 || st.FirstIndex <= 1 {
			t.Fatalf("round %d: no snapshot or compaction: %+v", round, st)
		}
		t.Logf("round %d: %+v, raft %v", round, st, n.rn.Status())
		n.close()
	}
}
