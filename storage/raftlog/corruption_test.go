package raftlog

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// buildStore writes a store with a compacted log and a three-chunk snapshot:
// log start 20, entries 21..40 of term 2, snapshot 30, commit 35. The
// snapshot's batch is followed by others in the write-ahead log, so that
// damage to it is not a torn tail.
func buildStore(t *testing.T, flush bool) string {
	t.Helper()
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 30, 2), HardState: hardState(2, 1, 30)})
	l.mustCreateSnapshot(t, 30, confState(1, 2, 3), snapshotData(30, 2*ChunkBytes+ChunkBytes/2), 10)
	for i := uint64(31); i <= 40; i++ {
		l.mustWrite(t, Write{Entries: entries(i, i, 2), HardState: hardState(2, 1, min(i, 35))})
	}
	if flush {
		if err := l.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// damageWith opens the store in dir as a raw Pebble database and lets
// damage change it.
func damageWith(t *testing.T, dir string, damage func(db *pebble.DB) error) {
	t.Helper()
	db, err := pebbledb.Open(dir, pebbledb.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := damage(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// flipBit rewrites the value under key with one bit flipped at offset.
func flipBit(db *pebble.DB, key []byte, offset int) error {
	value, closer, err := db.Get(key)
	if err != nil {
		return err
	}
	damaged := slices.Clone(value)
	if err := closer.Close(); err != nil {
		return err
	}
	damaged[offset] ^= 0x04
	return db.Set(key, damaged, pebble.Sync)
}

// set stores value under key.
func set(key, value []byte) func(db *pebble.DB) error {
	return func(db *pebble.DB) error { return db.Set(key, value, pebble.Sync) }
}

func del(key []byte) func(db *pebble.DB) error {
	return func(db *pebble.DB) error { return db.Delete(key, pebble.Sync) }
}

// encodedEntry is entry(index, term) as the store would write it.
func encodedEntry(t *testing.T, index, term uint64) []byte {
	value, err := appendEntryValue(nil, entryKey(index), entry(index, term))
	if err != nil {
		t.Fatal(err)
	}
	return value
}

func TestCorruptionIsDetected(t *testing.T) {
	mustEncode := func(value []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return value
	}
	wrongTermHeader := snapshotHeader{index: 30, term: 1, confState: confState(1, 2, 3),
		dataLen: 2*ChunkBytes + ChunkBytes/2, chunks: 3}
	cases := []struct {
		name   string
		damage func(db *pebble.DB) error
	}{
		{"flipped bit in an entry", func(db *pebble.DB) error { return flipBit(db, entryKey(25), 6) }},
		{"truncated entry", set(entryKey(26), []byte{1, 2})},
		{"entry under another index's key", set(entryKey(27), encodedEntry(t, 26, 2))},
		{"undecodable entry with a valid checksum", set(entryKey(28), sealRecord(entryKey(28), []byte{0, 0, 0, 0, 0xff, 0xff, 0xff}))},
		{"missing entry", del(entryKey(31))},
		{"entry below the log start", set(entryKey(15), encodedEntry(t, 15, 2))},
		{"entry with a lower term than the one before", set(entryKey(33), encodedEntry(t, 33, 1))},
		{"flipped bit in the hard state", func(db *pebble.DB) error { return flipBit(db, []byte(hardStateKey), 5) }},
		{"hard state committing past the last entry", set([]byte(hardStateKey), mustEncode(encodeHardState(hardState(2, 1, 41))))},
		{"hard state committing below the log start", set([]byte(hardStateKey), mustEncode(encodeHardState(hardState(2, 1, 19))))},
		{"flipped bit in the log start", func(db *pebble.DB) error { return flipBit(db, []byte(logStartKey), 11) }},
		{"missing log start", del([]byte(logStartKey))},
		{"flipped bit in the snapshot header", func(db *pebble.DB) error { return flipBit(db, []byte(snapshotHeaderKey), 20) }},
		{"missing snapshot header", del([]byte(snapshotHeaderKey))},
		{"snapshot term differs from the log's", set([]byte(snapshotHeaderKey), mustEncode(wrongTermHeader.encode()))},
		{"flipped bit in a snapshot chunk", func(db *pebble.DB) error { return flipBit(db, chunkKey(30, 1), 777) }},
		{"missing snapshot chunk", del(chunkKey(30, 2))},
		{"extra snapshot chunk", set(chunkKey(30, 3), []byte("x"))},
		{"chunk of another snapshot", set(chunkKey(29, 0), []byte("x"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := buildStore(t, false)
			damageWith(t, dir, c.damage)
			if _, err := tryOpenTestLog(t, dir, Options{Sync: true}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("undamaged", func(t *testing.T) {
		dir := buildStore(t, false)
		damageWith(t, dir, func(*pebble.DB) error { return nil })
		if _, err := tryOpenTestLog(t, dir, Options{Sync: true}); err != nil {
			t.Fatalf("Open of an undamaged store = %v", err)
		}
	})
}

// buildSmallRecordStore writes a store in many small batches (a small
// snapshot among them) in its second session, so that its write-ahead log
// has WAL sync chunks, and with flush moves it all into an sstable.
func buildSmallRecordStore(t *testing.T, flush bool) string {
	t.Helper()
	dir := t.TempDir()
	if err := openTestLog(t, dir, Options{Sync: true}).Close(); err != nil {
		t.Fatal(err)
	}
	l := openTestLog(t, dir, Options{Sync: true})
	// 1500 entries in groups of up to 20 small Writes: about 150 KiB of
	// write-ahead log in records far smaller than a WAL block.
	for i := uint64(1); i <= 1500; {
		var chs []chan Written
		for range 20 {
			chs = append(chs, l.write(Write{Entries: entries(i, i, 1), HardState: hardState(1, 1, i)}))
			i++
		}
		for _, ch := range chs {
			if w := waitWritten(ch); w.Err != nil {
				t.Fatal(w.Err)
			}
		}
		if i == 761 {
			l.mustCreateSnapshot(t, 700, confState(1, 2, 3), snapshotData(700, 3000), 50)
		}
	}
	if flush {
		if err := l.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDamagedFilesAreCorrupt flips bytes in the middle of the store's files
// (the sstable holding everything after a flush; the write-ahead log
// without one): Open reports ErrCorrupt rather than panicking or silently
// dropping data.
//
// The records here are small and the log spans several 32 KiB WAL blocks.
// Pebble cannot tell damage in a WAL's last block, or inside a record that
// spans blocks (a large snapshot's batch), from a torn tail, and then
// silently drops the rest of that WAL; see the package documentation.
func TestDamagedFilesAreCorrupt(t *testing.T) {
	for _, c := range []struct {
		name  string
		flush bool
		glob  string
	}{
		{"sstable", true, "*.sst"},
		{"write-ahead log", false, "*.log"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := buildSmallRecordStore(t, c.flush)
			files, err := filepath.Glob(filepath.Join(dir, c.glob))
			if err != nil {
				t.Fatal(err)
			}
			var damaged string
			var size int
			for _, f := range files {
				info, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if int(info.Size()) > size {
					damaged, size = f, int(info.Size())
				}
			}
			if size < 8<<10 {
				t.Fatalf("no %s file holds the records: %v", c.glob, files)
			}
			data, err := os.ReadFile(damaged)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(data) / 2; i < len(data)/2+16; i++ {
				data[i] ^= 0xff
			}
			if err := os.WriteFile(damaged, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir, Options{Sync: true, Logger: zerolog.Nop(), OnWritten: func([]Written) {}})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open after damaging %s = %v, want ErrCorrupt", filepath.Base(damaged), err)
			}
			t.Logf("%v", err)
		})
	}
}
