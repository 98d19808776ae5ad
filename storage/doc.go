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
//
// # On-disk layout
//
// Key: the byte 'm', the id as 8 bytes big-endian with the sign bit flipped
// (so negative ids sort before positive ones), the version as 8 bytes
// big-endian. Value: the 4-byte big-endian CRC-32C followed by the payload.
package storage
