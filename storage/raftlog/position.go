package raftlog

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// position is the shape of the log: what the disk and Storage() hold, or
// will hold once the requests planned against it are committed. The
// committer plans every request against it first, so that a request that
// would make MemoryStorage panic or the store unloadable is refused before
// anything is written.
type position struct {
	// start is MemoryStorage's dummy entry: entries start.index+1..last
	// are stored.
	start logStart
	last  uint64
	// snapshotIndex is the stored snapshot's index (0: none) and
	// confState its ConfState.
	snapshotIndex uint64
	confState     *raftpb.ConfState
	// hardState is the stored hard state (nil: none).
	hardState *raftpb.HardState
}

// empty reports whether the position is a new log's.
func (p position) empty() bool {
	return p.start == (logStart{}) && p.last == 0 && p.snapshotIndex == 0 && p.hardState == nil
}

// commitInLog reports whether the hard state's commit index lies in the
// log: raft panics on restart if it is below the dummy entry or past the
// last entry.
func (p position) commitInLog() error {
	if p.hardState == nil {
		return nil
	}
	if c := p.hardState.GetCommit(); c < p.start.index || c > p.last {
		return fmt.Errorf("hard state commit %d is outside the log [%d, %d]", c, p.start.index, p.last)
	}
	return nil
}

// writePlan is a validated Write: what to store and hand to Storage().
type writePlan struct {
	// snapshot replaces the log (nil: none).
	snapshot *raftpb.Snapshot
	// entries are the Write's entries without those at or below the log
	// start, which MemoryStorage.Append ignores too.
	entries []*raftpb.Entry
	// truncate says entries[0] replaces stored entries.
	truncate bool
	// hardState replaces the stored one (nil: unchanged).
	hardState *raftpb.HardState
}

// planWrite checks w against p and returns what to store and the position
// after it. An error wraps ErrInvalid.
func (p position) planWrite(w Write) (writePlan, position, error) {
	var plan writePlan
	next := p
	if !raft.IsEmptySnap(w.Snapshot) {
		md := w.Snapshot.GetMetadata()
		// MemoryStorage.ApplySnapshot refuses the same.
		if p.snapshotIndex != 0 && md.GetIndex() <= p.snapshotIndex {
			return writePlan{}, p, fmt.Errorf("snapshot %d is not newer than the stored snapshot %d: %w",
				md.GetIndex(), p.snapshotIndex, ErrInvalid)
		}
		plan.snapshot = w.Snapshot
		next.start = logStart{index: md.GetIndex(), term: md.GetTerm()}
		next.last = md.GetIndex()
		next.snapshotIndex = md.GetIndex()
		next.confState = md.GetConfState()
	}
	if n := len(w.Entries); n > 0 {
		first := w.Entries[0].GetIndex()
		for i, e := range w.Entries {
			if e.GetIndex() != first+uint64(i) {
				return writePlan{}, p, fmt.Errorf("entry %d follows entry %d: entries not consecutive: %w",
					e.GetIndex(), first+uint64(i)-1, ErrInvalid)
			}
		}
		lastNew := first + uint64(n) - 1
		if lo := next.start.index + 1; lastNew >= lo {
			entries := w.Entries[max(lo, first)-first:]
			at := entries[0].GetIndex()
			if at > next.last+1 {
				return writePlan{}, p, fmt.Errorf("entries start at %d but the log ends at %d: %w", at, next.last, ErrInvalid)
			}
			// Raft never replaces committed entries; replacing those a
			// snapshot covers would contradict the snapshot's term.
			if at <= next.snapshotIndex {
				return writePlan{}, p, fmt.Errorf("entries at %d would replace entries covered by snapshot %d: %w",
					at, next.snapshotIndex, ErrInvalid)
			}
			plan.entries = entries
			plan.truncate = at <= next.last
			next.last = lastNew
		}
	}
	if !raft.IsEmptyHardState(w.HardState) {
		plan.hardState = proto.Clone(w.HardState).(*raftpb.HardState)
		next.hardState = plan.hardState
	}
	if err := next.commitInLog(); err != nil {
		return writePlan{}, p, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return plan, next, nil
}

// snapshotPlan is a validated CreateSnapshot: the snapshot to store and the
// compaction that comes with it.
type snapshotPlan struct {
	header snapshotHeader
	data   []byte
	// compact is the new log start (compact.index 0: no compaction).
	compact logStart
}

// planSnapshot checks r against p, reading terms through term (Storage's,
// which holds p), and returns what to store and the position after it. An
// error wraps ErrBadSnapshot.
func (p position) planSnapshot(r *snapshotRequest, term func(uint64) (uint64, error)) (snapshotPlan, position, error) {
	switch {
	case r.index <= p.snapshotIndex:
		return snapshotPlan{}, p, fmt.Errorf("snapshot %d is not newer than the stored snapshot %d: %w",
			r.index, p.snapshotIndex, ErrBadSnapshot)
	case r.index > p.last:
		return snapshotPlan{}, p, fmt.Errorf("snapshot %d is past the last entry %d: %w", r.index, p.last, ErrBadSnapshot)
	case r.index > p.hardState.GetCommit():
		return snapshotPlan{}, p, fmt.Errorf("snapshot %d is past the stored commit index %d: %w",
			r.index, p.hardState.GetCommit(), ErrBadSnapshot)
	}
	indexTerm, err := term(r.index)
	if err != nil {
		return snapshotPlan{}, p, fmt.Errorf("snapshot %d: term: %w", r.index, err)
	}
	cs := r.confState
	if cs == nil {
		// MemoryStorage.CreateSnapshot keeps the old ConfState then.
		cs = p.confState
	}
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	plan := snapshotPlan{
		header: snapshotHeader{index: r.index, term: indexTerm, confState: cs},
		data:   r.data,
	}
	next := p
	next.snapshotIndex = r.index
	next.confState = cs
	if r.keep < r.index {
		if c := r.index - r.keep; c > p.start.index {
			compactTerm, err := term(c)
			if err != nil {
				return snapshotPlan{}, p, fmt.Errorf("snapshot %d: term of %d: %w", r.index, c, err)
			}
			plan.compact = logStart{index: c, term: compactTerm}
			next.start = plan.compact
		}
	}
	return plan, next, nil
}
