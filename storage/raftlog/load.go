package raftlog

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// corruption marks Pebble's own damage errors with ErrCorrupt.
func corruption(err error) error {
	err = pebbledb.Readable(err)
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// get returns a copy of the value stored under key, or found false.
func get(db pebble.Reader, key string) (value []byte, found bool, err error) {
	v, closer, err := db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, corruption(err)
	}
	value = append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, err
	}
	return value, true, nil
}

// stored is what load read before it builds the MemoryStorage.
type stored struct {
	start       logStart
	header      snapshotHeader
	hasSnapshot bool
	hardState   *raftpb.HardState
	entries     []*raftpb.Entry
}

// load reads and verifies the store and fills ms with it: the log start
// and the stored snapshot, the entries after the log start and the hard
// state, so that ms equals the MemoryStorage that was kept in step with the
// disk before. It returns the log's position.
func load(db *pebble.DB, ms *raft.MemoryStorage) (position, error) {
	s, err := readStored(db)
	if err != nil {
		return position{}, err
	}
	if err := s.check(); err != nil {
		return position{}, err
	}
	// The snapshot's data is read to verify it, and then dropped:
	// Storage() holds snapshots without their data (Log.SnapshotData).
	if s.hasSnapshot {
		if _, err := readSnapshotData(db, s.header); err != nil {
			return position{}, err
		}
	} else if err := checkNoChunks(db); err != nil {
		return position{}, err
	}

	// MemoryStorage's dummy entry comes from ApplySnapshot. When the stored
	// snapshot is at the log start, it is that snapshot; otherwise it was
	// created after the log start and goes in after the entries, as
	// CreateSnapshot put it there.
	if s.start.index > 0 {
		snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(s.start.index), Term: new(s.start.term)}}
		if s.header.index == s.start.index {
			snap.Metadata.ConfState = s.header.confState
		}
		if err := ms.ApplySnapshot(snap); err != nil {
			return position{}, fmt.Errorf("load log start %d: %w", s.start.index, err)
		}
	}
	if err := ms.Append(s.entries); err != nil {
		return position{}, fmt.Errorf("load entries: %w", err)
	}
	if s.hasSnapshot && s.header.index > s.start.index {
		if _, err := ms.CreateSnapshot(s.header.index, s.header.confState, nil); err != nil {
			return position{}, fmt.Errorf("load snapshot %d: %w", s.header.index, err)
		}
	}
	if s.hardState != nil {
		if err := ms.SetHardState(s.hardState); err != nil {
			return position{}, fmt.Errorf("load hard state: %w", err)
		}
	}
	pos := position{
		start:         s.start,
		last:          s.start.index + uint64(len(s.entries)),
		snapshotIndex: s.header.index,
		confState:     s.header.confState,
		hardState:     s.hardState,
	}
	return pos, nil
}

// readStored reads the single-key records and the entries.
func readStored(db *pebble.DB) (stored, error) {
	var s stored
	value, found, err := get(db, logStartKey)
	if err != nil {
		return stored{}, fmt.Errorf("read log start: %w", err)
	}
	if found {
		if s.start, err = decodeLogStart(value); err != nil {
			return stored{}, err
		}
	}
	value, found, err = get(db, snapshotHeaderKey)
	if err != nil {
		return stored{}, fmt.Errorf("read snapshot header: %w", err)
	}
	if found {
		if s.header, err = decodeSnapshotHeader(value); err != nil {
			return stored{}, err
		}
		s.hasSnapshot = true
	}
	value, found, err = get(db, hardStateKey)
	if err != nil {
		return stored{}, fmt.Errorf("read hard state: %w", err)
	}
	if found {
		if s.hardState, err = decodeHardState(value); err != nil {
			return stored{}, err
		}
	}
	if s.entries, err = readEntries(db, s.start); err != nil {
		return stored{}, err
	}
	return s, nil
}

// readEntries reads and verifies every stored entry: they must follow the
// log start without gaps, with terms that never decrease.
func readEntries(db *pebble.DB, start logStart) ([]*raftpb.Entry, error) {
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: entriesFrom(0), UpperBound: entriesEnd()})
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer func() { _ = iter.Close() }()
	var entries []*raftpb.Entry
	next, term := start.index+1, start.term
	for valid := iter.First(); valid; valid = iter.Next() {
		index, err := decodeEntryKey(iter.Key())
		if err != nil {
			return nil, err
		}
		if index != next {
			return nil, fmt.Errorf("entry %d stored where entry %d belongs (log start %d): %w", index, next, start.index, ErrCorrupt)
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read entry %d: %w", index, corruption(err))
		}
		e, err := decodeEntry(index, iter.Key(), value)
		if err != nil {
			return nil, err
		}
		if e.GetTerm() < term {
			return nil, fmt.Errorf("entry %d has term %d after term %d: %w", index, e.GetTerm(), term, ErrCorrupt)
		}
		entries = append(entries, e)
		next, term = next+1, e.GetTerm()
	}
	if err := iter.Error(); err != nil {
		return nil, fmt.Errorf("read entries: %w", corruption(err))
	}
	return entries, nil
}

// check verifies that the records fit together.
func (s stored) check() error {
	last := s.start.index + uint64(len(s.entries))
	if s.start.index > 0 && !s.hasSnapshot {
		return fmt.Errorf("log starts after %d but no snapshot is stored: %w", s.start.index, ErrCorrupt)
	}
	if s.hasSnapshot {
		h := s.header
		if h.index < s.start.index || h.index > last {
			return fmt.Errorf("snapshot %d lies outside the log [%d, %d]: %w", h.index, s.start.index, last, ErrCorrupt)
		}
		term := s.start.term
		if h.index > s.start.index {
			term = s.entries[h.index-s.start.index-1].GetTerm()
		}
		if h.term != term {
			return fmt.Errorf("snapshot %d has term %d, the log has term %d there: %w", h.index, h.term, term, ErrCorrupt)
		}
	}
	if !raft.IsEmptyHardState(s.hardState) {
		if c := s.hardState.GetCommit(); c < s.start.index || c > last {
			return fmt.Errorf("hard state commit %d is outside the log [%d, %d]: %w", c, s.start.index, last, ErrCorrupt)
		}
	}
	return nil
}

// checkNoChunks verifies that no snapshot data is stored without a header.
func checkNoChunks(db *pebble.DB) error {
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: chunksStart(), UpperBound: chunksEnd()})
	if err != nil {
		return fmt.Errorf("read snapshot chunks: %w", err)
	}
	defer func() { _ = iter.Close() }()
	if iter.First() {
		return fmt.Errorf("snapshot chunk %x stored without a snapshot header: %w", iter.Key(), ErrCorrupt)
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("read snapshot chunks: %w", corruption(err))
	}
	return nil
}
