package raftlog

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// Batch sizing.
const (
	// entryOverhead estimates the bytes an entry adds to a Pebble batch
	// beside its data: key, checksum, proto framing, batch record header.
	entryOverhead = 48
	// presizeBytes is the estimated batch size from which the batch's
	// buffer is allocated at once rather than grown: growing a buffer of
	// snapshot data would hold two copies at a time.
	presizeBytes = 1 << 20
)

// commitLoop is the committer goroutine: it gathers queued requests into
// groups and commits them until the queue is closed and empty.
func (l *Log) commitLoop() {
	defer l.done.Done()
	pebbledb.GroupCommit(l.queue, l.opts.MaxBatchRequests, l.opts.MaxBatchBytes, request.size, l.commitGroup)
}

// commitGroup commits a group: each run of Writes as one Pebble batch, and
// each CreateSnapshot on its own after the Writes queued before it, since it
// reads terms from Storage(). Snapshots are rare, so the extra commit is
// too.
func (l *Log) commitGroup(group []request) {
	for len(group) > 0 {
		n := 0
		for n < len(group) && group[n].snapshot == nil {
			n++
		}
		if n > 0 {
			l.commitWrites(group[:n])
		}
		if n < len(group) {
			l.commitSnapshot(group[n].snapshot)
			n++
		}
		group = group[n:]
	}
	l.measureMemory(l.opts.Now())
}

// memoryCheckInterval is how often the committer measures Pebble's memory
// (a call that takes Pebble's locks) while commits go on.
const memoryCheckInterval = time.Second

// measureMemory publishes Pebble's memory if it was last measured at least
// memoryCheckInterval before now. It runs on the committer goroutine (or in
// Open), so it never meets Close.
func (l *Log) measureMemory(now time.Time) {
	if now.Sub(l.memoryMeasuredAt) < memoryCheckInterval {
		return
	}
	l.memoryMeasuredAt = now
	l.counters.memoryBytes.Store(pebbledb.MemoryBytes(l.db))
}

// newBatch returns a Pebble batch for about size bytes.
func (l *Log) newBatch(size int) *pebble.Batch {
	if size >= presizeBytes {
		return l.db.NewBatchWithSize(size)
	}
	return l.db.NewBatch()
}

// closeBatch releases b.
func (l *Log) closeBatch(b *pebble.Batch) {
	if err := b.Close(); err != nil {
		l.log.Error().Err(err).Msg("release pebble batch")
	}
}

// fail records the first commit failure; every later request is refused.
func (l *Log) fail(err error) {
	if l.failed == nil {
		l.failed = err
		l.log.Error().Err(err).Msg("commit failed; the raft log refuses further requests until reopened")
	}
}

// checkDamage fails the store once a Pebble background job found damage.
func (l *Log) checkDamage() {
	if err := l.damage.Load(); err != nil {
		l.fail(*err)
	}
}

// refused is the error for a request that arrives after a failure.
func (l *Log) refused() error {
	return fmt.Errorf("%w: %w", ErrFailed, l.failed)
}

// mustSync reports whether w must be on stable storage before it is
// reported, the log being at prev: entries, a snapshot, or a new term or
// vote must (raft's rule, etcd's raft.MustSync); a hard state that only
// moves the commit index need not, since a commit index lost in a crash
// is learned again from the leader (or, in a group of one, by committing
// the log again). Raft moves the commit index in writes of their own
// about as often as it appends, so not syncing them halves the fsyncs.
func mustSync(prev position, w Write) bool {
	if len(w.Entries) > 0 || !raft.IsEmptySnap(w.Snapshot) {
		return true
	}
	hs := w.HardState
	return hs != nil && (hs.GetTerm() != prev.hardState.GetTerm() || hs.GetVote() != prev.hardState.GetVote())
}

// commitWrites stores writes in one Pebble batch (one fsync if any of them
// must be durable, mustSync), applies them to Storage() in order and
// reports them.
func (l *Log) commitWrites(writes []request) {
	started := l.opts.Now()
	results := make([]Written, len(writes))
	for i, r := range writes {
		results[i].Token = r.write.Token
		results[i].Queued = started.Sub(r.queued)
	}
	l.checkDamage()
	if l.failed != nil {
		err := l.refused()
		for i := range results {
			results[i].Err = err
		}
		l.opts.OnWritten(results)
		return
	}

	size := 0
	for _, r := range writes {
		size += r.size() + entryOverhead*len(r.write.Entries)
	}
	b := l.newBatch(size)
	plans := make([]writePlan, len(writes))
	accepted := make([]bool, len(writes))
	next := l.pos
	var err error
	durable := false
	for i, r := range writes {
		plan, after, planErr := next.planWrite(r.write)
		if planErr != nil {
			results[i].Err = fmt.Errorf("raft log write: %w", planErr)
			l.log.Error().Err(planErr).Msg("write refused")
			continue
		}
		if err = l.stageWrite(b, plan); err != nil {
			break
		}
		durable = durable || mustSync(next, r.write)
		plans[i], accepted[i], next = plan, true, after
	}
	staged := 0
	if !b.Empty() {
		staged = b.Len()
	}
	if err == nil && staged > 0 {
		err = l.commitBatch(b, durable)
		if err != nil {
			err = fmt.Errorf("commit %d writes in %s: %w", len(writes), l.dir, err)
		}
	}
	l.closeBatch(b)
	if err == nil {
		err = l.applyWrites(plans, accepted)
	}
	if staged > 0 {
		took, synced := l.opts.Now().Sub(started), durable && l.opts.Sync
		for i := range results {
			results[i].Commit, results[i].Synced = took, synced
		}
	}
	if err != nil {
		l.fail(err)
		for i := range results {
			if accepted[i] || results[i].Err == nil {
				results[i].Err = fmt.Errorf("raft log write: %w", err)
			}
		}
	} else {
		l.pos = next
		l.counters.wrote(plans, accepted, staged)
		l.counters.publish(next)
	}
	l.opts.OnWritten(results)
}

// stageWrite adds one Write's changes to b, in the order snapshot, entries,
// hard state. Operations in a Pebble batch apply in order, so a range
// deletion removes what earlier operations of the batch set but not what
// later ones do.
func (l *Log) stageWrite(b *pebble.Batch, plan writePlan) error {
	if s := plan.snapshot; s != nil {
		md := s.GetMetadata()
		if err := b.DeleteRange(entriesFrom(0), entriesEnd(), nil); err != nil {
			return fmt.Errorf("stage snapshot %d: delete entries: %w", md.GetIndex(), err)
		}
		header := snapshotHeader{index: md.GetIndex(), term: md.GetTerm(), confState: md.GetConfState()}
		if err := stageSnapshotData(b, header, s.GetData()); err != nil {
			return err
		}
		start := logStart{index: md.GetIndex(), term: md.GetTerm()}
		if err := b.Set([]byte(logStartKey), start.encode(), nil); err != nil {
			return fmt.Errorf("stage snapshot %d: log start: %w", md.GetIndex(), err)
		}
	}
	if len(plan.entries) > 0 && plan.truncate {
		at := plan.entries[0].GetIndex()
		if err := b.DeleteRange(entriesFrom(at), entriesEnd(), nil); err != nil {
			return fmt.Errorf("stage truncation at %d: %w", at, err)
		}
	}
	for _, e := range plan.entries {
		key := entryKey(e.GetIndex())
		value, err := appendEntryValue(l.scratch[:0], key, e)
		if err != nil {
			return err
		}
		l.scratch = value
		if err := b.Set(key, value, nil); err != nil {
			return fmt.Errorf("stage entry %d: %w", e.GetIndex(), err)
		}
	}
	if plan.hardState != nil {
		value, err := encodeHardState(plan.hardState)
		if err != nil {
			return err
		}
		if err := b.Set([]byte(hardStateKey), value, nil); err != nil {
			return fmt.Errorf("stage hard state: %w", err)
		}
	}
	return nil
}

// applyWrites hands the committed writes to Storage() in order. The plans
// were checked against the position, so MemoryStorage accepts them; an
// error here means the two diverged.
func (l *Log) applyWrites(plans []writePlan, accepted []bool) error {
	for i, plan := range plans {
		if !accepted[i] {
			continue
		}
		if s := plan.snapshot; s != nil {
			// ApplySnapshot fills missing metadata fields in place: give
			// it metadata of its own, not the caller's, and no data
			// (Log.SnapshotData reads that from disk).
			own := &raftpb.Snapshot{Metadata: proto.Clone(s.GetMetadata()).(*raftpb.SnapshotMetadata)}
			if err := l.storage.ApplySnapshot(own); err != nil {
				return fmt.Errorf("memory storage refused snapshot %d after it was stored: %w", s.GetMetadata().GetIndex(), err)
			}
		}
		if err := l.storage.Append(plan.entries); err != nil {
			return fmt.Errorf("memory storage refused entries after they were stored: %w", err)
		}
		if plan.hardState != nil {
			if err := l.storage.SetHardState(plan.hardState); err != nil {
				return fmt.Errorf("memory storage refused the hard state after it was stored: %w", err)
			}
		}
	}
	return nil
}

// commitSnapshot stores a CreateSnapshot in one Pebble batch, applies it to
// Storage() and reports it.
func (l *Log) commitSnapshot(r *snapshotRequest) {
	l.checkDamage()
	if l.failed != nil {
		l.reportSnapshot(r.index, l.refused())
		return
	}
	plan, next, err := l.pos.planSnapshot(r, l.storage.Term)
	if err != nil {
		l.reportSnapshot(r.index, fmt.Errorf("raft log snapshot: %w", err))
		return
	}
	b := l.newBatch(len(r.data) + entryOverhead*int(chunkCount(uint64(len(r.data)))+4))
	err = stageCreatedSnapshot(b, plan)
	staged := b.Len()
	if err == nil {
		if err = l.commitBatch(b, true); err != nil {
			err = fmt.Errorf("commit snapshot %d in %s: %w", r.index, l.dir, err)
		}
	}
	// Release the batch's copy of the data before MemoryStorage makes its
	// own.
	l.closeBatch(b)
	if err == nil {
		err = l.applySnapshot(r, plan)
	}
	if err != nil {
		l.fail(err)
		l.reportSnapshot(r.index, err)
		return
	}
	l.pos = next
	l.counters.snapshotted(staged)
	l.counters.publish(next)
	l.log.Debug().Uint64("index", r.index).Int("bytes", len(r.data)).Uint64("first_index", next.start.index+1).
		Msg("snapshot stored")
	l.reportSnapshot(r.index, nil)
}

// stageCreatedSnapshot adds a created snapshot and its compaction to b.
func stageCreatedSnapshot(b *pebble.Batch, plan snapshotPlan) error {
	if err := stageSnapshotData(b, plan.header, plan.data); err != nil {
		return err
	}
	if c := plan.compact; c.index > 0 {
		if err := b.DeleteRange(entriesFrom(0), entriesThrough(c.index), nil); err != nil {
			return fmt.Errorf("stage compaction to %d: %w", c.index, err)
		}
		if err := b.Set([]byte(logStartKey), c.encode(), nil); err != nil {
			return fmt.Errorf("stage compaction to %d: log start: %w", c.index, err)
		}
	}
	return nil
}

// applySnapshot hands a stored CreateSnapshot to Storage().
func (l *Log) applySnapshot(r *snapshotRequest, plan snapshotPlan) error {
	if _, err := l.storage.CreateSnapshot(r.index, r.confState, nil); err != nil {
		return fmt.Errorf("memory storage refused snapshot %d after it was stored: %w", r.index, err)
	}
	if c := plan.compact.index; c > 0 {
		if err := l.storage.Compact(c); err != nil {
			return fmt.Errorf("memory storage refused compaction to %d after it was stored: %w", c, err)
		}
	}
	return nil
}
