// Package storage is a member node's durable message store: a Pebble
// database holding opaque message payloads keyed by (id, version), written by
// a single group-committing goroutine.
//
// # Writing
//
// Callers hand operations to [Store.Submit], which only enqueues them. One
// committer goroutine takes the first queued operation, drains whatever else
// is already queued (up to Options.MaxBatchOps operations and
// Options.MaxBatchBytes payload bytes), applies the whole group to one Pebble
// batch and commits it. Options.OnCommit is then called once with one
// [Result] per operation, in submission order. Under load one commit, and so
// one fsync, serves hundreds of operations: latency is about one fsync and
// throughput is batch size divided by fsync time.
//
// # Operations and counters
//
// Writing reads nothing, so a write costs the same however far the store
// has outgrown its block cache. [OpPut] stores one (id, version); each one
// is to be put once (the leader never sends a member the same version
// twice). A second put of the same key replaces the payload but is
// counted as another record. [OpDelete] removes exactly one (id, version)
// with a point delete; the caller passes the payload size in Op.Size,
// since the store does not read the record to learn it. A delete counts
// one record and Op.Size bytes as gone even if the key was not stored or
// held a payload of another size: garbage in, garbage out. Stats.Messages
// and Stats.Bytes are therefore exact only while callers keep to these
// rules; Open counts what is really stored, so they are right again after
// a reopen. Within one group commit the operations take effect in
// submission order: of a put and a delete of the same key, the later one
// wins.
//
// # Durability contract
//
// With Options.Sync set (what callers should use), a Result with a nil Err
// means the write is on stable storage: it survives a process crash, an
// operating system crash and a power loss (as far as the disk honours fsync).
//
// With Options.Sync false the batch is committed without fsync and the Result
// is delivered as soon as Pebble has accepted it. That is unsafe: Pebble may
// still hold the newest write-ahead-log records in its own memory buffer, so
// even a process crash can lose the most recently acknowledged writes (usually
// a few milliseconds' worth), and an operating system crash or power loss can
// lose everything not yet synced. In both modes a crash never leaves a torn
// batch: after reopening, a batch is either wholly present or wholly absent,
// and the surviving batches are a prefix of the committed ones.
//
// # Integrity
//
// Every stored value carries a CRC-32C (Castagnoli) over the key's id and
// version and the payload. [Store.Get] verifies it and reports a mismatch as an
// error wrapping [ErrCorrupt]; a missing record is reported as [ErrNotFound].
// Pebble checksums every block of its files too; a block that fails its
// checksum also makes Get report [ErrCorrupt]. Damaged bytes are never
// returned.
//
// [Store.Close] flushes the memtable into an sstable, so a cleanly closed
// store holds everything in sstables and reopening it replays no
// write-ahead log.
//
// # Damaged files
//
// What Pebble v2.1.7 does with damaged files, as observed by corrupting
// them (the tests in corruption_test.go pin it), and what the store makes
// of it:
//
//   - Bytes flipped in an sstable data block: Pebble opens the database
//     (it reads no data block on open). Reading a key in that block fails
//     with a checksum mismatch marked as Pebble corruption; other keys read
//     fine. Open counts the records, meets the damaged block, skips it (see
//     [Store.Damage]) and succeeds: Get reports [ErrCorrupt] for the keys
//     in the block and serves the rest, and a put into the block's key
//     range rewrites the record. Pebble's default handler for corruption
//     calls Logger.Fatalf on every damaged read, so the store installs its
//     own, which only logs.
//   - Bytes flipped in an sstable's index, properties or footer: every read
//     of that table fails the same way, so all its records are reported
//     corrupt. Pebble's table-statistics loader retried such a table in a
//     tight loop (measured: a full CPU core, about 5,000 errors a second,
//     for as long as the database was open); the store turns table
//     statistics off, which only costs compactions their estimate of how
//     much space deletion tombstones would free.
//   - A truncated sstable: Pebble's Open fails its size check ("object size
//     mismatch"), an error Pebble does not mark as corruption; a deleted
//     sstable fails Open with a not-exist error. Open reports both as
//     [ErrCorruptStore].
//   - Bytes flipped in the middle of a write-ahead log (after a crash; a
//     cleanly closed store has nothing in its log): Pebble fails Open with
//     a corruption error, which Open reports as [ErrCorruptStore]. This
//     needs the WAL sync chunks of the on-disk format the store selects;
//     with Pebble's default (oldest) format the same damage was silently
//     taken for the end of the log, dropping every acknowledged record after
//     it. The first log of a newly created store is still written in the
//     old format, and damage in the last record of the newest log is always
//     taken for a write torn by the crash.
//   - A damaged MANIFEST: Pebble starts a new MANIFEST at every open with
//     a snapshot record, then appends one record per flush or compaction.
//     Damage to the snapshot (the file emptied, cut in half, or bytes
//     flipped in its middle) fails Open with "malformed manifest", a
//     corruption error: [ErrCorruptStore]. Damage to a later record (the
//     file cut short by one byte) is taken for the end of the MANIFEST and
//     the database opens as of the last intact record; in the test no record
//     was lost, because the flush the lost record described was replayed
//     from the write-ahead log.
//   - A background compaction that reads a damaged block fails with a
//     corruption error, and Pebble schedules it again at once, with no
//     backoff (measured: about 150 failed compactions a second and half a
//     CPU core, for as long as the database was open). The store therefore
//     closes itself on the first such error and reports it through
//     Options.OnCorruptStore; if it happens while Open runs, Open fails with
//     [ErrCorruptStore]. No Pebble option stops the retries.
//
// # Full disks
//
// What Pebble v2.1.7 does when its disk fills up, as read in its source and
// observed on a small tmpfs, and what the store makes of it:
//
//   - A commit whose write-ahead-log write or sync fails (ENOSPC) makes
//     Pebble call Logger.Fatalf ("pebble: fatal commit error", db.go:885)
//     on the committing goroutine, and Pebble would report success if
//     Fatalf returned. The logger panics; the committer recovers it,
//     fails the ops of the batch, stops committing and closes the store
//     without flushing (Options.OnWriteFailure). Every write acknowledged
//     before is durable: a read-only reopen serves it. With Options.Sync
//     off, the failure can instead surface at the next commit, where
//     Pebble panics with its commit lock held (db.go:997): the store then
//     cannot close Pebble (it would block forever), so it keeps it open for
//     Get until the process exits ([ErrWedged]).
//   - A failed flush or compaction is reported as a background error and
//     retried at once, with no backoff, for as long as the disk is full
//     (measured: about 100 attempts a second). Pebble's log of them is rate
//     limited. While the memtables cannot be flushed, a read-write Open
//     that has a write-ahead log to replay never returns: it waits for
//     the replay's flush. Open with Options.ReadOnly writes nothing (but an
//     empty LOCK file), replays the log into memory and serves reads.
//   - Pebble still ends the process in two places this package cannot
//     reach: a failed MANIFEST write after a flush or compaction
//     (version_set.go:671, Fatalf on Pebble's own goroutine), and a failed
//     write-ahead-log rotation (db.go:2822 and db.go:2835 panic while a
//     deferred unlock of an already unlocked mutex turns the panic into a
//     fatal runtime error). Both need the disk to fill past the point
//     where the store stopped taking puts.
//
// The store's answer is not to get there: with Options.Space it refuses
// puts, before each group commit, while the free space is under a
// watermark (see package diskspace) that leaves room for what Pebble
// writes on its own after the last put (the write-ahead log, memtable
// flushes, compactions). Deletes are still committed.
//
// # On-disk layout
//
// Key: the byte 'm', the id as 8 bytes big-endian with the sign bit flipped
// (so negative ids sort before positive ones), the version as 8 bytes
// big-endian. Value: the 4-byte big-endian CRC-32C followed by the payload.
package storage
