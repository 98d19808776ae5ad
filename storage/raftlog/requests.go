package raftlog

import (
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Write is one unit of raft's MsgStorageAppend (AsyncStorageWrites): a
// HardState to store (nil or raft.IsEmptyHardState: unchanged), entries to
// append (an entry at an index already stored replaces it and every later
// one: raft's log truncation), and a snapshot received from the leader (nil
// or raft.IsEmptySnap: none; a snapshot replaces the whole log, as
// raft.MemoryStorage.ApplySnapshot does). Order within one Write: snapshot,
// then entries, then hard state. The store keeps the entries (and
// Storage() hands them to raft), so the caller must not modify them, the
// snapshot or the hard state after the call.
type Write struct {
	HardState *raftpb.HardState
	Entries   []*raftpb.Entry
	Snapshot  *raftpb.Snapshot
	// Token is handed back in the Written.
	Token any
}

// Written reports one Write's outcome.
type Written struct {
	// Token is the Write's token.
	Token any
	// Err is nil when the Write is stored (durably with Options.Sync) and
	// visible in Storage(). Otherwise nothing of it is in Storage(); if
	// the error is the commit's own (not ErrInvalid, ErrClosed or
	// ErrFailed), the Write may still have reached the disk and be back
	// after the store is reopened.
	Err error
	// Queued is how long the Write waited for its group commit to start,
	// Commit how long that group commit took (staging, the Pebble commit
	// with its fsync if Synced, and making it visible in Storage(); 0 if
	// the group stored nothing). Together they are what raft waited for
	// this Write (AsyncStorageWrites).
	Queued, Commit time.Duration
	// Synced says the group commit was fsync'd (Options.Sync, and a Write
	// of the group had to be durable: mustSync).
	Synced bool
}

// request is one queued Write or CreateSnapshot.
type request struct {
	write Write
	// queued is when Write queued it.
	queued time.Time
	// snapshot, if set, makes this a CreateSnapshot.
	snapshot *snapshotRequest
}

// snapshotRequest is one CreateSnapshot call.
type snapshotRequest struct {
	index     uint64
	confState *raftpb.ConfState
	data      []byte
	keep      uint64
}

// size is the data bytes the request adds to a group commit.
func (r request) size() int {
	if r.snapshot != nil {
		return len(r.snapshot.data)
	}
	n := len(r.write.Snapshot.GetData())
	for _, e := range r.write.Entries {
		n += len(e.GetData())
	}
	return n
}
