package raftlog

import (
	"encoding/binary"
	"fmt"
)

// Key prefixes and single keys. Every key of the store starts with one of
// these bytes, so the kinds never interleave.
const (
	// entryPrefix + be64(index): one raft entry.
	entryPrefix = 'l'
	// chunkPrefix + be64(snapshot index) + be32(chunk number): a piece of
	// the stored snapshot's data.
	chunkPrefix = 'c'
	// hardStateKey: the raft HardState.
	hardStateKey = "h"
	// snapshotHeaderKey: the stored snapshot's metadata and checksums.
	snapshotHeaderKey = "s"
	// logStartKey: index and term of the entry just before the first
	// stored one (MemoryStorage's dummy entry).
	logStartKey = "o"
)

// Sizes of keys and fixed parts of values.
const (
	// ChunkBytes is the most snapshot data stored under one key.
	ChunkBytes  = 1 << 20
	entryKeyLen = 1 + 8
	chunkKeyLen = 1 + 8 + 4
	checksumLen = 4
)

func entryKey(index uint64) []byte {
	key := make([]byte, entryKeyLen)
	key[0] = entryPrefix
	binary.BigEndian.PutUint64(key[1:], index)
	return key
}

// entriesFrom is the inclusive lower bound of the entries at or after index.
func entriesFrom(index uint64) []byte { return entryKey(index) }

// entriesThrough is the exclusive upper bound of the entries at or below
// index.
func entriesThrough(index uint64) []byte {
	if index == ^uint64(0) {
		return entriesEnd()
	}
	return entryKey(index + 1)
}

// entriesEnd is just past every entry key.
func entriesEnd() []byte { return []byte{entryPrefix + 1} }

func decodeEntryKey(key []byte) (uint64, error) {
	if len(key) != entryKeyLen || key[0] != entryPrefix {
		return 0, fmt.Errorf("entry key %x is malformed: %w", key, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(key[1:]), nil
}

func chunkKey(snapshotIndex uint64, chunk uint32) []byte {
	key := make([]byte, chunkKeyLen)
	key[0] = chunkPrefix
	binary.BigEndian.PutUint64(key[1:9], snapshotIndex)
	binary.BigEndian.PutUint32(key[9:], chunk)
	return key
}

// chunksStart and chunksEnd bound every chunk key of every snapshot.
func chunksStart() []byte { return []byte{chunkPrefix} }
func chunksEnd() []byte   { return []byte{chunkPrefix + 1} }

// chunksOf bounds the chunk keys of the snapshot at index.
func chunksOf(index uint64) (lower, upper []byte) {
	lower = chunkKey(index, 0)
	if index == ^uint64(0) {
		return lower, chunksEnd()
	}
	return lower, chunkKey(index+1, 0)
}
