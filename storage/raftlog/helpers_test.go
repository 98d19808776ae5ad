package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait for a report, so that a lost report fails
// the test instead of hanging it.
const waitTimeout = 20 * time.Second

// snapshotReport is one OnSnapshot call.
type snapshotReport struct {
	index uint64
	err   error
}

// testLog is a Log whose Writes carry a chan Written as token. It records
// the size of every OnWritten call and forwards OnSnapshot calls to
// snapshots.
type testLog struct {
	*Log
	mu        sync.Mutex
	groups    []int
	snapshots chan snapshotReport
	// gate, when set, holds the committer inside OnWritten after the group
	// holding gate.token until gate.release is closed.
	gate *commitGate
}

// commitGate holds the committer so that later requests queue up behind it.
type commitGate struct {
	token   chan Written
	entered chan struct{}
	release chan struct{}
}

func newCommitGate() *commitGate {
	return &commitGate{token: make(chan Written, 1), entered: make(chan struct{}), release: make(chan struct{})}
}

func (tl *testLog) onWritten(written []Written) {
	tl.mu.Lock()
	tl.groups = append(tl.groups, len(written))
	gate := tl.gate
	tl.mu.Unlock()
	held := false
	for _, w := range written {
		ch := w.Token.(chan Written)
		ch <- w
		if gate != nil && ch == gate.token {
			held = true
		}
	}
	if held {
		close(gate.entered)
		<-gate.release
	}
}

func (tl *testLog) setGate(gate *commitGate) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.gate = gate
}

func (tl *testLog) writtenGroups() []int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]int(nil), tl.groups...)
}

// openTestLog opens the store in dir; it is closed when the test ends.
func openTestLog(t testing.TB, dir string, opts Options) *testLog {
	t.Helper()
	tl, err := tryOpenTestLog(t, dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return tl
}

func tryOpenTestLog(t testing.TB, dir string, opts Options) (*testLog, error) {
	tl := &testLog{snapshots: make(chan snapshotReport, 64)}
	opts.OnWritten = tl.onWritten
	opts.OnSnapshot = func(index uint64, err error) { tl.snapshots <- snapshotReport{index, err} }
	l, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	tl.Log = l
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tl, nil
}

// write queues w and returns the channel its Written arrives on.
func (tl *testLog) write(w Write) chan Written {
	ch := make(chan Written, 1)
	w.Token = ch
	tl.Write(w)
	return ch
}

// waitWritten returns the Written delivered on ch, or one carrying an error
// if none arrives in time.
func waitWritten(ch chan Written) Written {
	select {
	case w := <-ch:
		return w
	case <-time.After(waitTimeout):
		return Written{Err: fmt.Errorf("no report within %v", waitTimeout)}
	}
}

func (tl *testLog) mustWrite(t testing.TB, w Write) {
	t.Helper()
	if r := waitWritten(tl.write(w)); r.Err != nil {
		t.Fatalf("write: %v", r.Err)
	}
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

func (tl *testLog) mustCreateSnapshot(t testing.TB, index uint64, cs *raftpb.ConfState, data []byte, keep uint64) {
	t.Helper()
	tl.CreateSnapshot(index, cs, data, keep)
	if r := tl.waitSnapshot(t); r.index != index || r.err != nil {
		t.Fatalf("snapshot %d reported as %d, %v", index, r.index, r.err)
	}
}

// entry is a test entry: its data is derived from index and term.
func entry(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{Index: new(index), Term: new(term), Type: raftpb.EntryNormal.Enum(),
		Data: fmt.Appendf(nil, "entry %d of term %d", index, term)}
}

// entries returns entry(i, term) for i in from..to.
func entries(from, to, term uint64) []*raftpb.Entry {
	var es []*raftpb.Entry
	for i := from; i <= to; i++ {
		es = append(es, entry(i, term))
	}
	return es
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func confState(voters ...uint64) *raftpb.ConfState {
	return &raftpb.ConfState{Voters: voters}
}

// snapshotData is a deterministic snapshot of n bytes for index.
func snapshotData(index uint64, n int) []byte {
	data := make([]byte, n)
	x := index*2654435761 + 1
	for i := range data {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		data[i] = byte(x)
	}
	return data
}

func receivedSnapshot(index, term uint64, cs *raftpb.ConfState, data []byte) *raftpb.Snapshot {
	return &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: cs}}
}

// applyToReference feeds w to ref the way the store's contract describes:
// snapshot, entries, hard state; empty ones are no change.
func applyToReference(t testing.TB, ref *raft.MemoryStorage, w Write) {
	t.Helper()
	if !raft.IsEmptySnap(w.Snapshot) {
		if err := ref.ApplySnapshot(proto.Clone(w.Snapshot).(*raftpb.Snapshot)); err != nil {
			t.Fatalf("reference ApplySnapshot: %v", err)
		}
	}
	if err := ref.Append(w.Entries); err != nil {
		t.Fatalf("reference Append: %v", err)
	}
	if !raft.IsEmptyHardState(w.HardState) {
		if err := ref.SetHardState(proto.Clone(w.HardState).(*raftpb.HardState)); err != nil {
			t.Fatalf("reference SetHardState: %v", err)
		}
	}
}

// snapshotReference feeds a CreateSnapshot to ref: MemoryStorage's
// CreateSnapshot, then Compact(index-keep) where that is past the start.
func snapshotReference(t testing.TB, ref *raft.MemoryStorage, index uint64, cs *raftpb.ConfState, data []byte, keep uint64) {
	t.Helper()
	if _, err := ref.CreateSnapshot(index, cs, data); err != nil {
		t.Fatalf("reference CreateSnapshot(%d): %v", index, err)
	}
	if keep < index {
		if err := ref.Compact(index - keep); err != nil && !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("reference Compact(%d): %v", index-keep, err)
		}
	}
}

// storageDiff describes how the log l differs from want through
// raft.Storage's methods, and the stored snapshot's data read with
// SnapshotData, or returns "" if it does not.
func storageDiff(l *Log, want *raft.MemoryStorage) string {
	got := l.Storage()
	gf, _ := got.FirstIndex()
	wf, _ := want.FirstIndex()
	gl, _ := got.LastIndex()
	wl, _ := want.LastIndex()
	if gf != wf || gl != wl {
		return fmt.Sprintf("log [%d, %d], want [%d, %d]", gf, gl, wf, wl)
	}
	ghs, gcs, _ := got.InitialState()
	whs, wcs, _ := want.InitialState()
	if !proto.Equal(ghs, whs) {
		return fmt.Sprintf("hard state %v, want %v", ghs, whs)
	}
	if !proto.Equal(gcs, wcs) {
		return fmt.Sprintf("conf state %v, want %v", gcs, wcs)
	}
	for i := gf - 1; i <= gl; i++ {
		gt, gerr := got.Term(i)
		wt, werr := want.Term(i)
		if gt != wt || !errors.Is(gerr, werr) {
			return fmt.Sprintf("term(%d) = %d, %v; want %d, %v", i, gt, gerr, wt, werr)
		}
	}
	if gl >= gf {
		ge, gerr := got.Entries(gf, gl+1, ^uint64(0))
		we, werr := want.Entries(wf, wl+1, ^uint64(0))
		if gerr != nil || werr != nil {
			return fmt.Sprintf("entries: %v, %v", gerr, werr)
		}
		if len(ge) != len(we) {
			return fmt.Sprintf("%d entries, want %d", len(ge), len(we))
		}
		for i := range ge {
			if !proto.Equal(ge[i], we[i]) {
				return fmt.Sprintf("entry %d = %v, want %v", gf+uint64(i), ge[i], we[i])
			}
		}
	}
	gs, _ := got.Snapshot()
	ws, _ := want.Snapshot()
	if !proto.Equal(gs.GetMetadata(), ws.GetMetadata()) {
		return fmt.Sprintf("snapshot %v, want %v", gs.GetMetadata(), ws.GetMetadata())
	}
	if len(gs.GetData()) > 0 {
		return fmt.Sprintf("Storage() holds the data of snapshot %d (%d bytes); it belongs on disk only", gs.GetMetadata().GetIndex(), len(gs.GetData()))
	}
	if index := ws.GetMetadata().GetIndex(); index > 0 {
		// Data is compared as bytes: the store keeps bytes, not whether
		// an empty Data field was present in the protobuf.
		data, err := l.SnapshotData(index)
		if err != nil || !bytes.Equal(data, ws.GetData()) {
			return fmt.Sprintf("snapshot %d data: %d bytes, %v; want %d bytes", index, len(data), err, len(ws.GetData()))
		}
	}
	return ""
}

func checkStorage(t testing.TB, what string, got *Log, want *raft.MemoryStorage) {
	t.Helper()
	if diff := storageDiff(got, want); diff != "" {
		t.Fatalf("%s: %s", what, diff)
	}
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

// steppingClock is a clock the test moves: each reading is a microsecond
// after the one before (so every interval it times is positive), and
// advance moves it on by more.
type steppingClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSteppingClock() *steppingClock {
	return &steppingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Microsecond)
	return c.t
}

func (c *steppingClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
