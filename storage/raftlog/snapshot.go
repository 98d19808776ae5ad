package raftlog

import (
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"
)

// maxSnapshotBytes bounds the data length a stored header may claim before
// Open allocates a buffer for it; a larger claim is taken as damage.
const maxSnapshotBytes = 1 << 36

// stageSnapshotData adds to b the deletion of every stored chunk, then
// header (its data length, chunk count and checksum filled in from data) and
// data in chunks of ChunkBytes. The batch copies the data; no other copy is
// made.
func stageSnapshotData(b *pebble.Batch, header snapshotHeader, data []byte) error {
	if err := b.DeleteRange(chunksStart(), chunksEnd(), nil); err != nil {
		return fmt.Errorf("stage snapshot %d: delete old chunks: %w", header.index, err)
	}
	header.dataLen = uint64(len(data))
	header.chunks = uint32(chunkCount(header.dataLen))
	header.dataCRC = crc32.Checksum(data, castagnoli)
	for i := range header.chunks {
		start := int(i) * ChunkBytes
		end := min(start+ChunkBytes, len(data))
		if err := b.Set(chunkKey(header.index, i), data[start:end], nil); err != nil {
			return fmt.Errorf("stage snapshot %d: chunk %d: %w", header.index, i, err)
		}
	}
	value, err := header.encode()
	if err != nil {
		return err
	}
	if err := b.Set([]byte(snapshotHeaderKey), value, nil); err != nil {
		return fmt.Errorf("stage snapshot %d: header: %w", header.index, err)
	}
	return nil
}

// readSnapshotData reads and verifies the chunks header describes. Every
// stored chunk must belong to it.
func readSnapshotData(db pebble.Reader, header snapshotHeader) ([]byte, error) {
	if header.dataLen > maxSnapshotBytes {
		return nil, fmt.Errorf("snapshot %d: header claims %d bytes: %w", header.index, header.dataLen, ErrCorrupt)
	}
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: chunksStart(), UpperBound: chunksEnd()})
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", header.index, err)
	}
	defer func() { _ = iter.Close() }()
	data := make([]byte, 0, header.dataLen)
	var chunks uint32
	for valid := iter.First(); valid; valid = iter.Next() {
		if want := chunkKey(header.index, chunks); string(iter.Key()) != string(want) {
			return nil, fmt.Errorf("snapshot %d: chunk key %x, want %x: %w", header.index, iter.Key(), want, ErrCorrupt)
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("snapshot %d chunk %d: %w", header.index, chunks, corruption(err))
		}
		if uint64(len(data))+uint64(len(value)) > header.dataLen {
			return nil, fmt.Errorf("snapshot %d: chunks exceed %d bytes: %w", header.index, header.dataLen, ErrCorrupt)
		}
		data = append(data, value...)
		chunks++
	}
	if err := iter.Error(); err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", header.index, corruption(err))
	}
	if chunks != header.chunks || uint64(len(data)) != header.dataLen {
		return nil, fmt.Errorf("snapshot %d: %d chunks of %d bytes, header says %d of %d: %w",
			header.index, chunks, len(data), header.chunks, header.dataLen, ErrCorrupt)
	}
	if got := crc32.Checksum(data, castagnoli); got != header.dataCRC {
		return nil, fmt.Errorf("snapshot %d: data checksum mismatch: stored %08x, computed %08x: %w",
			header.index, header.dataCRC, got, ErrCorrupt)
	}
	if len(data) == 0 {
		// As MemoryStorage holds a snapshot created without data.
		return nil, nil
	}
	return data, nil
}
