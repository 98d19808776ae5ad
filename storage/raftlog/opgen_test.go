package raftlog

import (
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// op is one generated request: a Write or a CreateSnapshot.
type op struct {
	write    *Write
	snapshot *snapshotOp
}

// snapshotOp is a generated CreateSnapshot.
type snapshotOp struct {
	index uint64
	cs    *raftpb.ConfState
	data  []byte
	keep  uint64
}

// opGen generates a deterministic sequence of requests that a raft node
// could make: appends, hard state changes, truncations of uncommitted
// suffixes, snapshots received from a leader, and snapshots of applied
// state with compaction. It models the log as the requests leave it, never
// waiting for outcomes, so that a crash-test child and the parent that
// checks it generate the same sequence from the same seed.
type opGen struct {
	rng *rand.Rand
	// largeSnapshotBytes is the data size of every fifth created
	// snapshot, to exercise chunks.
	largeSnapshotBytes                       int
	start, last, term, commit, snapshotIndex uint64
	snapshots                                int
	// counts counts the generated requests by kind.
	counts map[string]int
}

func newOpGen(seed uint64, largeSnapshotBytes int) *opGen {
	return &opGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), largeSnapshotBytes: largeSnapshotBytes, term: 1,
		counts: map[string]int{}}
}

// next returns the next request.
func (g *opGen) next() op {
	kind, o := g.pick()
	g.counts[kind]++
	return o
}

func (g *opGen) pick() (string, op) {
	switch r := g.rng.IntN(100); {
	case r < 8 && g.commit > g.snapshotIndex:
		return "create snapshot", op{snapshot: g.createSnapshot()}
	case r < 12 && g.last > g.commit:
		return "truncate", op{write: g.truncate()}
	case r < 14:
		return "receive snapshot", op{write: g.receiveSnapshot()}
	case r < 17:
		g.term++
		return "hard state", op{write: &Write{HardState: g.hardState()}}
	case r < 19 && g.last-g.start <= 40 && g.snapshotIndex == g.start:
		return "overlap", op{write: g.overlap()}
	default:
		return "append", op{write: g.append()}
	}
}

func (g *opGen) hardState() *raftpb.HardState {
	return hardState(g.term, 1+g.term%3, g.commit)
}

func (g *opGen) entry(index uint64) *raftpb.Entry {
	data := make([]byte, g.rng.IntN(200))
	for i := range data {
		data[i] = byte(g.rng.Uint32())
	}
	t := raftpb.EntryNormal
	if g.rng.IntN(20) == 0 {
		t = raftpb.EntryConfChangeV2
	}
	return &raftpb.Entry{Index: new(index), Term: new(g.term), Type: t.Enum(), Data: data}
}

// append adds 1..4 entries and maybe advances the commit index.
func (g *opGen) append() *Write {
	n := uint64(1 + g.rng.IntN(4))
	var es []*raftpb.Entry
	for i := g.last + 1; i <= g.last+n; i++ {
		es = append(es, g.entry(i))
	}
	g.last += n
	if g.rng.IntN(2) == 0 {
		g.commit += g.rng.Uint64N(g.last - g.commit + 1)
	}
	return &Write{Entries: es, HardState: g.hardState()}
}

// truncate replaces an uncommitted suffix with 1..4 entries of a new term:
// sometimes fewer than it replaces, so the rest must go.
func (g *opGen) truncate() *Write {
	g.term++
	at := g.commit + 1 + g.rng.Uint64N(g.last-g.commit)
	n := uint64(1 + g.rng.IntN(4))
	var es []*raftpb.Entry
	for i := at; i < at+n; i++ {
		es = append(es, g.entry(i))
	}
	g.last = at + n - 1
	return &Write{Entries: es, HardState: g.hardState()}
}

// overlap rewrites the whole log with entries that start at or before the
// log start: those at or below it are dropped, as MemoryStorage drops them.
// (Only while no snapshot covers stored entries, which may not be replaced.)
func (g *opGen) overlap() *Write {
	g.term++
	from := g.start - min(g.start, uint64(g.rng.IntN(3)))
	var es []*raftpb.Entry
	for i := from; i <= g.last+1; i++ {
		es = append(es, g.entry(i))
	}
	g.last++
	return &Write{Entries: es, HardState: g.hardState()}
}

// receiveSnapshot is a snapshot from the leader, somewhere past the commit
// index (behind, at or ahead of the last entry), with the commit at it.
func (g *opGen) receiveSnapshot() *Write {
	index := max(g.commit, g.snapshotIndex) + 1 + g.rng.Uint64N(max(g.last, g.commit)-g.commit+5)
	cs := confState(1, 2, 3)
	if g.rng.IntN(2) == 0 {
		cs.Learners = []uint64{4}
	}
	snap := receivedSnapshot(index, g.term, cs, snapshotData(index, g.rng.IntN(3000)))
	g.start, g.last, g.commit, g.snapshotIndex = index, index, index, index
	return &Write{Snapshot: snap, HardState: g.hardState()}
}

// createSnapshot snapshots at a committed index and compacts behind it.
func (g *opGen) createSnapshot() *snapshotOp {
	index := g.snapshotIndex + 1 + g.rng.Uint64N(g.commit-g.snapshotIndex)
	keeps := []uint64{0, 1, 5, 20, 1000}
	keep := keeps[g.rng.IntN(len(keeps))]
	size := g.rng.IntN(4000)
	if g.snapshots%5 == 4 {
		size = g.largeSnapshotBytes
		g.counts["large snapshot"]++
	}
	g.snapshots++
	var cs *raftpb.ConfState
	if g.rng.IntN(4) != 0 {
		cs = confState(1, 2, 3, uint64(g.rng.IntN(3)+4))
	}
	g.snapshotIndex = index
	if keep < index && index-keep > g.start {
		g.start = index - keep
	}
	return &snapshotOp{index: index, cs: cs, data: snapshotData(index, size), keep: keep}
}

// issue sends o to l.
func (o op) issue(l *Log, token any) {
	if o.snapshot != nil {
		s := o.snapshot
		l.CreateSnapshot(s.index, s.cs, s.data, s.keep)
		return
	}
	w := *o.write
	w.Token = token
	l.Write(w)
}

// applyTo feeds o to the reference.
func (o op) applyTo(t testing.TB, ref *raft.MemoryStorage) {
	t.Helper()
	if o.snapshot != nil {
		s := o.snapshot
		snapshotReference(t, ref, s.index, s.cs, s.data, s.keep)
		return
	}
	applyToReference(t, ref, *o.write)
}
