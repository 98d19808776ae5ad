package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// corruptionPayload is a distinct, poorly compressible payload, so the
// records fill many sstable blocks.
func corruptionPayload(id int64, version uint64) []byte {
	return fmt.Appendf(nil, "payload %d/%d %x", id, version, checksum(encodeKey(id, version), []byte("seed")))
}

// fillAndClose stores ids [0, n) at version and closes the store, which
// flushes them into an sstable.
func fillAndClose(t *testing.T, dir string, n int, version uint64) {
	t.Helper()
	s := openTestStore(t, dir, Options{Sync: true})
	chans := make([]chan error, n)
	for id := range n {
		chans[id] = s.submit(Op{Kind: OpPut, ID: int64(id), Version: version, Payload: corruptionPayload(int64(id), version)})
	}
	for id, ch := range chans {
		if err := waitResult(ch); err != nil {
			t.Fatalf("put %d: %v", id, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// storeFiles returns dir's files matching the glob pattern, largest first.
func storeFiles(t *testing.T, dir, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	slices.SortFunc(paths, func(a, b string) int { return int(size(b) - size(a)) })
	return paths
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// flipBytes inverts n bytes of the file at offset.
func flipBytes(t *testing.T, path string, offset int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, offset); err != nil {
		t.Fatalf("read %s at %d: %v", path, offset, err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, offset); err != nil {
		t.Fatalf("write %s at %d: %v", path, offset, err)
	}
}

// openDamaged opens dir expecting Open to fail with ErrCorruptStore.
func openDamaged(t *testing.T, dir string) {
	t.Helper()
	s, err := Open(dir, Options{Sync: true, OnCommit: func([]Result) {}})
	if err == nil {
		s.Close()
		t.Fatalf("Open of a damaged store succeeded")
	}
	if !errors.Is(err, ErrCorruptStore) {
		t.Fatalf("Open of a damaged store: %v; want ErrCorruptStore", err)
	}
}

func TestCloseFlushesMemtableIntoSSTables(t *testing.T) {
	dir := t.TempDir()
	fillAndClose(t, dir, 500, 1)
	if len(storeFiles(t, dir, "*.sst")) == 0 {
		t.Fatal("no sstable after Close")
	}
	// Without the write-ahead logs the records must still all be there.
	for _, wal := range storeFiles(t, dir, "*.log") {
		if err := os.Remove(wal); err != nil {
			t.Fatal(err)
		}
	}
	s := openTestStore(t, dir, Options{Sync: true})
	for id := range int64(500) {
		mustGet(t, s.Store, id, 1, corruptionPayload(id, 1))
	}
	checkStats(t, s.Store, 500, s.Stats().Bytes)
	if s.Damage() != nil {
		t.Fatalf("Damage() = %v on a healthy store", s.Damage())
	}
}

// TestFlippedSSTableBlockIsReportedCorrupt flips bytes in the middle of
// an sstable: Open succeeds, counts only the readable records and reports
// the damage; every read gives the right bytes or ErrCorrupt.
func TestFlippedSSTableBlockIsReportedCorrupt(t *testing.T) {
	const n = 5000
	dir := t.TempDir()
	fillAndClose(t, dir, n, 7)
	sst := storeFiles(t, dir, "*.sst")[0]
	flipBytes(t, sst, fileSize(t, sst)/2, 16)

	s := openTestStore(t, dir, Options{Sync: true})
	if !errors.Is(s.Damage(), ErrCorrupt) {
		t.Fatalf("Damage() = %v, want an error wrapping ErrCorrupt", s.Damage())
	}
	good, corrupt := 0, 0
	for id := range int64(n) {
		got, err := s.Get(id, 7)
		switch {
		case err == nil:
			if want := corruptionPayload(id, 7); !bytes.Equal(got, want) {
				t.Fatalf("get %d = %q, want %q: wrong bytes served", id, got, want)
			}
			good++
		case errors.Is(err, ErrCorrupt):
			corrupt++
		default:
			t.Fatalf("get %d: %v; want the payload or ErrCorrupt", id, err)
		}
	}
	t.Logf("%d records readable, %d corrupt", good, corrupt)
	if corrupt == 0 || good < n/2 {
		t.Fatalf("%d readable and %d corrupt records; want one damaged block among many good ones", good, corrupt)
	}
	if st := s.Stats(); st.Messages != uint64(good) {
		t.Fatalf("Stats.Messages = %d, want the %d readable records", st.Messages, good)
	}
	mustBeMissing(t, s.Store, n+1, 7)
	// Writes keep working; a record outside the damaged block reads back.
	s.mustPut(t, n+1, 7, []byte("after the damage"))
	mustGet(t, s.Store, n+1, 7, []byte("after the damage"))
}

// TestFlippedSSTableFooterMakesItsRecordsCorrupt flips bytes near the end
// of an sstable, where its index and properties are: every record of the
// table reads as corrupt, and no background job spins on it.
func TestFlippedSSTableFooterMakesItsRecordsCorrupt(t *testing.T) {
	const n = 2000
	dir := t.TempDir()
	fillAndClose(t, dir, n, 1)
	sst := storeFiles(t, dir, "*.sst")[0]
	flipBytes(t, sst, fileSize(t, sst)-100, 8)

	s := openTestStore(t, dir, Options{Sync: true})
	if !errors.Is(s.Damage(), ErrCorrupt) {
		t.Fatalf("Damage() = %v, want an error wrapping ErrCorrupt", s.Damage())
	}
	if st := s.Stats(); st.Messages != 0 {
		t.Fatalf("Stats.Messages = %d, want 0: no record of the table is readable", st.Messages)
	}
	for id := int64(0); id < n; id += 97 {
		if got, err := s.Get(id, 1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("get %d = %q, %v; want ErrCorrupt", id, truncate(got), err)
		}
	}
	assertIdleCPU(t, 2*time.Second)
}

func TestTruncatedSSTableFailsOpen(t *testing.T) {
	dir := t.TempDir()
	fillAndClose(t, dir, 2000, 1)
	sst := storeFiles(t, dir, "*.sst")[0]
	truncateFile(t, sst, fileSize(t, sst)/2)
	openDamaged(t, dir)
}

func TestMissingSSTableFailsOpen(t *testing.T) {
	dir := t.TempDir()
	fillAndClose(t, dir, 100, 1)
	if err := os.Remove(storeFiles(t, dir, "*.sst")[0]); err != nil {
		t.Fatal(err)
	}
	openDamaged(t, dir)
}

// TestDamagedManifestFailsOpen damages the snapshot record at the start
// of the newest MANIFEST.
func TestDamagedManifestFailsOpen(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, path string){
		"emptied":     func(t *testing.T, path string) { truncateFile(t, path, 0) },
		"cut in half": func(t *testing.T, path string) { truncateFile(t, path, fileSize(t, path)/2) },
		"flipped":     func(t *testing.T, path string) { flipBytes(t, path, fileSize(t, path)/2, 4) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for version := uint64(1); version <= 2; version++ {
				fillAndClose(t, dir, 100, version)
			}
			manifests := storeFiles(t, dir, "MANIFEST-*")
			if len(manifests) == 0 {
				t.Fatal("no MANIFEST")
			}
			// Their names number them; the newest is the current one.
			damage(t, slices.Max(manifests))
			openDamaged(t, dir)
		})
	}
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestFlippedWALFailsOpen copies the files of an open store (what a crash
// leaves behind: its newest records only in the write-ahead log), flips
// bytes in the middle of the log and opens the copy. The store was opened
// once before, so its log has WAL sync chunks (see formatMajorVersion) and
// Pebble can tell the damage from a torn tail.
func TestFlippedWALFailsOpen(t *testing.T) {
	dir := t.TempDir()
	fillAndClose(t, dir, 1, 1)
	s := openTestStore(t, dir, Options{Sync: true})
	for id := range int64(200) {
		s.mustPut(t, id, 2, bytes.Repeat([]byte{byte(id)}, 512))
	}
	crashed := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The undamaged copy opens with every record.
	intact := t.TempDir()
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(crashed, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(intact, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkStats(t, openTestStore(t, intact, Options{Sync: true}).Store, 201, 200*512+uint64(len(corruptionPayload(0, 1))))

	wal := storeFiles(t, crashed, "*.log")[0]
	flipBytes(t, wal, fileSize(t, wal)/2, 16)
	openDamaged(t, crashed)
}

// TestLockedStoreIsNotCorrupt checks the other side of the classification:
// a store that cannot be opened for another reason is not reported as
// corrupt.
func TestLockedStoreIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	openTestStore(t, dir, Options{Sync: true})
	s, err := Open(dir, Options{Sync: true, OnCommit: func([]Result) {}})
	if err == nil {
		s.Close()
		t.Fatal("opened a store that is already open")
	}
	if errors.Is(err, ErrCorruptStore) {
		t.Fatalf("a locked store reported as corrupt: %v", err)
	}
}

// TestCompactionOnCorruptDataClosesStore damages an sstable, then writes
// until Pebble flushes a second, overlapping L0 table, so the compaction of
// L0 reads the damage. Pebble retries such a compaction at once, forever;
// the store must stop that by closing itself, report it, and leave the CPU
// idle. Opening it again fails (or the store closes itself again at once).
func TestCompactionOnCorruptDataClosesStore(t *testing.T) {
	const n = 1000
	dir := t.TempDir()
	fillAndClose(t, dir, n, 1)
	sst := storeFiles(t, dir, "*.sst")[0]
	flipBytes(t, sst, fileSize(t, sst)/2, 16)

	failed := make(chan error, 1)
	results := make(chan Result, 1)
	s, err := Open(dir, Options{
		Sync: true,
		OnCommit: func(rs []Result) {
			for _, r := range rs {
				results <- r
			}
		},
		OnCorruptStore: func(err error) { failed <- err },
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	// Fill the memtable with large overlapping records until Pebble
	// flushes it and compacts L0.
	big := bytes.Repeat([]byte("x"), 1<<20)
	var reported error
	for id := int64(0); id < 4*memTableBytes>>20 && reported == nil; id++ {
		s.Submit(Op{Kind: OpPut, ID: id, Version: 2, Payload: big})
		if r := <-results; r.Err != nil && !errors.Is(r.Err, ErrCorruptStore) {
			t.Fatalf("put %d: %v", id, r.Err)
		}
		select {
		case reported = <-failed:
		default:
		}
	}
	if reported == nil {
		select {
		case reported = <-failed:
		case <-time.After(20 * time.Second):
			t.Fatal("the store did not close itself after its compaction hit corrupt data")
		}
	}
	if !errors.Is(reported, ErrCorruptStore) {
		t.Fatalf("OnCorruptStore(%v); want ErrCorruptStore", reported)
	}
	if _, err := s.Get(1, 1); !errors.Is(err, ErrCorruptStore) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after the store closed itself: %v; want ErrCorruptStore and ErrClosed", err)
	}
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 5, Payload: []byte("x")})
	if r := <-results; !errors.Is(r.Err, ErrCorruptStore) {
		t.Fatalf("Submit after the store closed itself: %v; want ErrCorruptStore", r.Err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the store closed itself: %v", err)
	}
	assertIdleCPU(t, 2*time.Second)

	// Opened again, the compaction runs (and fails) during or right after
	// Open.
	again, err := Open(dir, Options{Sync: true, OnCommit: func([]Result) {}, OnCorruptStore: func(err error) { failed <- err }})
	if err == nil {
		defer again.Close()
		select {
		case err = <-failed:
		case <-time.After(20 * time.Second):
			t.Fatal("reopened, the store neither failed to open nor closed itself")
		}
	}
	if !errors.Is(err, ErrCorruptStore) {
		t.Fatalf("reopening: %v; want ErrCorruptStore", err)
	}
	assertIdleCPU(t, 2*time.Second)
}

// assertIdleCPU fails the test if this process uses more than a fifth of
// one CPU over d: nothing should be running, in particular no background
// job retrying on corrupt data.
func assertIdleCPU(t *testing.T, d time.Duration) {
	t.Helper()
	before := processCPU(t)
	time.Sleep(d)
	if used := processCPU(t) - before; used > d/5 {
		t.Fatalf("process used %v of CPU in %v while idle: a background job is spinning", used, d)
	}
}

func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
