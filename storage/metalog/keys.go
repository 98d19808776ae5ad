package metalog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Key prefixes.
const (
	entryPrefix = 'e'
	chunkPrefix = 'c'
	headerKey   = "h"
)

// Sizes of the stored pieces.
const (
	// ChunkBytes is the largest snapshot chunk stored under one key.
	ChunkBytes  = 1 << 20
	checksumLen = 4
	entryKeyLen = 1 + 8
	chunkKeyLen = 1 + 8 + 4
	// headerLen: seq, chunk count, total length, snapshot CRC, header CRC.
	headerLen = 8 + 4 + 8 + 4 + 4
)

// castagnoli is the CRC-32C table. It is built once and never modified.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entryKey(seq uint64) []byte {
	key := make([]byte, entryKeyLen)
	key[0] = entryPrefix
	binary.BigEndian.PutUint64(key[1:], seq)
	return key
}

// entryThroughBound is just past the key of entry seq: the exclusive upper
// bound of the entries <= seq.
func entryThroughBound(seq uint64) []byte {
	if seq == ^uint64(0) {
		return entriesUpperBound()
	}
	return entryKey(seq + 1)
}

// entriesUpperBound is just past every entry key.
func entriesUpperBound() []byte { return []byte{entryPrefix + 1} }

func decodeEntryKey(key []byte) (uint64, error) {
	if len(key) != entryKeyLen || key[0] != entryPrefix {
		return 0, fmt.Errorf("entry key %x is malformed: %w", key, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(key[1:]), nil
}

// entryChecksum is the CRC-32C over the big-endian seq followed by data.
func entryChecksum(seq uint64, data []byte) uint32 {
	var seqBytes [8]byte
	binary.BigEndian.PutUint64(seqBytes[:], seq)
	return crc32.Update(crc32.Checksum(seqBytes[:], castagnoli), castagnoli, data)
}

func encodeEntry(seq uint64, data []byte) []byte {
	value := make([]byte, checksumLen+len(data))
	binary.BigEndian.PutUint32(value, entryChecksum(seq, data))
	copy(value[checksumLen:], data)
	return value
}

// decodeEntry verifies an entry value and returns its data (a sub-slice).
func decodeEntry(seq uint64, value []byte) ([]byte, error) {
	if len(value) < checksumLen {
		return nil, fmt.Errorf("entry %d: value of %d bytes is shorter than its checksum: %w", seq, len(value), ErrCorrupt)
	}
	data := value[checksumLen:]
	want := binary.BigEndian.Uint32(value)
	if got := entryChecksum(seq, data); got != want {
		return nil, fmt.Errorf("entry %d: checksum mismatch: stored %08x, computed %08x: %w", seq, want, got, ErrCorrupt)
	}
	return data, nil
}

func chunkKey(seq uint64, index uint32) []byte {
	key := make([]byte, chunkKeyLen)
	key[0] = chunkPrefix
	binary.BigEndian.PutUint64(key[1:9], seq)
	binary.BigEndian.PutUint32(key[9:], index)
	return key
}

// chunkSeqLowerBound is the first chunk key of snapshot seq.
func chunkSeqLowerBound(seq uint64) []byte { return chunkKey(seq, 0) }

// chunkSeqUpperBound is just past every chunk key of snapshot seq.
func chunkSeqUpperBound(seq uint64) []byte {
	if seq == ^uint64(0) {
		return []byte{chunkPrefix + 1}
	}
	return chunkKey(seq+1, 0)
}

// chunksLowerBound is at or before every chunk key.
func chunksLowerBound() []byte { return []byte{chunkPrefix} }

// snapshotHeader describes the stored snapshot.
type snapshotHeader struct {
	seq      uint64
	chunks   uint32
	totalLen uint64
	checksum uint32 // CRC-32C of the whole snapshot
}

func (h snapshotHeader) encode() []byte {
	value := make([]byte, headerLen)
	binary.BigEndian.PutUint64(value[0:8], h.seq)
	binary.BigEndian.PutUint32(value[8:12], h.chunks)
	binary.BigEndian.PutUint64(value[12:20], h.totalLen)
	binary.BigEndian.PutUint32(value[20:24], h.checksum)
	binary.BigEndian.PutUint32(value[24:28], crc32.Checksum(value[:24], castagnoli))
	return value
}

func decodeHeader(value []byte) (snapshotHeader, error) {
	if len(value) != headerLen {
		return snapshotHeader{}, fmt.Errorf("snapshot header is %d bytes, want %d: %w", len(value), headerLen, ErrCorrupt)
	}
	if got, want := crc32.Checksum(value[:24], castagnoli), binary.BigEndian.Uint32(value[24:28]); got != want {
		return snapshotHeader{}, fmt.Errorf("snapshot header checksum mismatch: stored %08x, computed %08x: %w", want, got, ErrCorrupt)
	}
	h := snapshotHeader{
		seq:      binary.BigEndian.Uint64(value[0:8]),
		chunks:   binary.BigEndian.Uint32(value[8:12]),
		totalLen: binary.BigEndian.Uint64(value[12:20]),
		checksum: binary.BigEndian.Uint32(value[20:24]),
	}
	if want := (h.totalLen + ChunkBytes - 1) / ChunkBytes; uint64(h.chunks) != want {
		return snapshotHeader{}, fmt.Errorf("snapshot header: %d chunks for %d bytes, want %d: %w", h.chunks, h.totalLen, want, ErrCorrupt)
	}
	return h, nil
}
