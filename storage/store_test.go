package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// waitTimeout bounds every wait for a Result so a lost Result fails the test
// instead of hanging it.
const waitTimeout = 20 * time.Second

// testStore is a Store whose ops carry a chan error as Token; OnCommit
// delivers each Result to its channel and records the size of every batch.
type testStore struct {
	*Store
	mu      sync.Mutex
	batches []int
	// gate, when set, makes OnCommit stop after delivering a batch that
	// contains gate.token until gate.release is closed.
	gate *commitGate
}

// commitGate holds the committer inside OnCommit so that later submissions
// pile up in the queue and are committed as one batch.
type commitGate struct {
	token   chan error
	entered chan struct{}
	release chan struct{}
}

func newCommitGate() *commitGate {
	return &commitGate{
		token:   make(chan error, 1),
		entered: make(chan struct{}),
		release: make(chan struct{}),
	}
}

func (ts *testStore) onCommit(results []Result) {
	ts.mu.Lock()
	ts.batches = append(ts.batches, len(results))
	gate := ts.gate
	ts.mu.Unlock()
	held := false
	for _, r := range results {
		ch := r.Token.(chan error)
		ch <- r.Err
		if gate != nil && ch == gate.token {
			held = true
		}
	}
	if held {
		close(gate.entered)
		<-gate.release
	}
}

// batchSizes returns the sizes of the batches committed so far.
func (ts *testStore) batchSizes() []int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.batches)
}

func openTestStore(t testing.TB, dir string, opts Options) *testStore {
	t.Helper()
	ts := &testStore{}
	opts.OnCommit = ts.onCommit
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ts.Store = s
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return ts
}

// submit queues op and returns the channel its Result will arrive on.
func (ts *testStore) submit(op Op) chan error {
	ch := make(chan error, 1)
	op.Token = ch
	ts.Submit(op)
	return ch
}

// waitResult returns the Result delivered on ch, or an error if none arrives
// within waitTimeout. It is safe to call from any goroutine.
func waitResult(ch chan error) error {
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		return fmt.Errorf("no result within %v", waitTimeout)
	}
}

func (ts *testStore) mustPut(t testing.TB, id int64, version uint64, payload []byte) {
	t.Helper()
	if err := waitResult(ts.submit(Op{Kind: OpPut, ID: id, Version: version, Payload: payload})); err != nil {
		t.Fatalf("put %d/%d: %v", id, version, err)
	}
}

func (ts *testStore) mustPrune(t testing.TB, id int64, below uint64) {
	t.Helper()
	if err := waitResult(ts.submit(Op{Kind: OpPrune, ID: id, Version: below})); err != nil {
		t.Fatalf("prune %d below %d: %v", id, below, err)
	}
}

func mustGet(t testing.TB, s *Store, id int64, version uint64, want []byte) {
	t.Helper()
	got, err := s.Get(id, version)
	if err != nil {
		t.Fatalf("get %d/%d: %v", id, version, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %d/%d = %q, want %q", id, version, truncate(got), truncate(want))
	}
}

func mustBeMissing(t testing.TB, s *Store, id int64, version uint64) {
	t.Helper()
	got, err := s.Get(id, version)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("get %d/%d = %q, %v; want ErrNotFound", id, version, truncate(got), err)
	}
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func checkStats(t testing.TB, s *Store, messages, payloadBytes uint64) {
	t.Helper()
	st := s.Stats()
	if st.Messages != messages || st.Bytes != payloadBytes {
		t.Fatalf("stats = %+v, want Messages=%d Bytes=%d", st, messages, payloadBytes)
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	large := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	cases := []struct {
		id      int64
		version uint64
		payload []byte
	}{
		{1, 1, []byte("hello")},
		{2, 7, []byte{}},
		{3, 1, []byte{0, 1, 2, 0xff}},
		{4, 2, large},
	}
	var total uint64
	for _, c := range cases {
		s.mustPut(t, c.id, c.version, c.payload)
		total += uint64(len(c.payload))
	}
	for _, c := range cases {
		mustGet(t, s.Store, c.id, c.version, c.payload)
	}
	checkStats(t, s.Store, uint64(len(cases)), total)

	// Get returns a copy: changing it must not change what is stored.
	got, err := s.Get(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'J'
	mustGet(t, s.Store, 1, 1, []byte("hello"))
}

func TestGetIsExactVersion(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	s.mustPut(t, 10, 1, []byte("v1"))
	s.mustPut(t, 10, 3, []byte("v3"))

	mustGet(t, s.Store, 10, 1, []byte("v1"))
	mustGet(t, s.Store, 10, 3, []byte("v3"))
	for _, v := range []uint64{0, 2, 4, math.MaxUint64} {
		mustBeMissing(t, s.Store, 10, v)
	}
	mustBeMissing(t, s.Store, 9, 1)
	mustBeMissing(t, s.Store, 11, 3)
}

func TestPruneKeepsBoundAndNewer(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	payload := func(id int64, v uint64) []byte { return fmt.Appendf(nil, "payload %d/%d", id, v) }
	var total uint64
	for _, id := range []int64{6, 7, 8} {
		for v := uint64(1); v <= 5; v++ {
			s.mustPut(t, id, v, payload(id, v))
			total += uint64(len(payload(id, v)))
		}
	}
	s.mustPrune(t, 7, 3)
	mustBeMissing(t, s.Store, 7, 1)
	mustBeMissing(t, s.Store, 7, 2)
	for v := uint64(3); v <= 5; v++ {
		mustGet(t, s.Store, 7, v, payload(7, v))
	}
	for _, id := range []int64{6, 8} {
		for v := uint64(1); v <= 5; v++ {
			mustGet(t, s.Store, id, v, payload(id, v))
		}
	}
	total -= uint64(len(payload(7, 1)) + len(payload(7, 2)))
	checkStats(t, s.Store, 13, total)

	// Pruning below version 0, or again below the same bound, removes nothing.
	s.mustPrune(t, 7, 0)
	s.mustPrune(t, 7, 3)
	checkStats(t, s.Store, 13, total)

	// Pruning an id that has nothing stored is fine.
	s.mustPrune(t, 99, 10)
	checkStats(t, s.Store, 13, total)

	// Pruning above every stored version removes them all.
	s.mustPrune(t, 6, math.MaxUint64)
	for v := uint64(1); v <= 5; v++ {
		mustBeMissing(t, s.Store, 6, v)
	}
	for v := uint64(1); v <= 5; v++ {
		total -= uint64(len(payload(6, v)))
	}
	checkStats(t, s.Store, 8, total)
}

// TestPruneSeesPutsInSameBatch holds the committer so that two puts and a
// prune land in one batch, and checks that the prune removed the put staged
// before it (read-your-writes in the indexed batch).
func TestPruneSeesPutsInSameBatch(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	gate := newCommitGate()
	s.gate = gate
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Payload: []byte("gate"), Token: gate.token})
	<-gate.entered

	first := s.submit(Op{Kind: OpPut, ID: 9, Version: 1, Payload: []byte("one")})
	second := s.submit(Op{Kind: OpPut, ID: 9, Version: 2, Payload: []byte("two")})
	prune := s.submit(Op{Kind: OpPrune, ID: 9, Version: 2})
	close(gate.release)
	for _, ch := range []chan error{first, second, prune} {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.batchSizes(); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("batch sizes = %v, want [1 3]", got)
	}
	mustBeMissing(t, s.Store, 9, 1)
	mustGet(t, s.Store, 9, 2, []byte("two"))
	checkStats(t, s.Store, 2, uint64(len("gate")+len("two")))
}

func TestBatchLimits(t *testing.T) {
	t.Run("ops", func(t *testing.T) {
		s := openTestStore(t, t.TempDir(), Options{Sync: true, MaxBatchOps: 2})
		gate := newCommitGate()
		s.gate = gate
		s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Token: gate.token})
		<-gate.entered
		var chs []chan error
		for i := range 5 {
			chs = append(chs, s.submit(Op{Kind: OpPut, ID: 2, Version: uint64(i)}))
		}
		close(gate.release)
		for _, ch := range chs {
			if err := waitResult(ch); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.batchSizes(); !slices.Equal(got, []int{1, 2, 2, 1}) {
			t.Fatalf("batch sizes = %v, want [1 2 2 1]", got)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s := openTestStore(t, t.TempDir(), Options{Sync: true, MaxBatchBytes: 100})
		gate := newCommitGate()
		s.gate = gate
		s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Token: gate.token})
		<-gate.entered
		var chs []chan error
		sizes := []int{60, 30, 60, 200, 10, 10}
		for i, n := range sizes {
			chs = append(chs, s.submit(Op{Kind: OpPut, ID: 2, Version: uint64(i), Payload: make([]byte, n)}))
		}
		close(gate.release)
		for _, ch := range chs {
			if err := waitResult(ch); err != nil {
				t.Fatal(err)
			}
		}
		// 60+30 fit; 60 alone (200 would exceed); 200 alone (oversized); 10+10.
		if got := s.batchSizes(); !slices.Equal(got, []int{1, 2, 1, 1, 2}) {
			t.Fatalf("batch sizes = %v, want [1 2 1 1 2]", got)
		}
		for i, n := range sizes {
			mustGet(t, s.Store, 2, uint64(i), make([]byte, n))
		}
	})
}

func TestRePutIsIdempotent(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	s.mustPut(t, 5, 5, []byte("same"))
	s.mustPut(t, 5, 5, []byte("same"))
	checkStats(t, s.Store, 1, 4)
	mustGet(t, s.Store, 5, 5, []byte("same"))

	// A re-put with a different payload replaces it; the byte count follows.
	s.mustPut(t, 5, 5, []byte("longer payload"))
	checkStats(t, s.Store, 1, uint64(len("longer payload")))
	mustGet(t, s.Store, 5, 5, []byte("longer payload"))

	// Re-puts within one batch count once as well.
	gate := newCommitGate()
	s.gate = gate
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Payload: []byte("g"), Token: gate.token})
	<-gate.entered
	a := s.submit(Op{Kind: OpPut, ID: 6, Version: 1, Payload: []byte("abc")})
	b := s.submit(Op{Kind: OpPut, ID: 6, Version: 1, Payload: []byte("abc")})
	close(gate.release)
	for _, ch := range []chan error{a, b} {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	checkStats(t, s.Store, 3, uint64(len("longer payload")+len("g")+len("abc")))
}

func TestStatsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	var messages, payloadBytes uint64
	{
		s := openTestStore(t, dir, Options{Sync: true})
		for id := int64(-5); id < 5; id++ {
			for v := uint64(1); v <= 3; v++ {
				p := bytes.Repeat([]byte{byte(id)}, int(v)*10)
				s.mustPut(t, id, v, p)
			}
		}
		s.mustPut(t, 0, 1, make([]byte, 10)) // idempotent re-put
		s.mustPrune(t, 2, 3)                 // removes 10+20 bytes
		messages, payloadBytes = 28, 10*60-30
		checkStats(t, s.Store, messages, payloadBytes)
		st := s.Stats()
		if st.Commits == 0 || st.Ops != 32 {
			t.Fatalf("stats = %+v, want Ops=32 and some commits", st)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openTestStore(t, dir, Options{Sync: true})
	checkStats(t, s.Store, messages, payloadBytes)
	if st := s.Stats(); st.Commits != 0 || st.Ops != 0 {
		t.Fatalf("commit counters after reopen = %+v, want zero", st)
	}
	mustGet(t, s.Store, -5, 3, bytes.Repeat([]byte{byte(-5 & 0xff)}, 30))
	mustBeMissing(t, s.Store, 2, 2)
}

func TestExtremeIDsSortAndRoundTrip(t *testing.T) {
	ids := []int64{math.MinInt64, math.MinInt64 + 1, -2, -1, 0, 1, 2, math.MaxInt64 - 1, math.MaxInt64}
	versions := []uint64{0, 1, math.MaxUint64}

	// Keys sort by id (signed) and then by version (unsigned), and decode back.
	var keys [][]byte
	for _, id := range ids {
		for _, v := range versions {
			key := encodeKey(id, v)
			gotID, gotV, err := decodeKey(key)
			if err != nil || gotID != id || gotV != v {
				t.Fatalf("decodeKey(encodeKey(%d, %d)) = %d, %d, %v", id, v, gotID, gotV, err)
			}
			keys = append(keys, key)
		}
	}
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Fatal("encoded keys do not sort in (id, version) order")
	}

	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	payload := func(id int64, v uint64) []byte { return fmt.Appendf(nil, "%d@%d", id, v) }
	for _, id := range ids {
		for _, v := range versions {
			s.mustPut(t, id, v, payload(id, v))
		}
	}
	for _, id := range ids {
		for _, v := range versions {
			mustGet(t, s.Store, id, v, payload(id, v))
		}
	}

	// The store iterates in the same order as the keys.
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: messagesLowerBound(), UpperBound: messagesUpperBound()})
	if err != nil {
		t.Fatal(err)
	}
	var stored [][]byte
	for valid := iter.First(); valid; valid = iter.Next() {
		stored = append(stored, slices.Clone(iter.Key()))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(stored, keys, bytes.Equal) {
		t.Fatalf("pebble holds %d keys in a different order than expected (%d)", len(stored), len(keys))
	}

	// A prune of the neighbours of id 0 and of the extremes touches only them.
	for _, id := range []int64{math.MinInt64, -1, 1, math.MaxInt64} {
		s.mustPrune(t, id, math.MaxUint64)
	}
	for _, id := range ids {
		for _, v := range versions {
			pruned := v != math.MaxUint64 && (id == math.MinInt64 || id == -1 || id == 1 || id == math.MaxInt64)
			if pruned {
				mustBeMissing(t, s.Store, id, v)
			} else {
				mustGet(t, s.Store, id, v, payload(id, v))
			}
		}
	}
}

// TestCorruptValueIsReported damages stored values through Pebble directly
// and checks that Get reports ErrCorrupt rather than returning bad data.
func TestCorruptValueIsReported(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Sync: true})
	s.mustPut(t, 1, 1, []byte("a payload that will get a flipped bit"))
	s.mustPut(t, 2, 1, []byte("will be truncated"))
	s.mustPut(t, 3, 1, []byte("moved to another key"))
	s.mustPut(t, 4, 1, []byte("untouched"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := pebble.Open(dir, &pebble.Options{Logger: pebble.DefaultLogger})
	if err != nil {
		t.Fatal(err)
	}
	readRaw := func(key []byte) []byte {
		v, closer, err := db.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		return slices.Clone(v)
	}
	flipped := readRaw(encodeKey(1, 1))
	flipped[len(flipped)-3] ^= 0x10
	moved := readRaw(encodeKey(3, 1))
	for key, value := range map[string][]byte{
		string(encodeKey(1, 1)): flipped,
		string(encodeKey(2, 1)): {0xde, 0xad},
		string(encodeKey(3, 2)): moved, // right checksum, wrong key
	} {
		if err := db.Set([]byte(key), value, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir, Options{Sync: true})
	for _, k := range []struct {
		id      int64
		version uint64
	}{{1, 1}, {2, 1}, {3, 2}} {
		got, err := s.Get(k.id, k.version)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("get %d/%d = %q, %v; want ErrCorrupt", k.id, k.version, got, err)
		}
	}
	mustGet(t, s.Store, 3, 1, []byte("moved to another key"))
	mustGet(t, s.Store, 4, 1, []byte("untouched"))
}

func TestConcurrentSubmitAndGet(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	const writers, perWriter = 32, 100
	payload := func(id int64, v uint64) []byte { return fmt.Appendf(nil, "w%d v%d", id, v) }

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			id := int64(w)
			for v := uint64(1); v <= perWriter; v++ {
				if err := waitResult(s.submit(Op{Kind: OpPut, ID: id, Version: v, Payload: payload(id, v)})); err != nil {
					errs <- err
					return
				}
				// Every acknowledged write is readable at once, while other
				// writers keep the committer busy.
				got, err := s.Get(id, v)
				if err != nil || !bytes.Equal(got, payload(id, v)) {
					errs <- fmt.Errorf("get %d/%d after ack = %q, %v", id, v, got, err)
					return
				}
				if v%10 == 0 {
					s.Submit(Op{Kind: OpPrune, ID: id, Version: v - 5, Token: make(chan error, 1)})
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Prunes may still be queued; a final put per writer behind them in the
	// queue waits for them.
	for w := range writers {
		s.mustPut(t, int64(w), perWriter+1, payload(int64(w), perWriter+1))
	}
	for w := range writers {
		id := int64(w)
		mustBeMissing(t, s.Store, id, perWriter-6)
		for v := uint64(perWriter - 5); v <= perWriter+1; v++ {
			mustGet(t, s.Store, id, v, payload(id, v))
		}
	}
	if st := s.Stats(); st.Messages != writers*7 {
		t.Fatalf("stats = %+v, want %d messages", st, writers*7)
	}
}

func TestGroupCommitGroups(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	const submitters = 1000
	start := make(chan struct{})
	var wg sync.WaitGroup
	chs := make([]chan error, submitters)
	for i := range submitters {
		chs[i] = make(chan error, 1)
		wg.Go(func() {
			<-start
			s.Submit(Op{Kind: OpPut, ID: int64(i), Version: 1, Payload: []byte("x"), Token: chs[i]})
		})
	}
	close(start)
	wg.Wait()
	for _, ch := range chs {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	t.Logf("%d ops in %d commits", st.Ops, st.Commits)
	if st.Ops != submitters {
		t.Fatalf("Ops = %d, want %d", st.Ops, submitters)
	}
	if st.Commits >= st.Ops {
		t.Fatalf("Commits = %d, not fewer than Ops = %d: no grouping", st.Commits, st.Ops)
	}
	if n := len(s.batchSizes()); uint64(n) != st.Commits {
		t.Fatalf("OnCommit called %d times for %d commits", n, st.Commits)
	}
}

func TestClosedStore(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	s.mustPut(t, 1, 1, []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := waitResult(s.submit(Op{Kind: OpPut, ID: 2, Version: 1})); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close = %v, want ErrClosed", err)
	}
	if _, err := s.Get(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close = %v, want ErrClosed", err)
	}
}

// TestCloseReportsEveryOp closes the store while submitters are busy and
// checks that each op got exactly one Result and that every acknowledged op
// is stored.
func TestCloseReportsEveryOp(t *testing.T) {
	dir := t.TempDir()
	var (
		mu       sync.Mutex
		reported = map[int64]error{}
		dupes    int
	)
	s, err := Open(dir, Options{Sync: true, OnCommit: func(results []Result) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			id := r.Token.(int64)
			if _, seen := reported[id]; seen {
				dupes++
			}
			reported[id] = r.Err
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Submitters keep going until Close has returned, so ops are queued
	// while Close runs and some arrive after it.
	const submitters = 8
	var (
		wg        sync.WaitGroup
		submitted atomic.Int64
		closed    atomic.Bool
	)
	for w := range submitters {
		wg.Go(func() {
			for i := int64(0); ; i++ {
				stop := closed.Load()
				id := int64(w)<<32 | i
				s.Submit(Op{Kind: OpPut, ID: id, Version: 1, Payload: []byte("p"), Token: id})
				submitted.Add(1)
				if stop {
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if dupes != 0 || int64(len(reported)) != submitted.Load() {
		t.Fatalf("%d ops reported (%d twice), want %d once each", len(reported), dupes, submitted.Load())
	}
	acked := 0
	s2 := openTestStore(t, dir, Options{Sync: true})
	for id, err := range reported {
		switch {
		case err == nil:
			acked++
			mustGet(t, s2.Store, id, 1, []byte("p"))
		case !errors.Is(err, ErrClosed):
			t.Fatalf("op %d: %v", id, err)
		}
	}
	t.Logf("%d of %d ops committed before close", acked, len(reported))
	if acked == 0 || acked == len(reported) {
		t.Fatalf("%d of %d ops committed: want some before and some after Close", acked, len(reported))
	}
	if st := s2.Stats(); st.Messages != uint64(acked) {
		t.Fatalf("reopened store holds %d messages, %d were acknowledged", st.Messages, acked)
	}
}

func TestReopenInProcessLeaksNoGoroutines(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	for round := range 3 {
		s, err := Open(dir, Options{Sync: true, OnCommit: func(results []Result) {
			for _, r := range results {
				r.Token.(chan error) <- r.Err
			}
		}})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ch := make(chan error, 1)
		s.Submit(Op{Kind: OpPut, ID: int64(round), Version: 1, Payload: []byte("r"), Token: ch})
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
		if got := s.Stats().Messages; got != uint64(round+1) {
			t.Fatalf("round %d: %d messages, want %d", round, got, round+1)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after three open/close rounds:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestOpenRequiresOnCommit(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Sync: true}); err == nil {
		t.Fatal("Open without OnCommit succeeded")
	}
}

func TestUnknownOpKindFailsOnlyThatOp(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	gate := newCommitGate()
	s.gate = gate
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Token: gate.token})
	<-gate.entered
	bad := s.submit(Op{Kind: OpKind(42), ID: 2, Version: 1})
	good := s.submit(Op{Kind: OpPut, ID: 3, Version: 1, Payload: []byte("ok")})
	close(gate.release)
	if err := waitResult(bad); err == nil {
		t.Fatal("op of unknown kind succeeded")
	}
	if err := waitResult(good); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s.Store, 3, 1, []byte("ok"))
}
