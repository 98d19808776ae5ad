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

	"github.com/tolerex/tolerex/storage/internal/leakcheck"
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

// mustDelete deletes (id, version), telling the store its payload is size
// bytes, and waits for the result.
func (ts *testStore) mustDelete(t testing.TB, id int64, version uint64, size int) {
	t.Helper()
	if err := waitResult(ts.submit(Op{Kind: OpDelete, ID: id, Version: version, Size: uint32(size)})); err != nil {
		t.Fatalf("delete %d/%d: %v", id, version, err)
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

func TestDeleteRemovesExactlyThatVersion(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	payload := func(id int64, v uint64) []byte { return fmt.Appendf(nil, "payload %d/%d", id, v) }
	stored := map[int64][]uint64{}
	var total uint64
	for _, id := range []int64{6, 7, 8} {
		for v := uint64(1); v <= 5; v++ {
			s.mustPut(t, id, v, payload(id, v))
			stored[id] = append(stored[id], v)
			total += uint64(len(payload(id, v)))
		}
	}
	checkAll := func() {
		t.Helper()
		for _, id := range []int64{6, 7, 8} {
			for v := uint64(0); v <= 6; v++ {
				if slices.Contains(stored[id], v) {
					mustGet(t, s.Store, id, v, payload(id, v))
				} else {
					mustBeMissing(t, s.Store, id, v)
				}
			}
		}
	}
	del := func(id int64, v uint64) {
		t.Helper()
		s.mustDelete(t, id, v, len(payload(id, v)))
		stored[id] = slices.DeleteFunc(stored[id], func(x uint64) bool { return x == v })
		total -= uint64(len(payload(id, v)))
	}

	// A middle version goes; its neighbours and the other ids stay.
	del(7, 3)
	checkAll()
	checkStats(t, s.Store, 14, total)

	// So do the lowest and the highest version.
	del(7, 1)
	del(7, 5)
	checkAll()
	checkStats(t, s.Store, 12, total)

	// Deleting every version of an id leaves the ids around it untouched.
	for v := uint64(1); v <= 5; v++ {
		del(6, v)
	}
	checkAll()
	checkStats(t, s.Store, 7, total)
}

// TestDeleteCountsWhatTheCallerSays pins that a delete reads nothing: the
// counters drop by one record and Op.Size bytes whether or not that is
// what was stored (garbage in, garbage out), and the next Open, which
// scans the store, counts what is really there.
func TestDeleteCountsWhatTheCallerSays(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Sync: true})
	s.mustPut(t, 1, 1, make([]byte, 10))
	s.mustPut(t, 2, 1, make([]byte, 20))
	s.mustPut(t, 3, 1, make([]byte, 30))
	checkStats(t, s.Store, 3, 60)

	// A wrong size is believed.
	s.mustDelete(t, 1, 1, 4)
	mustBeMissing(t, s.Store, 1, 1)
	checkStats(t, s.Store, 2, 56)

	// Deleting a key that does not exist still counts a record and its
	// size as gone.
	s.mustDelete(t, 2, 2, 7)
	s.mustDelete(t, 9, 1, 1)
	mustGet(t, s.Store, 2, 1, make([]byte, 20))
	mustGet(t, s.Store, 3, 1, make([]byte, 30))
	checkStats(t, s.Store, 0, 48)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, Options{Sync: true})
	checkStats(t, s.Store, 2, 50)
}

// TestLaterOpWinsWithinBatch holds the committer so that puts and deletes
// of the same keys land in one batch, and checks that they take effect in
// submission order.
func TestLaterOpWinsWithinBatch(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Sync: true})
	s.mustPut(t, 9, 0, []byte("zero"))
	gate := newCommitGate()
	s.gate = gate
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Payload: []byte("gate"), Token: gate.token})
	<-gate.entered

	chs := []chan error{
		// Put then delete: the record is gone.
		s.submit(Op{Kind: OpPut, ID: 9, Version: 1, Payload: []byte("one")}),
		s.submit(Op{Kind: OpDelete, ID: 9, Version: 1, Size: 3}),
		// Delete then put: the new payload is there.
		s.submit(Op{Kind: OpDelete, ID: 9, Version: 0, Size: 4}),
		s.submit(Op{Kind: OpPut, ID: 9, Version: 0, Payload: []byte("zero again")}),
		// An untouched put in the same batch.
		s.submit(Op{Kind: OpPut, ID: 9, Version: 2, Payload: []byte("two")}),
	}
	close(gate.release)
	for _, ch := range chs {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.batchSizes(); !slices.Equal(got, []int{1, 1, len(chs)}) {
		t.Fatalf("batch sizes = %v, want [1 1 %d]", got, len(chs))
	}
	check := func() {
		t.Helper()
		mustBeMissing(t, s.Store, 9, 1)
		mustGet(t, s.Store, 9, 0, []byte("zero again"))
		mustGet(t, s.Store, 9, 2, []byte("two"))
		checkStats(t, s.Store, 3, uint64(len("gate")+len("zero again")+len("two")))
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, Options{Sync: true})
	check()
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

// TestRePutReplacesPayloadAndCountsAgain pins the documented cost of
// putting the same (id, version) twice, which the leader never does: the
// payload is replaced, but the counters take it for another record until
// the next Open recounts.
func TestRePutReplacesPayloadAndCountsAgain(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Sync: true})
	s.mustPut(t, 5, 5, []byte("same"))
	s.mustPut(t, 5, 5, []byte("same"))
	checkStats(t, s.Store, 2, 8)
	mustGet(t, s.Store, 5, 5, []byte("same"))

	s.mustPut(t, 5, 5, []byte("longer payload"))
	checkStats(t, s.Store, 3, 8+uint64(len("longer payload")))
	mustGet(t, s.Store, 5, 5, []byte("longer payload"))

	// Within one batch as well; the later put's payload is kept.
	gate := newCommitGate()
	s.gate = gate
	s.Submit(Op{Kind: OpPut, ID: 1, Version: 1, Payload: []byte("g"), Token: gate.token})
	<-gate.entered
	a := s.submit(Op{Kind: OpPut, ID: 6, Version: 1, Payload: []byte("abc")})
	b := s.submit(Op{Kind: OpPut, ID: 6, Version: 1, Payload: []byte("defg")})
	close(gate.release)
	for _, ch := range []chan error{a, b} {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, s.Store, 6, 1, []byte("defg"))
	checkStats(t, s.Store, 6, 8+uint64(len("longer payload")+len("g")+len("abc")+len("defg")))

	// Open counts what is stored: one record per key.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, Options{Sync: true})
	checkStats(t, s.Store, 3, uint64(len("longer payload")+len("g")+len("defg")))
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
		s.mustDelete(t, 2, 1, 10)
		s.mustDelete(t, 2, 2, 20)
		s.mustDelete(t, -5, 3, 30)
		messages, payloadBytes = 27, 10*60-60
		checkStats(t, s.Store, messages, payloadBytes)
		st := s.Stats()
		if st.Commits == 0 || st.Ops != 33 {
			t.Fatalf("stats = %+v, want Ops=33 and some commits", st)
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
	mustGet(t, s.Store, -5, 2, bytes.Repeat([]byte{byte(-5 & 0xff)}, 20))
	mustBeMissing(t, s.Store, -5, 3)
	mustBeMissing(t, s.Store, 2, 1)
	mustBeMissing(t, s.Store, 2, 2)
	mustGet(t, s.Store, 2, 3, bytes.Repeat([]byte{2}, 30))
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

	// Deleting the extreme versions of the neighbours of id 0 and of the
	// extreme ids touches only those records.
	deletedIDs := []int64{math.MinInt64, -1, 1, math.MaxInt64}
	deletedVersions := []uint64{0, math.MaxUint64}
	for _, id := range deletedIDs {
		for _, v := range deletedVersions {
			s.mustDelete(t, id, v, len(payload(id, v)))
		}
	}
	var messages, total uint64
	for _, id := range ids {
		for _, v := range versions {
			if slices.Contains(deletedIDs, id) && slices.Contains(deletedVersions, v) {
				mustBeMissing(t, s.Store, id, v)
				continue
			}
			mustGet(t, s.Store, id, v, payload(id, v))
			messages++
			total += uint64(len(payload(id, v)))
		}
	}
	checkStats(t, s.Store, messages, total)
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

// TestConcurrentSubmitAndGet has writers put versions of their own id and
// delete the version they wrote five puts earlier, while reading back
// every acknowledged put, and checks the final contents and counters, also
// after reopening.
func TestConcurrentSubmitAndGet(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{Sync: true})
	const writers, perWriter, kept = 32, 100, 5
	payload := func(id int64, v uint64) []byte { return fmt.Appendf(nil, "w%d v%d", id, v) }

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			id := int64(w)
			var deletes []chan error
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
				// Delete without waiting, so deletes share batches with
				// other writers' puts.
				if v > kept {
					old := v - kept
					deletes = append(deletes, s.submit(Op{Kind: OpDelete, ID: id, Version: old, Size: uint32(len(payload(id, old)))}))
				}
			}
			for _, ch := range deletes {
				if err := waitResult(ch); err != nil {
					errs <- fmt.Errorf("delete of writer %d: %w", id, err)
					return
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
	var total uint64
	check := func(s *Store) {
		t.Helper()
		for w := range writers {
			id := int64(w)
			for v := uint64(1); v <= perWriter; v++ {
				if v <= perWriter-kept {
					mustBeMissing(t, s, id, v)
				} else {
					mustGet(t, s, id, v, payload(id, v))
				}
			}
		}
		checkStats(t, s, writers*kept, total)
	}
	for w := range writers {
		for v := uint64(perWriter - kept + 1); v <= perWriter; v++ {
			total += uint64(len(payload(int64(w), v)))
		}
	}
	check(s.Store)
	if st := s.Stats(); st.Ops != writers*(2*perWriter-kept) {
		t.Fatalf("Ops = %d, want %d", st.Ops, writers*(2*perWriter-kept))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTestStore(t, dir, Options{Sync: true}).Store)
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
	leakcheck.Goroutines(t, before)
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

func TestOpKindNames(t *testing.T) {
	for kind, want := range map[OpKind]string{OpPut: "put", OpDelete: "delete", OpKind(42): "OpKind(42)"} {
		if got := kind.String(); got != want {
			t.Errorf("OpKind(%d).String() = %q, want %q", uint8(kind), got, want)
		}
	}
}

// A copy the leader sends again (Op.MayExist) is stored and counted once,
// whether the first attempt committed before or is in the same commit.
func TestPutSentAgainCountsOnce(t *testing.T) {
	s := openTestStore(t, t.TempDir(), Options{Sync: true})
	s.mustPut(t, 1, 1, []byte("hello"))
	if err := waitResult(s.submit(Op{Kind: OpPut, ID: 1, Version: 1, Payload: []byte("hello"), MayExist: true})); err != nil {
		t.Fatal(err)
	}
	checkStats(t, s.Store, 1, 5)

	// New despite MayExist: counted.
	if err := waitResult(s.submit(Op{Kind: OpPut, ID: 2, Version: 1, Payload: []byte("abc"), MayExist: true})); err != nil {
		t.Fatal(err)
	}
	checkStats(t, s.Store, 2, 8)

	// Both attempts submitted at once: whether they share a commit or not,
	// one record.
	first := s.submit(Op{Kind: OpPut, ID: 3, Version: 1, Payload: []byte("xy")})
	again := s.submit(Op{Kind: OpPut, ID: 3, Version: 1, Payload: []byte("xy"), MayExist: true})
	for _, ch := range []chan error{first, again} {
		if err := waitResult(ch); err != nil {
			t.Fatal(err)
		}
	}
	checkStats(t, s.Store, 3, 10)
	mustGet(t, s.Store, 3, 1, []byte("xy"))
	s.mustDelete(t, 3, 1, 2)
	checkStats(t, s.Store, 2, 8)
}
