// Package metalog is the gateway leader's durable metadata log: an ordered,
// group-committed sequence of opaque entries plus an occasional snapshot that
// replaces every entry up to its sequence number, all kept in Pebble.
//
// The leader changes its metadata only by applying entries from this log,
// and only after [Options.OnCommit] reports them durable. On start it calls
// [Log.Load] once to rebuild its state from the newest snapshot and the
// entries after it. (A Raft log is meant to take this package's place later;
// the API is shaped so that the leader's code does not change much.)
//
// # Writing
//
// [Log.Append] and [Log.Snapshot] only enqueue. Append assigns sequence
// numbers in call order, starting after the last stored one. One committer
// goroutine takes the first queued request, drains whatever else is already
// queued, writes the whole group in one Pebble batch and commits it; then it
// calls OnCommit once with the batch's entries in append order, and
// OnSnapshot for each snapshot in the batch. A snapshot at seq stores its data
// and deletes every entry <= seq in the same batch, so a crash never leaves
// both or neither.
//
// If a commit fails, every request in it fails and so does every later one
// (the log never has gaps); Close the log and Open it again to recover.
//
// # Durability contract
//
// With Options.Sync set (what callers should use), a Committed with a nil Err
// and a nil OnSnapshot error mean the write is on stable storage: it survives
// a process crash, an operating system crash and a power loss (as far as the
// disk honours fsync).
//
// With Options.Sync false batches are committed without fsync and reported as
// soon as Pebble has accepted them. That is unsafe: Pebble may still hold the
// newest write-ahead-log records in its own memory, so even a process crash
// can lose the most recently reported entries, and an operating system crash
// or power loss can lose everything not yet synced. In both modes a crash
// never tears a batch, and what survives is a prefix of what was committed.
//
// # Integrity and layout
//
// Entry seq is stored under 'e' + seq (8 bytes big-endian) with the value
// CRC-32C(seq || data) + data. The snapshot is stored in chunks of at most
// 1 MiB under 'c' + seq + chunk index (4 bytes big-endian) and described by
// the header key "h": seq, chunk count, total length, CRC-32C of the whole
// snapshot and a CRC-32C of the header itself. Load verifies all of these and
// that entries follow the snapshot without gaps; a failure is an error
// wrapping [ErrCorrupt].
package metalog
