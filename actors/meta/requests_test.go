package meta_test

import (
	"reflect"
	"runtime"
	"testing"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// withRequest sets e's request id.
func withRequest(e *messages.LogEntry, origin, seq uint64) *messages.LogEntry {
	e.Request = &messages.RequestId{Origin: origin, Seq: seq}
	return e
}

func TestDuplicateRequestsTakeEffectOnce(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)

	// A SET proposed twice (the second time by a new leader, with new
	// copies at a new version) takes effect once; the second's copies are
	// garbage.
	mustApply(t, s, withRequest(putEntry(7, version(1, 1), 10, 0, 1), 42, 1))
	eff, err := s.Apply(withRequest(putEntry(7, version(2, 1), 11, 1, 2), 42, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := meta.Effect{Duplicate: true, Existed: true, PruneSlots: []uint32{1, 2}, PruneVersion: version(2, 1), PruneSize: 11}
	if !reflect.DeepEqual(eff, want) {
		t.Errorf("duplicate put: effect %+v, want %+v", eff, want)
	}
	if v, r, _ := s.Lookup(7); v != version(1, 1) || !reflect.DeepEqual(r, []uint32{0, 1}) {
		t.Errorf("after the duplicate put, 7 = %x on %v; want the first put", v, r)
	}
	// The same seq from another origin is another request.
	if eff, _ := s.Apply(withRequest(putEntry(7, version(2, 2), 12, 1, 2), 43, 1)); eff.Duplicate {
		t.Errorf("a put from another origin was taken for a duplicate")
	}

	// A DEL proposed twice: the second is a no-op that reports what the
	// first found, even though the id is gone now.
	if eff, _ := s.Apply(withRequest(deleteEntry(7, version(2, 3)), 42, 2)); eff.Duplicate || !eff.Existed {
		t.Fatalf("first delete: %+v", eff)
	}
	mustApply(t, s, putEntry(7, version(2, 4), 5, 0, 2)) // a later SET without a request id
	eff, _ = s.Apply(withRequest(deleteEntry(7, version(2, 5)), 42, 2))
	if !eff.Duplicate || !eff.Existed || len(eff.PruneSlots) != 0 {
		t.Errorf("duplicate delete: %+v; want a no-op reporting the id existed", eff)
	}
	if _, _, ok := s.Lookup(7); !ok {
		t.Errorf("the duplicate delete removed the later SET")
	}
	// A DEL of a missing id, repeated, reports NOT_FOUND both times.
	for range 2 {
		if eff, _ := s.Apply(withRequest(deleteEntry(99, version(2, 6)), 42, 3)); eff.Existed {
			t.Errorf("delete of a missing id: %+v", eff)
		}
	}
}

func TestRequestWindowForgetsTheOldest(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	for seq := uint64(1); seq <= meta.RequestWindow+1; seq++ {
		mustApply(t, s, withRequest(deleteEntry(int64(seq), version(1, seq)), 5, seq))
	}
	// Request 2 is still remembered; request 1 fell out of the window:
	// applied again, it takes effect again (and, remembered anew, pushes
	// request 2 out).
	if eff, _ := s.Apply(withRequest(putEntry(2, version(1, 1<<20+1), 1, 0), 5, 2)); !eff.Duplicate {
		t.Errorf("request 2 was forgotten too early")
	}
	if eff, _ := s.Apply(withRequest(putEntry(1, version(1, 1<<20), 1, 0), 5, 1)); eff.Duplicate {
		t.Errorf("request 1 is still remembered after %d newer ones", meta.RequestWindow)
	}
	if eff, _ := s.Apply(withRequest(putEntry(2, version(1, 1<<20+2), 1, 0), 5, 2)); eff.Duplicate {
		t.Errorf("request 2 is still remembered after request 1 came back")
	}
}

// A request bounded by window_end is applied while fewer requests than
// that have been applied, and takes no effect from then on, unless the
// window still remembers it: then it is a duplicate as before.
func TestRequestTooLateTakesNoEffect(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	bounded := func(e *messages.LogEntry, seq, windowEnd uint64) *messages.LogEntry {
		e.Request = &messages.RequestId{Origin: 5, Seq: seq, WindowEnd: windowEnd}
		return e
	}
	// Taken when no request had applied: window_end is 2 here, so it
	// may apply while the count is 0 or 1.
	mustApply(t, s, bounded(putEntry(1, version(1, 1), 3, 0, 1), 1, 2))
	if s.RequestCount() != 1 {
		t.Fatalf("request count %d after one request, want 1", s.RequestCount())
	}
	// Applied again after the count reached window_end: still in the
	// window, so a duplicate.
	mustApply(t, s, withRequest(deleteEntry(50, version(1, 2)), 6, 1))
	if eff, _ := s.Apply(bounded(putEntry(1, version(1, 3), 4, 1, 2), 1, 2)); !eff.Duplicate || eff.TooLate {
		t.Errorf("a remembered request came back late: %+v, want a duplicate", eff)
	}
	// A request the window does not know, past its window_end: nothing.
	eff, err := s.Apply(bounded(putEntry(2, version(1, 4), 4, 1, 2), 2, 2))
	if err != nil || !eff.TooLate || eff.Duplicate || !reflect.DeepEqual(eff.PruneSlots, []uint32{1, 2}) || eff.PruneVersion != version(1, 4) {
		t.Errorf("late put: %+v, %v; want too late, its copies to prune", eff, err)
	}
	if _, _, ok := s.Lookup(2); ok {
		t.Error("the late put was indexed")
	}
	if eff, _ := s.Apply(bounded(deleteEntry(1, version(1, 5)), 3, 2)); !eff.TooLate || eff.Existed {
		t.Errorf("late delete: %+v, want too late", eff)
	}
	if _, _, ok := s.Lookup(1); !ok {
		t.Error("the late delete removed id 1")
	}
	if s.RequestCount() != 2 {
		t.Errorf("request count %d, want 2: late requests are not counted", s.RequestCount())
	}
	// Within its bound, and without a bound, a request applies.
	if eff, _ := s.Apply(bounded(putEntry(3, version(1, 6), 1, 0), 4, 3)); eff.TooLate {
		t.Errorf("a put within its window_end was refused: %+v", eff)
	}
	if eff, _ := s.Apply(bounded(putEntry(4, version(1, 7), 1, 0), 5, 0)); eff.TooLate {
		t.Errorf("an unbounded put was refused: %+v", eff)
	}
}

// A snapshot that claims fewer requests applied than it remembers is
// refused; one from before requests were counted restarts the count at
// the window's size.
func TestRestoreRequestCount(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	for seq := uint64(1); seq <= 3; seq++ {
		mustApply(t, s, withRequest(deleteEntry(int64(seq), version(1, seq)), 5, seq))
	}
	snap := s.Snapshot()
	snap.RequestCount = 2
	if _, err := meta.Restore(snap); err == nil {
		t.Error("restored a snapshot whose request count is below the requests it remembers")
	}
	snap.RequestCount = 0
	restored, err := meta.Restore(snap)
	if err != nil || restored.RequestCount() != 3 {
		t.Errorf("restore without a count: count %d, %v; want 3", restored.RequestCount(), err)
	}
}

func TestSnapshotWithAGatewayBothRemovedAndInTheGroupIsRefused(t *testing.T) {
	s := meta.New()
	s.SetGateway(meta.Gateway{ID: 1, NodeAddress: "gw1"})
	snap := s.Freeze().Snapshot()
	snap.RemovedGateways = []uint64{1}
	if _, err := meta.Restore(snap); err == nil {
		t.Error("restored a snapshot that lists gateway 1 both in the group and removed")
	}
}

func TestGatewayAddedAfterItsRemovalIsNotRemoved(t *testing.T) {
	s := meta.New()
	s.SetGateway(meta.Gateway{ID: 1, NodeAddress: "gw1"})
	s.RemoveGateway(1)
	s.SetGateway(meta.Gateway{ID: 1, NodeAddress: "gw1b"})
	if s.GatewayRemoved(1) {
		t.Error("gateway 1, added again, still counts as removed")
	}
	restored, _ := roundTrip(t, s)
	if g, ok := restored.Gateway(1); !ok || g.NodeAddress != "gw1b" || restored.GatewayRemoved(1) {
		t.Errorf("restored: gateway 1 %+v %v, removed %v", g, ok, restored.RemovedGateways())
	}
}

func TestSnapshotKeepsGatewaysAndRequests(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	s.SetGateway(meta.Gateway{ID: 3, NodeAddress: "gw3"})
	s.SetGateway(meta.Gateway{ID: 1, NodeAddress: "gw1"})
	s.SetGateway(meta.Gateway{ID: 2, NodeAddress: "gw2"})
	s.RemoveGateway(2)
	// Wrap the ring around so its oldest entry is not at position 0.
	const extra = 1000
	for seq := uint64(1); seq <= meta.RequestWindow+extra; seq++ {
		mustApply(t, s, withRequest(deleteEntry(int64(seq%50), version(1, seq)), 9, seq))
	}
	restored, _ := roundTrip(t, s)
	if got, want := restored.Gateways(), []meta.Gateway{{ID: 1, NodeAddress: "gw1"}, {ID: 3, NodeAddress: "gw3"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("restored gateways = %v, want %v", got, want)
	}
	if !restored.GatewayRemoved(2) || restored.GatewayRemoved(1) || restored.GatewayRemoved(4) {
		t.Errorf("restored removed gateways = %v, want [2]", restored.RemovedGateways())
	}
	// Both states forget and remember the same requests from here on.
	for _, seq := range []uint64{extra, extra + 1, meta.RequestWindow + extra, 1} {
		e := withRequest(deleteEntry(1, version(1, 1<<30+seq)), 9, seq)
		eff1, _ := s.Apply(e)
		eff2, _ := restored.Apply(e)
		if !reflect.DeepEqual(eff1, eff2) {
			t.Errorf("request %d: original %+v, restored %+v", seq, eff1, eff2)
		}
	}
	if s.RequestCount() != restored.RequestCount() {
		t.Errorf("request count: original %d, restored %d", s.RequestCount(), restored.RequestCount())
	}
	for i := int64(0); i < 50; i++ {
		_, _, ok1 := s.Lookup(i)
		_, _, ok2 := restored.Lookup(i)
		if ok1 != ok2 {
			t.Errorf("id %d: original found=%v, restored found=%v", i, ok1, ok2)
		}
	}
}

// BenchmarkRequestWindowMemory measures what a full window of remembered
// request ids costs: RequestWindow overwrites of one id, each with its own
// request id, so only the window grows.
func BenchmarkRequestWindowMemory(b *testing.B) {
	var total float64
	for b.Loop() {
		s := meta.New()
		mustApply(b, s, threeMembers()...)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for seq := uint64(1); seq <= meta.RequestWindow; seq++ {
			mustApply(b, s, withRequest(putEntry(1, seq, 100, 0, 1), 42, seq))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		total = float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
	}
	b.ReportMetric(total/meta.RequestWindow, "bytes/request")
	b.ReportMetric(total/(1<<20), "MiB/window")
}
