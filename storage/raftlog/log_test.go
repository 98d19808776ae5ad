package raftlog

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/storage/internal/leakcheck"
)

func TestOpenRequiresOnWritten(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Sync: true}); err == nil {
		t.Fatal("Open without OnWritten succeeded")
	}
}

func TestEmptyUntilSomethingIsStored(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	if !l.Empty() {
		t.Fatal("new store is not Empty")
	}
	checkStorage(t, "new store", l.Log, raft.NewMemoryStorage())
	// A Write that changes nothing leaves it empty.
	l.mustWrite(t, Write{HardState: &raftpb.HardState{}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	if !l.Empty() {
		t.Fatal("reopened store with nothing stored is not Empty")
	}
	l.mustWrite(t, Write{HardState: hardState(1, 0, 0)})
	if l.Empty() {
		t.Fatal("store with a hard state is Empty")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l = openTestLog(t, dir, Options{Sync: true}); l.Empty() {
		t.Fatal("reopened store with a hard state is Empty")
	}
}

// TestTruncationReplacesSuffix checks raft's log truncation: entries at an
// index already stored replace it and every later one, on disk too.
func TestTruncationReplacesSuffix(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 10, 1), HardState: hardState(1, 1, 4)})
	l.mustWrite(t, Write{Entries: entries(6, 7, 2), HardState: hardState(2, 2, 4)})
	want := append(entries(1, 5, 1), entries(6, 7, 2)...)
	checkEntries := func(what string) {
		t.Helper()
		last, _ := l.Storage().LastIndex()
		got, err := l.Storage().Entries(1, last+1, ^uint64(0))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
		}
		for i := range got {
			if got[i].GetIndex() != want[i].GetIndex() || got[i].GetTerm() != want[i].GetTerm() {
				t.Fatalf("%s: entry %d has index %d term %d, want term %d", what, i, got[i].GetIndex(), got[i].GetTerm(), want[i].GetTerm())
			}
		}
		if n := countKeys(t, l.db, entriesFrom(0), entriesEnd()); n != len(want) {
			t.Fatalf("%s: %d entries on disk, want %d", what, n, len(want))
		}
	}
	checkEntries("after truncation")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	checkEntries("after reopening")
}

// TestReceivedSnapshotReplacesLog stores a snapshot from the leader that
// lies inside the log: every entry goes, as with MemoryStorage.ApplySnapshot.
func TestReceivedSnapshotReplacesLog(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 20, 1), HardState: hardState(1, 1, 5)})
	data := snapshotData(12, 3*ChunkBytes+7)
	l.mustWrite(t, Write{Snapshot: receivedSnapshot(12, 1, confState(1, 2, 3), data), HardState: hardState(2, 1, 12)})
	check := func(what string) {
		t.Helper()
		st := l.Stats()
		if st.FirstIndex != 13 || st.LastIndex != 12 || st.SnapshotIndex != 12 {
			t.Fatalf("%s: stats %+v, want an empty log after snapshot 12", what, st)
		}
		if term, err := l.Storage().Term(12); term != 1 || err != nil {
			t.Fatalf("%s: Term(12) = %d, %v", what, term, err)
		}
		snap, _ := l.Storage().Snapshot()
		stored, err := l.SnapshotData(12)
		if snap.GetMetadata().GetIndex() != 12 || len(snap.GetData()) != 0 || err != nil || !slices.Equal(stored, data) {
			t.Fatalf("%s: snapshot %v with %d bytes in memory, %d on disk (%v)", what, snap.GetMetadata(), len(snap.GetData()), len(stored), err)
		}
		if n := countKeys(t, l.db, entriesFrom(0), entriesEnd()); n != 0 {
			t.Fatalf("%s: %d entries on disk", what, n)
		}
		if n := countKeys(t, l.db, chunksStart(), chunksEnd()); n != 4 {
			t.Fatalf("%s: %d chunks on disk, want 4", what, n)
		}
	}
	check("after the snapshot")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	check("after reopening")
	if st := l.Stats(); st.SnapshotsReceived != 0 || st.Entries != 0 {
		t.Fatalf("counters survived reopening: %+v", st)
	}
}

// TestCreateSnapshotCompactsKeepingEntries checks that keep entries stay for
// lagging followers and the rest are gone from Storage() and the disk.
func TestCreateSnapshotCompactsKeepingEntries(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 100, 3), HardState: hardState(3, 1, 90)})
	l.mustCreateSnapshot(t, 80, confState(1, 2, 3), []byte("state at 80"), 30)
	check := func(what string) {
		t.Helper()
		if first, _ := l.Storage().FirstIndex(); first != 51 {
			t.Fatalf("%s: FirstIndex %d, want 51", what, first)
		}
		if _, err := l.Storage().Entries(50, 52, ^uint64(0)); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("%s: Entries(50) = %v, want ErrCompacted", what, err)
		}
		if term, err := l.Storage().Term(50); term != 3 || err != nil {
			t.Fatalf("%s: Term(50) = %d, %v; want the dummy entry's term 3", what, term, err)
		}
		if n := countKeys(t, l.db, entriesFrom(0), entriesEnd()); n != 50 {
			t.Fatalf("%s: %d entries on disk, want 51..100", what, n)
		}
		if n := countKeys(t, l.db, entriesFrom(0), entriesThrough(50)); n != 0 {
			t.Fatalf("%s: %d entries at or below 50 on disk", what, n)
		}
	}
	check("after the snapshot")
	if st := l.Stats(); st.Snapshots != 1 || st.SnapshotIndex != 80 || st.FirstIndex != 51 || st.LastIndex != 100 {
		t.Fatalf("stats %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	check("after reopening")
}

// TestGroupCommit holds the committer while 200 Writes queue up, and checks
// that they are committed as one batch and reported in Write-call order.
func TestGroupCommit(t *testing.T) {
	var (
		mu      sync.Mutex
		order   []int
		groups  []int
		entered = make(chan struct{})
		release = make(chan struct{})
		done    = make(chan struct{})
	)
	const writes = 200
	l, err := Open(t.TempDir(), Options{Sync: true, OnWritten: func(ws []Written) {
		mu.Lock()
		groups = append(groups, len(ws))
		for _, w := range ws {
			if w.Err != nil {
				t.Errorf("write %v: %v", w.Token, w.Err)
			}
			order = append(order, w.Token.(int))
		}
		n := len(order)
		mu.Unlock()
		if n == 1 {
			close(entered)
			<-release
		}
		if n == writes {
			close(done)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	l.Write(Write{Entries: entries(1, 1, 1), Token: 1})
	<-entered
	for i := 2; i <= writes; i++ {
		l.Write(Write{Entries: entries(uint64(i), uint64(i), 1), HardState: hardState(1, 1, uint64(i-1)), Token: i})
	}
	close(release)
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("writes not reported")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(groups, []int{1, writes - 1}) {
		t.Fatalf("groups %v, want [1 %d]", groups, writes-1)
	}
	for i, token := range order {
		if token != i+1 {
			t.Fatalf("write %d reported at position %d", token, i)
		}
	}
	if st := l.Stats(); st.Commits != 2 || st.Writes != writes || st.Entries != writes || st.LastIndex != writes || st.BytesWritten == 0 {
		t.Fatalf("stats %+v, want %d writes in 2 commits", st, writes)
	}
}

// TestConcurrentWriters writes from many goroutines, indexes assigned in
// Write-call order as raft's single stream would, and checks the log.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	const writers, perWriter = 16, 40
	var (
		mu   sync.Mutex
		next uint64 = 1
		wg   sync.WaitGroup
		errs = make(chan error, writers)
	)
	for range writers {
		wg.Go(func() {
			for range perWriter {
				mu.Lock()
				ch := l.write(Write{Entries: entries(next, next, 1), HardState: hardState(1, 1, next)})
				next++
				mu.Unlock()
				if w := waitWritten(ch); w.Err != nil {
					errs <- w.Err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := l.Stats()
	t.Logf("%d writes in %d commits", st.Writes, st.Commits)
	if st.Writes != writers*perWriter || st.Commits >= st.Writes {
		t.Fatalf("stats %+v: want %d writes in fewer commits", st, writers*perWriter)
	}
	ref := raft.NewMemoryStorage()
	applyToReference(t, ref, Write{Entries: entries(1, writers*perWriter, 1), HardState: hardState(1, 1, writers*perWriter)})
	checkStorage(t, "after concurrent writes", l.Log, ref)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkStorage(t, "after reopening", openTestLog(t, dir, Options{Sync: true}).Log, ref)
}

// TestInvalidWritesAreRefused sends Writes that do not fit the log, among
// valid ones in the same group: each is refused with ErrInvalid, nothing of
// it is stored, and the others are unaffected.
func TestInvalidWritesAreRefused(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	ref := raft.NewMemoryStorage()
	valid := func(w Write) Write { applyToReference(t, ref, w); return w }
	l.mustWrite(t, valid(Write{Entries: entries(1, 10, 1), HardState: hardState(1, 1, 8)}))
	l.mustCreateSnapshot(t, 6, confState(1), []byte("six"), 2)
	snapshotReference(t, ref, 6, confState(1), []byte("six"), 2)

	gate := newCommitGate()
	l.setGate(gate)
	l.Write(Write{HardState: hardState(2, 1, 8), Token: gate.token})
	applyToReference(t, ref, Write{HardState: hardState(2, 1, 8)})
	<-gate.entered

	cases := []struct {
		name  string
		write Write
		valid bool
	}{
		{"gap after the last entry", Write{Entries: entries(12, 13, 2)}, false},
		{"entries not consecutive", Write{Entries: []*raftpb.Entry{entry(11, 2), entry(13, 2)}}, false},
		{"commit past the last entry", Write{Entries: entries(11, 11, 2), HardState: hardState(2, 1, 12)}, false},
		{"a valid write between", valid(Write{Entries: entries(11, 12, 2), HardState: hardState(2, 1, 11)}), true},
		{"commit below the log start", Write{HardState: hardState(2, 1, 3)}, false},
		{"entries a snapshot covers", Write{Entries: entries(5, 7, 2)}, false},
		{"snapshot not newer than the stored one", Write{Snapshot: receivedSnapshot(6, 1, confState(1), nil), HardState: hardState(2, 1, 8)}, false},
		{"snapshot leaving the commit behind", Write{Snapshot: receivedSnapshot(20, 2, confState(1), nil)}, false},
		{"another valid write", valid(Write{Entries: entries(13, 13, 2)}), true},
	}
	var chs []chan Written
	for _, c := range cases {
		chs = append(chs, l.write(c.write))
	}
	close(gate.release)
	for i, c := range cases {
		w := waitWritten(chs[i])
		if c.valid && w.Err != nil {
			t.Errorf("%s: %v", c.name, w.Err)
		}
		if !c.valid && !errors.Is(w.Err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, w.Err)
		}
	}
	if groups := l.writtenGroups(); len(groups) != 3 || groups[2] != len(cases) {
		t.Fatalf("OnWritten groups %v, want the cases reported together", groups)
	}
	checkStorage(t, "after refused writes", l.Log, ref)
	l.mustWrite(t, valid(Write{Entries: entries(14, 14, 2), HardState: hardState(2, 1, 14)}))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkStorage(t, "after reopening", openTestLog(t, dir, Options{Sync: true}).Log, ref)
}

func TestBadSnapshotsAreRefused(t *testing.T) {
	l := openTestLog(t, t.TempDir(), Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 10, 1), HardState: hardState(1, 1, 7)})
	l.mustCreateSnapshot(t, 5, confState(1), []byte("five"), 100)
	for _, index := range []uint64{11, 8, 5, 4} { // past the end, not committed, not newer, older
		l.CreateSnapshot(index, confState(1), []byte("bad"), 0)
		if r := l.waitSnapshot(t); r.index != index || !errors.Is(r.err, ErrBadSnapshot) {
			t.Fatalf("snapshot %d reported as %d, %v; want ErrBadSnapshot", index, r.index, r.err)
		}
	}
	l.mustCreateSnapshot(t, 7, confState(1), []byte("seven"), 100)
	if snap, _ := l.Storage().Snapshot(); snap.GetMetadata().GetIndex() != 7 {
		t.Fatalf("snapshot %v", snap.GetMetadata())
	}
	if data, err := l.SnapshotData(7); err != nil || string(data) != "seven" {
		t.Fatalf("SnapshotData(7) = %q, %v", data, err)
	}
	if data, err := l.SnapshotData(5); !errors.Is(err, ErrSnapshotGone) {
		t.Fatalf("SnapshotData(5) after snapshot 7 = %q, %v; want ErrSnapshotGone", data, err)
	}
}

// TestFailedCommitRefusesLaterRequests makes a commit fail: its Writes fail
// with the commit's error, every later request with ErrFailed, Storage()
// does not change, and reopening recovers.
func TestFailedCommitRefusesLaterRequests(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 5, 1), HardState: hardState(1, 1, 5)})
	injected := errors.New("injected: disk on fire")
	// The committer reads commitBatch only after it takes a request off
	// the queue, which the writes below put there after this assignment.
	l.commitBatch = func(*pebble.Batch, bool) error { return injected }

	if w := waitWritten(l.write(Write{Entries: entries(6, 6, 1)})); !errors.Is(w.Err, injected) || errors.Is(w.Err, ErrFailed) {
		t.Fatalf("write in the failed commit reported %v, want the commit's error", w.Err)
	}
	if w := waitWritten(l.write(Write{Entries: entries(6, 6, 1)})); !errors.Is(w.Err, ErrFailed) {
		t.Fatalf("later write reported %v, want ErrFailed", w.Err)
	}
	l.CreateSnapshot(5, confState(1), nil, 0)
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrFailed) {
		t.Fatalf("later snapshot reported %v, want ErrFailed", r.err)
	}
	if last, _ := l.Storage().LastIndex(); last != 5 {
		t.Fatalf("Storage() holds %d entries after failed commits, want 5", last)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTestLog(t, dir, Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(6, 6, 1), HardState: hardState(1, 1, 6)})
	if last, _ := l.Storage().LastIndex(); last != 6 {
		t.Fatalf("LastIndex %d after reopening and writing, want 6", last)
	}
}

func TestClosedLogReportsErrClosed(t *testing.T) {
	l := openTestLog(t, t.TempDir(), Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 1, 1), HardState: hardState(1, 1, 1)})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	// Reported on the caller's goroutine before Write returns.
	ch := l.write(Write{Entries: entries(2, 2, 1)})
	select {
	case w := <-ch:
		if !errors.Is(w.Err, ErrClosed) {
			t.Fatalf("write after Close reported %v, want ErrClosed", w.Err)
		}
	default:
		t.Fatal("write after Close not reported before Write returned")
	}
	l.CreateSnapshot(1, nil, nil, 0)
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("snapshot after Close reported %v, want ErrClosed", r.err)
	}
}

func TestCloseCommitsQueued(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	var chs []chan Written
	const writes = 2000
	for i := uint64(1); i <= writes; i++ {
		chs = append(chs, l.write(Write{Entries: entries(i, i, 1), HardState: hardState(1, 1, i)}))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chs {
		if w := waitWritten(ch); w.Err != nil {
			t.Fatalf("write %d: %v", i+1, w.Err)
		}
	}
	l = openTestLog(t, dir, Options{Sync: true})
	if last, _ := l.Storage().LastIndex(); last != writes {
		t.Fatalf("LastIndex %d after reopening, want %d", last, writes)
	}
}

func TestReopenLeaksNoGoroutines(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	for round := uint64(1); round <= 3; round++ {
		done := make(chan Written, 1)
		l, err := Open(dir, Options{Sync: true, OnWritten: func(ws []Written) {
			for _, w := range ws {
				done <- w
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		l.Write(Write{Entries: entries(round, round, 1)})
		if w := waitWritten(done); w.Err != nil {
			t.Fatal(w.Err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	leakcheck.Goroutines(t, before)
}

// TestBackgroundDamageFailsLaterRequests reports damage the way Pebble's
// background jobs do: every later request fails with ErrCorrupt (and
// ErrFailed), so that the consensus actor learns of it.
func TestBackgroundDamageFailsLaterRequests(t *testing.T) {
	l := openTestLog(t, t.TempDir(), Options{Sync: true})
	l.mustWrite(t, Write{Entries: entries(1, 2, 1), HardState: hardState(1, 1, 2)})
	l.noteDamage(errors.New("injected: block checksum mismatch"))
	l.noteDamage(errors.New("a second report is ignored"))
	w := waitWritten(l.write(Write{Entries: entries(3, 3, 1)}))
	if !errors.Is(w.Err, ErrCorrupt) || !errors.Is(w.Err, ErrFailed) {
		t.Fatalf("write after background damage reported %v, want ErrCorrupt and ErrFailed", w.Err)
	}
	l.CreateSnapshot(2, nil, nil, 0)
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrCorrupt) {
		t.Fatalf("snapshot after background damage reported %v, want ErrCorrupt", r.err)
	}
}

// TestOnlyWhatRaftNeedsIsSynced: entries, a new term and a new vote are
// fsync'd; a hard state that only moves the commit index is not (raft's
// MustSync), and it is still stored and survives a reopen after a clean
// close.
func TestOnlyWhatRaftNeedsIsSynced(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	var (
		mu      sync.Mutex
		durable []bool
	)
	commit := l.commitBatch
	// Set before the first write: the committer reads commitBatch only
	// after it takes a request off the queue.
	l.commitBatch = func(b *pebble.Batch, d bool) error {
		mu.Lock()
		durable = append(durable, d)
		mu.Unlock()
		return commit(b, d)
	}
	steps := []struct {
		write Write
		want  bool
	}{
		{Write{HardState: hardState(1, 1, 0)}, true},                            // first term and vote
		{Write{Entries: entries(1, 3, 1), HardState: hardState(1, 1, 0)}, true}, // entries
		{Write{HardState: hardState(1, 1, 2)}, false},                           // commit only
		{Write{HardState: hardState(1, 1, 3)}, false},                           // commit only
		{Write{HardState: hardState(2, 0, 3)}, true},                            // new term
		{Write{HardState: hardState(2, 2, 3)}, true},                            // new vote
	}
	for i, s := range steps {
		l.mustWrite(t, s.write)
		mu.Lock()
		got := durable[len(durable)-1]
		mu.Unlock()
		if got != s.want {
			t.Errorf("step %d (%v): synced %v, want %v", i, s.write.HardState, got, s.want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	re := openTestLog(t, dir, Options{Sync: true})
	if hs, _, err := re.Storage().InitialState(); err != nil || hs.GetCommit() != 3 || hs.GetTerm() != 2 || hs.GetVote() != 2 {
		t.Fatalf("hard state after reopen = %v, %v; want term 2, vote 2, commit 3", hs, err)
	}
}

// TestStatsReportPebbleMemory checks that the memory Pebble holds for the
// log (at least its first memtable, allocated at Open) is in the Stats
// from Open on, for the gateway's metric.
func TestStatsReportPebbleMemory(t *testing.T) {
	l := openTestLog(t, t.TempDir(), Options{})
	if got := l.Stats().MemoryBytes; got < 256<<10 {
		t.Fatalf("MemoryBytes = %d after Open, want at least the first memtable (256 KiB)", got)
	}
}

// TestWrittenReportsWhatRaftWaitedFor checks the times a Written carries
// (the consensus actor's append and fsync histograms), on a clock the test
// moves: a Write queued behind a group commit held for 7 ms reports that
// wait as Queued, without its own commit; an append's Commit includes its
// fsync (30 ms on that clock) and is Synced; a commit-index-only write is
// not synced, and without Options.Sync nothing is.
func TestWrittenReportsWhatRaftWaitedFor(t *testing.T) {
	const (
		fsync = 30 * time.Millisecond // a slow disk's fsync, on the log's clock
		held  = 7 * time.Millisecond  // how long the committer is held
	)
	clock := newSteppingClock()
	var slow atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if slow.Load() {
				clock.advance(fsync)
			}
		}
		return nil
	}))
	l := openTestLog(t, t.TempDir(), Options{Sync: true, FS: fs, Now: clock.now})
	gate := newCommitGate()
	l.setGate(gate)
	l.Write(Write{Entries: entries(1, 1, 1), HardState: hardState(1, 1, 0), Token: gate.token})
	<-gate.entered
	second := l.write(Write{Entries: entries(2, 2, 1)}) // stamped before the clock moves on
	clock.advance(held)
	slow.Store(true)
	close(gate.release)
	w := waitWritten(second)
	if w.Err != nil {
		t.Fatal(w.Err)
	}
	if w.Queued < held || w.Queued >= held+fsync {
		t.Errorf("queued %v behind a group commit held %v, want that wait and not its own commit's fsync", w.Queued, held)
	}
	if !w.Synced || w.Commit < fsync {
		t.Errorf("an append's commit: synced %v in %v, want synced, at least the %v fsync", w.Synced, w.Commit, fsync)
	}
	slow.Store(false)
	if w := waitWritten(l.write(Write{HardState: hardState(1, 1, 2)})); w.Err != nil || w.Synced || w.Commit <= 0 {
		t.Errorf("a commit-index-only write: %+v, want stored, not synced, its commit timed", w)
	}

	unsynced := openTestLog(t, t.TempDir(), Options{})
	if w := waitWritten(unsynced.write(Write{Entries: entries(1, 1, 1), HardState: hardState(1, 1, 0)})); w.Err != nil || w.Synced {
		t.Errorf("an append without Options.Sync: %+v, want stored, not synced", w)
	}
}
