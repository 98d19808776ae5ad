package metalog

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tolerex/tolerex/storage/internal/leakcheck"
)

// waitTimeout bounds every wait for a report so a lost one fails the test
// instead of hanging it.
const waitTimeout = 20 * time.Second

// snapshotReport is one OnSnapshot call.
type snapshotReport struct {
	seq uint64
	err error
}

// testLog is a Log whose appends carry a chan Committed as token. It records
// the sequence numbers of every OnCommit call and forwards OnSnapshot calls
// to snapshots.
type testLog struct {
	*Log
	mu        sync.Mutex
	batches   [][]uint64
	snapshots chan snapshotReport
	// gate, when set, holds the committer inside OnCommit after the batch
	// holding gate.token until gate.release is closed.
	gate *commitGate
}

// commitGate holds the committer so that later requests queue up and are
// committed as one batch.
type commitGate struct {
	token   chan Committed
	entered chan struct{}
	release chan struct{}
}

func newCommitGate() *commitGate {
	return &commitGate{
		token:   make(chan Committed, 1),
		entered: make(chan struct{}),
		release: make(chan struct{}),
	}
}

func (tl *testLog) onCommit(committed []Committed) {
	seqs := make([]uint64, len(committed))
	for i, c := range committed {
		seqs[i] = c.Seq
	}
	tl.mu.Lock()
	tl.batches = append(tl.batches, seqs)
	gate := tl.gate
	tl.mu.Unlock()
	held := false
	for _, c := range committed {
		ch := c.Token.(chan Committed)
		ch <- c
		if gate != nil && ch == gate.token {
			held = true
		}
	}
	if held {
		close(gate.entered)
		<-gate.release
	}
}

func (tl *testLog) committedBatches() [][]uint64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.batches)
}

func openTestLog(t testing.TB, dir string, opts Options) *testLog {
	t.Helper()
	tl := &testLog{snapshots: make(chan snapshotReport, 64)}
	opts.OnCommit = tl.onCommit
	opts.OnSnapshot = func(seq uint64, err error) { tl.snapshots <- snapshotReport{seq, err} }
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	tl.Log = l
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close log: %v", err)
		}
	})
	return tl
}

// append queues data and returns the channel its Committed will arrive on.
func (tl *testLog) append(data []byte) chan Committed {
	ch := make(chan Committed, 1)
	tl.Append(data, ch)
	return ch
}

// waitCommitted returns the Committed delivered on ch, or one carrying an
// error if none arrives in time. It is safe to call from any goroutine.
func waitCommitted(ch chan Committed) Committed {
	select {
	case c := <-ch:
		return c
	case <-time.After(waitTimeout):
		return Committed{Err: fmt.Errorf("no commit report within %v", waitTimeout)}
	}
}

func (tl *testLog) mustAppend(t testing.TB, data []byte) uint64 {
	t.Helper()
	c := waitCommitted(tl.append(data))
	if c.Err != nil {
		t.Fatalf("append: %v", c.Err)
	}
	return c.Seq
}

func (tl *testLog) waitSnapshot(t testing.TB) snapshotReport {
	t.Helper()
	select {
	case r := <-tl.snapshots:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no snapshot report within %v", waitTimeout)
		return snapshotReport{}
	}
}

func (tl *testLog) mustSnapshot(t testing.TB, seq uint64, data []byte) {
	t.Helper()
	tl.Snapshot(seq, data)
	if r := tl.waitSnapshot(t); r.seq != seq || r.err != nil {
		t.Fatalf("snapshot %d reported as %d, %v", seq, r.seq, r.err)
	}
}

// loaded is what Load delivered.
type loaded struct {
	snapshotSeq  uint64
	snapshot     []byte
	hasSnapshot  bool
	snapshotSeen int
	entries      map[uint64][]byte
	order        []uint64
}

func load(l *Log) (loaded, error) {
	got := loaded{entries: map[uint64][]byte{}}
	err := l.Load(func(seq uint64, data []byte) error {
		got.snapshotSeq, got.snapshot, got.hasSnapshot = seq, data, true
		got.snapshotSeen++
		return nil
	}, func(seq uint64, data []byte) error {
		got.entries[seq] = data
		got.order = append(got.order, seq)
		return nil
	})
	return got, err
}

func mustLoad(t testing.TB, l *Log) loaded {
	t.Helper()
	got, err := load(l)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return got
}

// entryData is the data the tests append as entry seq.
func entryData(seq uint64) []byte {
	return fmt.Appendf(nil, "entry %d %s", seq, bytes.Repeat([]byte{'x'}, int(seq%97)))
}

// snapshotData is a deterministic snapshot of n bytes for seq.
func snapshotData(seq uint64, n int) []byte {
	data := make([]byte, n)
	x := seq*2654435761 + 1
	for i := range data {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		data[i] = byte(x)
	}
	return data
}

// checkEntries asserts that got holds exactly the entries from..to with
// entryData, delivered in order.
func checkEntries(t testing.TB, got loaded, from, to uint64) {
	t.Helper()
	var want []uint64
	for seq := from; seq <= to; seq++ {
		want = append(want, seq)
	}
	if !slices.Equal(got.order, want) {
		t.Fatalf("loaded entries %v, want %d..%d", summarize(got.order), from, to)
	}
	for _, seq := range want {
		if !bytes.Equal(got.entries[seq], entryData(seq)) {
			t.Fatalf("entry %d = %q, want %q", seq, got.entries[seq], entryData(seq))
		}
	}
}

func summarize(seqs []uint64) string {
	if len(seqs) <= 10 {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("%v ... %v (%d)", seqs[:5], seqs[len(seqs)-5:], len(seqs))
}

// countKeys counts the stored keys in [lower, upper).
func countKeys(t testing.TB, db *pebble.DB, lower, upper []byte) int {
	t.Helper()
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for valid := iter.First(); valid; valid = iter.Next() {
		n++
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAppendLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	if got := mustLoad(t, l.Log); got.hasSnapshot || len(got.order) != 0 {
		t.Fatalf("fresh log loaded %+v", got)
	}
	for want := uint64(1); want <= 100; want++ {
		if seq := l.mustAppend(t, entryData(want)); seq != want {
			t.Fatalf("append got seq %d, want %d", seq, want)
		}
	}
	if st := l.Stats(); st.LastSeq != 100 || st.Entries != 100 || st.EntriesSinceSnapshot != 100 || l.LastSeq() != 100 {
		t.Fatalf("stats = %+v, LastSeq = %d", st, l.LastSeq())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTestLog(t, dir, Options{Sync: true})
	if l.LastSeq() != 100 {
		t.Fatalf("reopened LastSeq = %d, want 100", l.LastSeq())
	}
	got := mustLoad(t, l.Log)
	if got.hasSnapshot {
		t.Fatal("Load reported a snapshot that was never written")
	}
	checkEntries(t, got, 1, 100)
	if seq := l.mustAppend(t, entryData(101)); seq != 101 {
		t.Fatalf("first append after reopen got seq %d, want 101", seq)
	}
}

// TestConcurrentAppendsKeepOrder appends from many goroutines and checks that
// OnCommit reports strictly increasing seqs, that each entry is stored under
// the seq it was reported with, and that appends were grouped.
func TestConcurrentAppendsKeepOrder(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	const appenders, perAppender = 50, 40
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[uint64][]byte{}
		errs    = make(chan error, appenders)
	)
	for a := range appenders {
		wg.Go(func() {
			for i := range perAppender {
				data := fmt.Appendf(nil, "appender %d item %d", a, i)
				c := waitCommitted(l.append(data))
				if c.Err != nil {
					errs <- c.Err
					return
				}
				mu.Lock()
				written[c.Seq] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []uint64
	for _, b := range l.committedBatches() {
		all = append(all, b...)
	}
	for i, seq := range all {
		if seq != uint64(i+1) {
			t.Fatalf("OnCommit reported seq %d at position %d: %v", seq, i, summarize(all))
		}
	}
	st := l.Stats()
	t.Logf("%d entries in %d commits", st.Entries, st.Commits)
	if st.Entries != appenders*perAppender || st.Commits >= st.Entries {
		t.Fatalf("stats = %+v: want %d entries in fewer commits", st, appenders*perAppender)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if len(got.order) != len(written) {
		t.Fatalf("loaded %d entries, wrote %d", len(got.order), len(written))
	}
	for seq, data := range written {
		if !bytes.Equal(got.entries[seq], data) {
			t.Fatalf("entry %d = %q, want %q", seq, got.entries[seq], data)
		}
	}
}

func TestSnapshotThenLoad(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	for seq := uint64(1); seq <= 50; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	snap := snapshotData(30, 2*ChunkBytes+12345)
	l.Snapshot(30, snap)
	for seq := uint64(51); seq <= 60; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	if r := l.waitSnapshot(t); r.seq != 30 || r.err != nil {
		t.Fatalf("snapshot report = %+v", r)
	}
	if st := l.Stats(); st.SnapshotSeq != 30 || st.EntriesSinceSnapshot != 30 || st.LastSeq != 60 || st.Snapshots != 1 {
		t.Fatalf("stats = %+v", st)
	}
	// The entries up to the snapshot are gone from disk.
	if n := countKeys(t, l.db, entryKey(0), entryKey(31)); n != 0 {
		t.Fatalf("%d entries <= 30 still stored", n)
	}
	if n := countKeys(t, l.db, chunksLowerBound(), []byte{chunkPrefix + 1}); n != 3 {
		t.Fatalf("%d chunks stored, want 3", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if !got.hasSnapshot || got.snapshotSeen != 1 || got.snapshotSeq != 30 || !bytes.Equal(got.snapshot, snap) {
		t.Fatalf("loaded snapshot seq %d (%d bytes, seen %d times), want seq 30 (%d bytes)",
			got.snapshotSeq, len(got.snapshot), got.snapshotSeen, len(snap))
	}
	checkEntries(t, got, 31, 60)
	if st := l.Stats(); st.SnapshotSeq != 30 || st.LastSeq != 60 {
		t.Fatalf("stats after reopen = %+v", st)
	}
}

func TestSnapshotReplacesOld(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	for seq := uint64(1); seq <= 20; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	chunkCount := func() int { return countKeys(t, l.db, chunksLowerBound(), []byte{chunkPrefix + 1}) }

	l.mustSnapshot(t, 10, snapshotData(10, 3*ChunkBytes+1))
	if n := chunkCount(); n != 4 {
		t.Fatalf("%d chunks after first snapshot, want 4", n)
	}
	second := snapshotData(20, ChunkBytes+ChunkBytes/2)
	l.mustSnapshot(t, 20, second)
	if n := chunkCount(); n != 2 {
		t.Fatalf("%d chunks after second snapshot, want 2", n)
	}
	// A smaller snapshot at the same seq replaces it too.
	third := []byte("small snapshot at the same seq")
	l.mustSnapshot(t, 20, third)
	if n := chunkCount(); n != 1 {
		t.Fatalf("%d chunks after third snapshot, want 1", n)
	}
	l.mustAppend(t, entryData(21))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if got.snapshotSeq != 20 || !bytes.Equal(got.snapshot, third) {
		t.Fatalf("loaded snapshot %d %q, want 20 %q", got.snapshotSeq, truncate(got.snapshot), third)
	}
	checkEntries(t, got, 21, 21)

	// An empty snapshot is a valid snapshot.
	l.mustSnapshot(t, 21, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	got = mustLoad(t, l.Log)
	if !got.hasSnapshot || got.snapshotSeq != 21 || len(got.snapshot) != 0 || len(got.order) != 0 {
		t.Fatalf("after empty snapshot loaded %+v", got)
	}
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// TestSnapshotInsideBatch queues appends, a snapshot and more appends behind
// a held committer so that they share one Pebble batch, and checks that the
// snapshot removed the entries before it in that batch but none after.
func TestSnapshotInsideBatch(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	gate := newCommitGate()
	l.gate = gate
	l.Append(entryData(1), gate.token)
	<-gate.entered

	var chs []chan Committed
	for seq := uint64(2); seq <= 6; seq++ {
		chs = append(chs, l.append(entryData(seq)))
	}
	snap := snapshotData(4, 1000)
	l.Snapshot(4, snap)
	for seq := uint64(7); seq <= 8; seq++ {
		chs = append(chs, l.append(entryData(seq)))
	}
	close(gate.release)
	for _, ch := range chs {
		if c := waitCommitted(ch); c.Err != nil {
			t.Fatal(c.Err)
		}
	}
	if r := l.waitSnapshot(t); r.seq != 4 || r.err != nil {
		t.Fatalf("snapshot report = %+v", r)
	}
	if got := l.committedBatches(); len(got) != 2 || !slices.Equal(got[1], []uint64{2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("batches = %v, want [[1] [2 3 4 5 6 7 8]]", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if got.snapshotSeq != 4 || !bytes.Equal(got.snapshot, snap) {
		t.Fatalf("loaded snapshot %d, want 4", got.snapshotSeq)
	}
	checkEntries(t, got, 5, 8)
}

// corruptAndLoad writes a log with a multi-chunk snapshot and entries, lets
// damage change the Pebble store directly, and returns the error of reopening
// and loading it.
func corruptAndLoad(t *testing.T, damage func(db *pebble.DB) error) error {
	t.Helper()
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	for seq := uint64(1); seq <= 10; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	l.mustSnapshot(t, 5, snapshotData(5, 2*ChunkBytes+100))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebble.DefaultLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := damage(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A damaged header is found by Open already; everything else by Load.
	reopened, err := Open(dir, Options{Sync: true, OnCommit: func([]Committed) {}})
	if err != nil {
		return err
	}
	defer func() {
		if err := reopened.Close(); err != nil {
			t.Error(err)
		}
	}()
	_, err = load(reopened)
	return err
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

func TestCorruptionIsDetected(t *testing.T) {
	cases := []struct {
		name   string
		damage func(db *pebble.DB) error
	}{
		{"flipped bit in a snapshot chunk", func(db *pebble.DB) error { return flipBit(db, chunkKey(5, 1), 777) }},
		{"missing snapshot chunk", func(db *pebble.DB) error { return db.Delete(chunkKey(5, 2), pebble.Sync) }},
		{"extra snapshot chunk", func(db *pebble.DB) error { return db.Set(chunkKey(5, 3), []byte("x"), pebble.Sync) }},
		{"flipped bit in the header", func(db *pebble.DB) error { return flipBit(db, []byte(headerKey), 13) }},
		{"flipped bit in an entry", func(db *pebble.DB) error { return flipBit(db, entryKey(8), 6) }},
		{"truncated entry", func(db *pebble.DB) error { return db.Set(entryKey(9), []byte{1, 2}, pebble.Sync) }},
		{"missing entry", func(db *pebble.DB) error { return db.Delete(entryKey(7), pebble.Sync) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := corruptAndLoad(t, c.damage); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open+Load = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("undamaged", func(t *testing.T) {
		if err := corruptAndLoad(t, func(*pebble.DB) error { return nil }); err != nil {
			t.Fatalf("Load of an undamaged log = %v", err)
		}
	})
}

func TestClosedLog(t *testing.T) {
	l := openTestLog(t, t.TempDir(), Options{Sync: true})
	l.mustAppend(t, []byte("before close"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	c := waitCommitted(l.append([]byte("after close")))
	if !errors.Is(c.Err, ErrClosed) || c.Seq != 0 {
		t.Fatalf("append after close = %+v, want ErrClosed and no seq", c)
	}
	l.Snapshot(1, []byte("snap"))
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("snapshot after close = %+v, want ErrClosed", r)
	}
	if _, err := load(l.Log); !errors.Is(err, ErrClosed) {
		t.Fatalf("load after close = %v, want ErrClosed", err)
	}
}

func TestCloseCommitsQueued(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	var chs []chan Committed
	for seq := uint64(1); seq <= 2000; seq++ {
		chs = append(chs, l.append(entryData(seq)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chs {
		if c := waitCommitted(ch); c.Err != nil || c.Seq != uint64(i+1) {
			t.Fatalf("append %d reported %+v", i+1, c)
		}
	}
	l = openTestLog(t, dir, Options{Sync: true})
	checkEntries(t, mustLoad(t, l.Log), 1, 2000)
}

func TestBadSnapshotIsRefused(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	for seq := uint64(1); seq <= 5; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	l.Snapshot(6, []byte("future"))
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrBadSnapshot) {
		t.Fatalf("snapshot past the end = %+v, want ErrBadSnapshot", r)
	}
	l.mustSnapshot(t, 4, []byte("four"))
	l.Snapshot(3, []byte("older"))
	if r := l.waitSnapshot(t); !errors.Is(r.err, ErrBadSnapshot) {
		t.Fatalf("older snapshot = %+v, want ErrBadSnapshot", r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if got.snapshotSeq != 4 || string(got.snapshot) != "four" {
		t.Fatalf("loaded snapshot %d %q, want 4 \"four\"", got.snapshotSeq, got.snapshot)
	}
	checkEntries(t, got, 5, 5)
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir, Options{Sync: true})
	for seq := uint64(1); seq <= 3; seq++ {
		l.mustAppend(t, entryData(seq))
	}
	if _, err := load(l.Log); err == nil {
		t.Fatal("Load after Append succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTestLog(t, dir, Options{Sync: true})
	stop := errors.New("callback refuses")
	var seen []uint64
	err := l.Load(func(uint64, []byte) error { return nil }, func(seq uint64, _ []byte) error {
		seen = append(seen, seq)
		if seq == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(seen, []uint64{1, 2}) {
		t.Fatalf("Load = %v after %v, want the callback's error after [1 2]", err, seen)
	}
	if _, err := load(l.Log); err == nil {
		t.Fatal("second Load succeeded")
	}
}

func TestOpenRequiresOnCommit(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Sync: true}); err == nil {
		t.Fatal("Open without OnCommit succeeded")
	}
}

func TestReopenInProcessLeaksNoGoroutines(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	for round := range 3 {
		done := make(chan Committed, 1)
		l, err := Open(dir, Options{Sync: true, OnCommit: func(committed []Committed) {
			for _, c := range committed {
				done <- c
			}
		}})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got, err := load(l)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(got.order) != round {
			t.Fatalf("round %d loaded %d entries", round, len(got.order))
		}
		l.Append(entryData(uint64(round+1)), nil)
		if c := waitCommitted(done); c.Err != nil || c.Seq != uint64(round+1) {
			t.Fatalf("round %d: append reported %+v", round, c)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	leakcheck.Goroutines(t, before)
}
