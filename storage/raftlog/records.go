package raftlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// castagnoli is the CRC-32C table. It is built once and never modified.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordChecksum is the CRC-32C of key followed by payload. Covering the key
// means a value moved under another key fails verification too.
func recordChecksum(key, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, payload)
}

// sealRecord turns buf, whose first checksumLen bytes are reserved and whose
// rest is the payload, into a stored value by writing the checksum.
func sealRecord(key, buf []byte) []byte {
	binary.BigEndian.PutUint32(buf, recordChecksum(key, buf[checksumLen:]))
	return buf
}

// openRecord verifies a stored value and returns its payload (a sub-slice).
func openRecord(what string, key, value []byte) ([]byte, error) {
	if len(value) < checksumLen {
		return nil, fmt.Errorf("%s: value of %d bytes is shorter than its checksum: %w", what, len(value), ErrCorrupt)
	}
	payload := value[checksumLen:]
	want := binary.BigEndian.Uint32(value)
	if got := recordChecksum(key, payload); got != want {
		return nil, fmt.Errorf("%s: checksum mismatch: stored %08x, computed %08x: %w", what, want, got, ErrCorrupt)
	}
	return payload, nil
}

// appendEntryValue appends the stored value of e (kept under key) to dst,
// which must be empty, and returns it.
func appendEntryValue(dst, key []byte, e *raftpb.Entry) ([]byte, error) {
	buf := append(dst, make([]byte, checksumLen)...)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, e)
	if err != nil {
		return nil, fmt.Errorf("encode entry %d: %w", e.GetIndex(), err)
	}
	return sealRecord(key, buf), nil
}

// decodeEntry verifies the value stored as entry index and decodes it.
func decodeEntry(index uint64, key, value []byte) (*raftpb.Entry, error) {
	what := fmt.Sprintf("entry %d", index)
	payload, err := openRecord(what, key, value)
	if err != nil {
		return nil, err
	}
	e := &raftpb.Entry{}
	if err := proto.Unmarshal(payload, e); err != nil {
		return nil, fmt.Errorf("%s: decode: %v: %w", what, err, ErrCorrupt)
	}
	if e.GetIndex() != index {
		return nil, fmt.Errorf("%s: holds index %d: %w", what, e.GetIndex(), ErrCorrupt)
	}
	return e, nil
}

func encodeHardState(hs *raftpb.HardState) ([]byte, error) {
	buf, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, checksumLen), hs)
	if err != nil {
		return nil, fmt.Errorf("encode hard state: %w", err)
	}
	return sealRecord([]byte(hardStateKey), buf), nil
}

func decodeHardState(value []byte) (*raftpb.HardState, error) {
	payload, err := openRecord("hard state", []byte(hardStateKey), value)
	if err != nil {
		return nil, err
	}
	hs := &raftpb.HardState{}
	if err := proto.Unmarshal(payload, hs); err != nil {
		return nil, fmt.Errorf("hard state: decode: %v: %w", err, ErrCorrupt)
	}
	return hs, nil
}

// logStart is MemoryStorage's dummy entry: the index and term of the entry
// just before the first stored one. The zero value is a new log's.
type logStart struct {
	index, term uint64
}

const logStartLen = checksumLen + 8 + 8

func (s logStart) encode() []byte {
	buf := make([]byte, logStartLen)
	binary.BigEndian.PutUint64(buf[4:12], s.index)
	binary.BigEndian.PutUint64(buf[12:20], s.term)
	return sealRecord([]byte(logStartKey), buf)
}

func decodeLogStart(value []byte) (logStart, error) {
	payload, err := openRecord("log start", []byte(logStartKey), value)
	if err != nil {
		return logStart{}, err
	}
	if len(payload) != logStartLen-checksumLen {
		return logStart{}, fmt.Errorf("log start: %d bytes, want %d: %w", len(value), logStartLen, ErrCorrupt)
	}
	return logStart{index: binary.BigEndian.Uint64(payload[0:8]), term: binary.BigEndian.Uint64(payload[8:16])}, nil
}

// snapshotHeader describes the stored snapshot: its metadata and how its
// data is laid out in chunks.
type snapshotHeader struct {
	index, term uint64
	confState   *raftpb.ConfState
	dataLen     uint64
	chunks      uint32
	dataCRC     uint32 // CRC-32C of the whole data
}

// snapshotHeaderFixed is the header's length without its ConfState.
const snapshotHeaderFixed = checksumLen + 8 + 8 + 8 + 4 + 4

// chunkCount is the number of chunks dataLen bytes take.
func chunkCount(dataLen uint64) uint64 { return (dataLen + ChunkBytes - 1) / ChunkBytes }

func (h snapshotHeader) encode() ([]byte, error) {
	buf := make([]byte, snapshotHeaderFixed)
	binary.BigEndian.PutUint64(buf[4:12], h.index)
	binary.BigEndian.PutUint64(buf[12:20], h.term)
	binary.BigEndian.PutUint64(buf[20:28], h.dataLen)
	binary.BigEndian.PutUint32(buf[28:32], h.chunks)
	binary.BigEndian.PutUint32(buf[32:36], h.dataCRC)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, h.confState)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot %d conf state: %w", h.index, err)
	}
	return sealRecord([]byte(snapshotHeaderKey), buf), nil
}

func decodeSnapshotHeader(value []byte) (snapshotHeader, error) {
	payload, err := openRecord("snapshot header", []byte(snapshotHeaderKey), value)
	if err != nil {
		return snapshotHeader{}, err
	}
	if len(payload) < snapshotHeaderFixed-checksumLen {
		return snapshotHeader{}, fmt.Errorf("snapshot header: %d bytes, want at least %d: %w", len(value), snapshotHeaderFixed, ErrCorrupt)
	}
	h := snapshotHeader{
		index:     binary.BigEndian.Uint64(payload[0:8]),
		term:      binary.BigEndian.Uint64(payload[8:16]),
		dataLen:   binary.BigEndian.Uint64(payload[16:24]),
		chunks:    binary.BigEndian.Uint32(payload[24:28]),
		dataCRC:   binary.BigEndian.Uint32(payload[28:32]),
		confState: &raftpb.ConfState{},
	}
	if err := proto.Unmarshal(payload[32:], h.confState); err != nil {
		return snapshotHeader{}, fmt.Errorf("snapshot header: decode conf state: %v: %w", err, ErrCorrupt)
	}
	if uint64(h.chunks) != chunkCount(h.dataLen) {
		return snapshotHeader{}, fmt.Errorf("snapshot header: %d chunks for %d bytes, want %d: %w",
			h.chunks, h.dataLen, chunkCount(h.dataLen), ErrCorrupt)
	}
	if h.index == 0 {
		return snapshotHeader{}, fmt.Errorf("snapshot header: index 0: %w", ErrCorrupt)
	}
	return h, nil
}
