package raftlog

import (
	"fmt"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// step is one request of a scripted scenario.
type step struct {
	name string
	op   op
}

func writeStep(name string, w Write) step { return step{name: name, op: op{write: &w}} }

func snapshotStep(name string, index uint64, cs *raftpb.ConfState, data []byte, keep uint64) step {
	return step{name: name, op: op{snapshot: &snapshotOp{index: index, cs: cs, data: data, keep: keep}}}
}

// runAgainstReference performs each step on the store and on a reference
// raft.MemoryStorage fed the same operations, and checks after every step
// that Storage() equals the reference, both live and after reopening when
// reopen says so.
func runAgainstReference(t *testing.T, steps func(yield func(step) bool), reopen func(i int) bool) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	ref := raft.NewMemoryStorage()
	i := 0
	for s := range steps {
		if s.op.snapshot != nil {
			so := s.op.snapshot
			l.mustCreateSnapshot(t, so.index, so.cs, so.data, so.keep)
		} else {
			l.mustWrite(t, *s.op.write)
		}
		s.op.applyTo(t, ref)
		checkStorage(t, fmt.Sprintf("step %d (%s)", i, s.name), l.Log, ref)
		if reopen(i) {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openTestLog(t, dir, Options{Sync: true})
			checkStorage(t, fmt.Sprintf("step %d (%s) after reopening", i, s.name), l.Log, ref)
			if l.Empty() {
				t.Fatalf("step %d (%s): store reopened empty", i, s.name)
			}
		}
		i++
	}
}

// TestScriptAgainstReference walks through every kind of request, reopening
// the store after each one.
func TestScriptAgainstReference(t *testing.T) {
	big := snapshotData(30, 2*ChunkBytes+ChunkBytes/2)
	script := []step{
		writeStep("first hard state", Write{HardState: hardState(1, 0, 0)}),
		writeStep("bootstrap entries", Write{Entries: entries(1, 3, 1), HardState: hardState(1, 1, 0)}),
		writeStep("append and commit", Write{Entries: entries(4, 10, 1), HardState: hardState(1, 1, 6)}),
		writeStep("hard state only", Write{HardState: hardState(2, 2, 6)}),
		writeStep("empty hard state changes nothing", Write{HardState: &raftpb.HardState{}, Entries: entries(11, 12, 2)}),
		writeStep("truncate a longer suffix with fewer entries", Write{Entries: entries(8, 9, 3), HardState: hardState(3, 3, 7)}),
		writeStep("truncate with more entries than replaced", Write{Entries: entries(9, 14, 4), HardState: hardState(4, 1, 8)}),
		writeStep("rewrite the last entry", Write{Entries: entries(14, 14, 5), HardState: hardState(5, 1, 8)}),
		snapshotStep("snapshot without compaction", 5, confState(1, 2, 3), []byte("state at 5"), 100),
		snapshotStep("snapshot keeping 3 entries", 7, confState(1, 2, 3), []byte("state at 7"), 3),
		writeStep("commit more", Write{Entries: entries(15, 40, 5), HardState: hardState(5, 1, 35)}),
		snapshotStep("multi-chunk snapshot, nil ConfState, no compaction past the start", 30, nil, big, 29),
		snapshotStep("snapshot compacting everything", 35, confState(1, 2), nil, 0),
		writeStep("append after compaction", Write{Entries: entries(41, 45, 6), HardState: hardState(6, 2, 41)}),
		writeStep("snapshot from the leader behind the last entry", Write{
			Snapshot:  receivedSnapshot(43, 6, confState(1, 2, 4), []byte("leader state at 43")),
			HardState: hardState(6, 2, 43),
		}),
		writeStep("append after the leader's snapshot", Write{Entries: entries(44, 50, 6), HardState: hardState(6, 2, 48)}),
		writeStep("entries reaching back past the log start", Write{Entries: entries(41, 52, 6), HardState: hardState(6, 2, 49)}),
		snapshotStep("snapshot whose compaction point is behind the log start", 49, confState(1, 2, 4), []byte("state at 49"), 10),
		writeStep("snapshot from the leader ahead of the log, with entries", Write{
			Snapshot:  receivedSnapshot(100, 7, confState(1, 2, 3), snapshotData(100, ChunkBytes+1)),
			Entries:   entries(101, 103, 7),
			HardState: hardState(7, 3, 101),
		}),
		writeStep("entries entirely below the log start change nothing", Write{Entries: entries(90, 99, 7)}),
		writeStep("commit the last entry", Write{HardState: hardState(7, 3, 103)}),
		snapshotStep("snapshot at the last entry keeping one", 103, confState(1, 2, 3), []byte("state at 103"), 1),
	}
	runAgainstReference(t, func(yield func(step) bool) {
		for _, s := range script {
			if !yield(s) {
				return
			}
		}
	}, func(int) bool { return true })
}

// TestGeneratedAgainstReference runs a long generated sequence of requests,
// reopening the store after each of the first 150 and every 25th after.
func TestGeneratedAgainstReference(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	g := newOpGen(1, ChunkBytes+ChunkBytes/3)
	runAgainstReference(t, func(yield func(step) bool) {
		for i := range n {
			if !yield(step{name: fmt.Sprintf("generated %d", i), op: g.next()}) {
				return
			}
		}
	}, func(i int) bool { return i < 150 || i%25 == 0 })
	t.Logf("requests by kind: %v", g.counts)
}
