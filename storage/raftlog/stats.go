package raftlog

import "sync/atomic"

// Stats are the store's counters. The counts are since Open.
type Stats struct {
	// Entries is the number of entries stored (an entry rewritten by a
	// truncation counts again).
	Entries uint64
	// Writes is the number of Writes stored.
	Writes uint64
	// Commits is the number of Pebble batches committed: group commits of
	// Writes and CreateSnapshots. With Options.Sync each is one fsync,
	// except a group whose every Write only moved the commit index
	// (mustSync; Written.Synced says which were).
	Commits uint64
	// Snapshots is the number of CreateSnapshots stored.
	Snapshots uint64
	// SnapshotsReceived is the number of Writes with a snapshot stored.
	SnapshotsReceived uint64
	// BytesWritten is the size of the committed Pebble batches: keys,
	// values and Pebble's batch framing.
	BytesWritten uint64
	// FirstIndex and LastIndex bound the entries in Storage(); FirstIndex
	// is LastIndex+1 when there are none.
	FirstIndex, LastIndex uint64
	// SnapshotIndex is the stored snapshot's index (0: none).
	SnapshotIndex uint64
	// MemoryBytes is what Pebble holds in memory for the log (memtables
	// and block cache, pebbledb.MemoryBytes), as measured after a commit
	// at most memoryCheckInterval ago, or at Open.
	MemoryBytes uint64
}

// counters back Stats and Empty; the committer writes them, anyone reads.
type counters struct {
	entries, writes, commits, snapshots, received, bytes atomic.Uint64
	firstIndex, lastIndex, snapshotIndex                 atomic.Uint64
	memoryBytes                                          atomic.Uint64
	// empty is set at Open when nothing is stored and cleared by the first
	// commit that stores something.
	empty atomic.Bool
}

// publish records the log's position after a commit.
func (c *counters) publish(p position) {
	c.firstIndex.Store(p.start.index + 1)
	c.lastIndex.Store(p.last)
	c.snapshotIndex.Store(p.snapshotIndex)
}

// wrote counts a group of Writes; batchBytes is the size of the Pebble
// batch committed for it (0: nothing needed storing, nothing committed).
func (c *counters) wrote(plans []writePlan, accepted []bool, batchBytes int) {
	var writes, entries, received uint64
	for i, plan := range plans {
		if !accepted[i] {
			continue
		}
		writes++
		entries += uint64(len(plan.entries))
		if plan.snapshot != nil {
			received++
		}
	}
	c.writes.Add(writes)
	c.entries.Add(entries)
	c.received.Add(received)
	if batchBytes > 0 {
		c.commits.Add(1)
		c.bytes.Add(uint64(batchBytes))
		c.empty.Store(false)
	}
}

// snapshotted counts a committed CreateSnapshot of batchBytes.
func (c *counters) snapshotted(batchBytes int) {
	c.snapshots.Add(1)
	c.commits.Add(1)
	c.bytes.Add(uint64(batchBytes))
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	c := &l.counters
	return Stats{
		Entries:           c.entries.Load(),
		Writes:            c.writes.Load(),
		Commits:           c.commits.Load(),
		Snapshots:         c.snapshots.Load(),
		SnapshotsReceived: c.received.Load(),
		BytesWritten:      c.bytes.Load(),
		FirstIndex:        c.firstIndex.Load(),
		LastIndex:         c.lastIndex.Load(),
		SnapshotIndex:     c.snapshotIndex.Load(),
		MemoryBytes:       c.memoryBytes.Load(),
	}
}
