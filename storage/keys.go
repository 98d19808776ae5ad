package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// messagePrefix is the first byte of every message key.
const messagePrefix = 'm'

// keyLen is the length of a message key: prefix, id, version.
const keyLen = 1 + 8 + 8

// checksumLen is the length of the CRC-32C that starts every stored value.
const checksumLen = 4

// castagnoli is the CRC-32C table. It is built once and never modified.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeKey returns the Pebble key of message (id, version).
func encodeKey(id int64, version uint64) []byte {
	key := make([]byte, keyLen)
	key[0] = messagePrefix
	binary.BigEndian.PutUint64(key[1:9], uint64(id)^(1<<63))
	binary.BigEndian.PutUint64(key[9:17], version)
	return key
}

// decodeKey splits a message key into id and version.
func decodeKey(key []byte) (id int64, version uint64, err error) {
	if len(key) != keyLen || key[0] != messagePrefix {
		return 0, 0, fmt.Errorf("decode key %x: not a message key: %w", key, ErrCorrupt)
	}
	id = int64(binary.BigEndian.Uint64(key[1:9]) ^ (1 << 63))
	version = binary.BigEndian.Uint64(key[9:17])
	return id, version, nil
}

// messagesLowerBound and messagesUpperBound delimit every message key.
func messagesLowerBound() []byte { return []byte{messagePrefix} }

func messagesUpperBound() []byte { return []byte{messagePrefix + 1} }

// checksum computes the CRC-32C over the key's id and version followed by the
// payload.
func checksum(key, payload []byte) uint32 {
	sum := crc32.Checksum(key[1:keyLen], castagnoli)
	return crc32.Update(sum, castagnoli, payload)
}

// valueLen is the length of the stored value for a payload of n bytes.
func valueLen(n int) int { return checksumLen + n }

// encodeValue writes the stored value for payload under key into value,
// which is valueLen(len(payload)) bytes long.
func encodeValue(value, key, payload []byte) {
	binary.BigEndian.PutUint32(value, checksum(key, payload))
	copy(value[checksumLen:], payload)
}

// decodeValue verifies a stored value and returns its payload (a sub-slice of
// value).
func decodeValue(key, value []byte) ([]byte, error) {
	if len(value) < checksumLen {
		return nil, fmt.Errorf("value of %d bytes is shorter than its checksum: %w", len(value), ErrCorrupt)
	}
	payload := value[checksumLen:]
	want := binary.BigEndian.Uint32(value)
	if got := checksum(key, payload); got != want {
		return nil, fmt.Errorf("checksum mismatch: stored %08x, computed %08x: %w", want, got, ErrCorrupt)
	}
	return payload, nil
}

// storedPayloadLen is the payload length a stored value accounts for in
// Stats.Bytes; a value too short to hold a checksum counts as zero.
func storedPayloadLen(value []byte) int64 {
	if len(value) < checksumLen {
		return 0
	}
	return int64(len(value) - checksumLen)
}
