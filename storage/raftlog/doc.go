// Package raftlog is the gateways' durable Raft log store: the raft
// HardState, the log entries and the newest snapshot of one
// go.etcd.io/raft/v3 node, kept in Pebble and mirrored in a
// raft.MemoryStorage that raft reads.
//
// The consensus actor runs raft with AsyncStorageWrites: it turns each
// MsgStorageAppend into a [Write] and steps the responses once
// [Options.OnWritten] reports the Write. [Open] loads what is stored into
// the MemoryStorage that [Log.Storage] returns (raft.Config.Storage);
// afterwards only the store changes it, and only after the disk holds the
// change, so raft never sees a log entry, vote or commit index that a crash
// could take back. [Log.CreateSnapshot] stores a snapshot of the state
// machine and compacts the log behind it. The MemoryStorage holds the
// snapshot's metadata but not its data (the whole state machine encoded):
// [Log.SnapshotData] reads that from disk when it is needed. (This package
// takes the place of storage/metalog, the single leader's metadata log.)
//
// # Writing
//
// [Log.Write] and [Log.CreateSnapshot] only enqueue. One committer goroutine
// takes the first queued request, drains whatever else is already queued
// (up to Options.MaxBatchRequests and MaxBatchBytes) and stores every Write
// of the group in one Pebble batch: one commit and, with Sync, one fsync
// for all of them (none if none of them needs one: see the durability
// contract). Then it applies them to the MemoryStorage in order
// (ApplySnapshot, Append, SetHardState, as MemoryStorage's own methods
// would) and calls OnWritten once with one [Written] per Write, in
// Write-call order. A CreateSnapshot is committed on its own batch after the
// Writes queued before it (it reads their terms), applied with
// MemoryStorage.CreateSnapshot and Compact, and reported through
// OnSnapshot.
//
// Every request is checked before anything is written: a Write whose
// entries leave a gap, whose snapshot is not newer than the stored one or
// whose hard state's commit index would fall outside the log is refused
// with [ErrInvalid]; a CreateSnapshot at an index that is not stored, not
// committed or not above the stored snapshot with [ErrBadSnapshot]. Neither
// affects other requests. If a commit fails, every request in it fails and
// so does every later one ([ErrFailed]); Close the store and Open it again
// to recover. Damage that a Pebble background job (a flush or compaction)
// finds fails every later request the same way, with [ErrCorrupt].
//
// # Durability contract
//
// With Options.Sync set (what callers must use), a Written with a nil Err
// and a nil OnSnapshot error mean the change is on stable storage: it
// survives a process crash, an operating system crash and a power loss (as
// far as the disk honours fsync), with one exception raft allows: a Write
// that only moves the hard state's commit index (no entries, no snapshot,
// the same term and vote) is committed without fsync when no Write of its
// group needs one, since a commit index lost in a crash is learned again
// (etcd's raft.MustSync); a later synced commit makes it durable with
// everything before it. Each Write and each CreateSnapshot is
// applied in one Pebble batch, so a crash never tears one; what survives a
// crash is a prefix, in queue order, of what was committed, and includes
// everything reported.
//
// With Options.Sync false, batches are committed without fsync and
// reported as soon as Pebble has accepted them. That is unsafe for raft:
// Pebble may still hold the newest write-ahead-log records in its own
// memory, so even a process crash can lose reported entries, votes and
// terms (a node could then vote twice in one term), and an operating system
// crash or power loss can lose everything not yet synced. A crash still
// never tears a batch, and what survives is still a prefix.
//
// # Layout
//
// Every value but a snapshot chunk starts with a CRC-32C (4 bytes,
// big-endian) of its key followed by the rest of the value.
//
//   - "l" + index (8 bytes, big-endian): the entry at index, as the
//     protobuf encoding of its raftpb.Entry. Entries are stored exactly
//     for the indexes FirstIndex..LastIndex of the MemoryStorage. Appending
//     an entry at an index already stored first deletes that entry and
//     every later one (a range deletion), which is raft's truncation of a
//     conflicting suffix.
//   - "h": the raftpb.HardState, protobuf-encoded. Absent until raft first
//     stores one.
//   - "o": the log start: index and term (8 bytes each) of the entry just
//     before the first stored one, MemoryStorage's dummy entry, whose term
//     raft still asks for. Absent means 0, 0 (a log never compacted).
//   - "s": the snapshot header: index, term, data length (8 bytes each),
//     chunk count and CRC-32C of the whole data (4 bytes each), then the
//     protobuf-encoded raftpb.ConfState.
//   - "c" + snapshot index (8 bytes) + chunk number (4 bytes, big-endian):
//     the snapshot data in chunks of [ChunkBytes] (1 MiB), without
//     checksums of their own (the header's covers them all).
//
// A snapshot received from the leader replaces everything: it deletes
// every entry and chunk, stores its header and chunks and sets the log
// start to its index and term. CreateSnapshot(index, cs, data, keep)
// replaces the header and chunks and, if index-keep is past the log start,
// deletes the entries up to index-keep and sets the log start there.
//
// Open verifies all of this: every checksum, that the entries follow the
// log start without gaps and with terms that never decrease, that the
// snapshot lies in the log with the term the log has at its index, that the
// chunks are exactly the header's, and that the hard state's commit index
// lies between the log start and the last entry (raft panics otherwise).
// Damage, here or found by Pebble, yields an error wrapping [ErrCorrupt],
// never a panic.
//
// One kind of damage goes unseen, and it is Pebble's: it cannot tell damage
// in the last 32 KiB block of a write-ahead log, or inside a record that
// spans several blocks (a group commit or snapshot larger than 32 KiB),
// from the torn tail a crash leaves, and then silently drops the log from
// there on. The store then opens as an intact but shorter prefix, which
// loses reported writes if the damage came from the disk rather than a
// crash.
package raftlog
