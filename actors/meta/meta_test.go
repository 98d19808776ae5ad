package meta_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// version builds a version the way the leader mints them.
func version(epoch, counter uint64) uint64 { return epoch<<meta.EpochShift | counter }

func putEntry(id int64, ver uint64, size uint32, replicas ...uint32) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: id, Version: ver, Replicas: replicas, Size: size}}}
}

func deleteEntry(id int64, ver uint64) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: id, Version: ver}}}
}

func memberEntry(id, nodeAddress, adminAddress string) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{
		MemberId: id, NodeAddress: nodeAddress, AdminAddress: adminAddress,
	}}}
}

func epochEntry(epoch uint64) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Epoch{Epoch: &messages.EpochEntry{Epoch: epoch}}}
}

// threeMembers registers members m0, m1 and m2 (slots 0, 1 and 2).
func threeMembers() []*messages.LogEntry {
	return []*messages.LogEntry{
		memberEntry("m0", "127.0.0.1:7000", "127.0.0.1:8000"),
		memberEntry("m1", "127.0.0.1:7001", "127.0.0.1:8001"),
		memberEntry("m2", "127.0.0.1:7002", "127.0.0.1:8002"),
	}
}

func mustApply(t testing.TB, s *meta.State, entries ...*messages.LogEntry) {
	t.Helper()
	for _, e := range entries {
		if _, err := s.Apply(e); err != nil {
			t.Fatalf("apply %v: %v", e, err)
		}
	}
}

// indexed is one index entry as Lookup and Size report it.
type indexed struct {
	Version  uint64
	Replicas []uint32
	Size     uint32
}

// dump is everything observable about a state, for comparing two states or
// one state before and after an apply.
type dump struct {
	Epoch   uint64
	Len     int
	Members []meta.Member
	Counts  map[uint32]int64
	Index   map[int64]indexed
	// Disagree lists the ids that Lookup and Size disagree about (one
	// finds the id, the other does not); it should be empty.
	Disagree []int64
}

// dumpState reads the state through its exported API; ids are the message
// ids to look up.
func dumpState(s *meta.State, ids []int64) dump {
	d := dump{
		Epoch:   s.Epoch(),
		Len:     s.Len(),
		Members: s.Members(),
		Counts:  s.Counts(),
		Index:   make(map[int64]indexed),
	}
	for _, id := range ids {
		v, replicas, ok := s.Lookup(id)
		size, sized := s.Size(id)
		if ok != sized {
			d.Disagree = append(d.Disagree, id)
		}
		if ok {
			d.Index[id] = indexed{Version: v, Replicas: slices.Clone(replicas), Size: size}
		}
	}
	return d
}

// recount computes the per-slot counts from the index itself: for every
// member slot, how many of ids have an index entry naming it.
func recount(s *meta.State, ids []int64) map[uint32]int64 {
	counts := make(map[uint32]int64)
	for _, m := range s.Members() {
		counts[m.Slot] = 0
	}
	for _, id := range ids {
		if _, replicas, ok := s.Lookup(id); ok {
			for _, slot := range replicas {
				counts[slot]++
			}
		}
	}
	return counts
}

// normalized turns an empty PruneSlots into nil, so effects compare by
// meaning. The order of PruneSlots is part of the contract (the old
// replica set sorted, a stale put's replicas as given), so it is kept.
func normalized(e meta.Effect) meta.Effect {
	if len(e.PruneSlots) == 0 {
		e.PruneSlots = nil
	}
	return e
}

func TestApply(t *testing.T) {
	v1, v2, v3 := version(1, 1), version(1, 2), version(1, 3)
	type want struct {
		effect meta.Effect
		err    bool
		// unchanged: the state after the entry equals the state before.
		unchanged bool
		// index is the expected Lookup and Size of id 1 (nil: absent).
		index *indexed
		// counts is the expected Counts (checked when not nil).
		counts map[uint32]int64
	}
	tests := []struct {
		name  string
		prior []*messages.LogEntry
		entry *messages.LogEntry
		want  want
	}{
		{
			name:  "first put",
			prior: threeMembers(),
			entry: putEntry(1, v1, 100, 0, 1),
			want: want{
				effect: meta.Effect{},
				index:  &indexed{v1, []uint32{0, 1}, 100},
				counts: map[uint32]int64{0: 1, 1: 1, 2: 0},
			},
		},
		{
			name:  "first put keeps replicas sorted",
			prior: threeMembers(),
			entry: putEntry(1, v1, 100, 2, 0),
			want: want{
				index:  &indexed{v1, []uint32{0, 2}, 100},
				counts: map[uint32]int64{0: 1, 1: 0, 2: 1},
			},
		},
		{
			name:  "overwrite prunes the old version on the old replicas",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0, 1)),
			entry: putEntry(1, v2, 200, 1, 2),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{0, 1}, PruneVersion: v1, PruneSize: 100},
				index:  &indexed{v2, []uint32{1, 2}, 200},
				counts: map[uint32]int64{0: 0, 1: 1, 2: 1},
			},
		},
		{
			name:  "overwrite names the old replicas sorted",
			prior: append(threeMembers(), putEntry(1, v1, 100, 2, 0)),
			entry: putEntry(1, v2, 200, 1),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{0, 2}, PruneVersion: v1, PruneSize: 100},
				index:  &indexed{v2, []uint32{1}, 200},
				counts: map[uint32]int64{0: 0, 1: 1, 2: 0},
			},
		},
		{
			name:  "overwrite with the same replicas",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0, 1)),
			entry: putEntry(1, v3, 300, 1, 0),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{0, 1}, PruneVersion: v1, PruneSize: 100},
				index:  &indexed{v3, []uint32{0, 1}, 300},
				counts: map[uint32]int64{0: 1, 1: 1, 2: 0},
			},
		},
		{
			name:  "overwrite of an empty payload still prunes it",
			prior: append(threeMembers(), putEntry(1, v1, 0, 2)),
			entry: putEntry(1, v2, 200, 2),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{2}, PruneVersion: v1, PruneSize: 0},
				index:  &indexed{v2, []uint32{2}, 200},
				counts: map[uint32]int64{0: 0, 1: 0, 2: 1},
			},
		},
		{
			name:  "overwrite from a newer epoch beats the last counter of the old one",
			prior: append(threeMembers(), putEntry(1, version(1, meta.MaxCounter), 50, 0)),
			entry: putEntry(1, version(2, 0), 60, 2),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{0}, PruneVersion: version(1, meta.MaxCounter), PruneSize: 50},
				index:  &indexed{version(2, 0), []uint32{2}, 60},
				counts: map[uint32]int64{0: 0, 1: 0, 2: 1},
			},
		},
		{
			name:  "stale put changes nothing and prunes its own version on its replicas",
			prior: append(threeMembers(), putEntry(1, v2, 200, 0, 1)),
			entry: putEntry(1, v1, 100, 2, 1),
			want: want{
				effect:    meta.Effect{Existed: true, Stale: true, PruneSlots: []uint32{2, 1}, PruneVersion: v1, PruneSize: 100},
				unchanged: true,
				index:     &indexed{v2, []uint32{0, 1}, 200},
				counts:    map[uint32]int64{0: 1, 1: 1, 2: 0},
			},
		},
		{
			name:  "duplicate apply is a no-op",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0, 1)),
			entry: putEntry(1, v1, 100, 0, 1),
			want: want{
				effect:    meta.Effect{Existed: true},
				unchanged: true,
				index:     &indexed{v1, []uint32{0, 1}, 100},
			},
		},
		{
			name:  "duplicate apply keeps the size first applied",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0, 1)),
			entry: putEntry(1, v1, 999, 2),
			want: want{
				effect:    meta.Effect{Existed: true},
				unchanged: true,
				index:     &indexed{v1, []uint32{0, 1}, 100},
			},
		},
		{
			name:  "put naming an unknown slot",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0, 1)),
			entry: putEntry(1, v2, 200, 0, 3),
			want:  want{err: true, unchanged: true, index: &indexed{v1, []uint32{0, 1}, 100}},
		},
		{
			name:  "put before any member registered",
			entry: putEntry(1, v1, 100, 0),
			want:  want{err: true, unchanged: true},
		},
		{
			name:  "put with no replicas",
			prior: threeMembers(),
			entry: putEntry(1, v1, 100),
			want:  want{err: true, unchanged: true},
		},
		{
			name:  "put naming a slot twice",
			prior: threeMembers(),
			entry: putEntry(1, v1, 100, 1, 1),
			want:  want{err: true, unchanged: true},
		},
		{
			name:  "delete existing prunes the indexed version",
			prior: append(threeMembers(), putEntry(1, v1, 100, 2, 0)),
			entry: deleteEntry(1, v2),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{0, 2}, PruneVersion: v1, PruneSize: 100},
				counts: map[uint32]int64{0: 0, 1: 0, 2: 0},
			},
		},
		{
			name:  "delete existing after an overwrite prunes the newest version",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0), putEntry(1, v2, 200, 1, 2)),
			entry: deleteEntry(1, v3),
			want: want{
				effect: meta.Effect{Existed: true, PruneSlots: []uint32{1, 2}, PruneVersion: v2, PruneSize: 200},
				counts: map[uint32]int64{0: 0, 1: 0, 2: 0},
			},
		},
		{
			name:  "delete missing",
			prior: append(threeMembers(), putEntry(2, v1, 100, 0)),
			entry: deleteEntry(1, v2),
			want:  want{effect: meta.Effect{}, unchanged: true},
		},
		{
			name:  "delete older than the indexed version",
			prior: append(threeMembers(), putEntry(1, v2, 200, 0, 1)),
			entry: deleteEntry(1, v1),
			want:  want{effect: meta.Effect{Existed: true}, unchanged: true, index: &indexed{v2, []uint32{0, 1}, 200}},
		},
		{
			name:  "put after delete is a first put again",
			prior: append(threeMembers(), putEntry(1, v1, 100, 0), deleteEntry(1, v2)),
			entry: putEntry(1, v3, 300, 1),
			want: want{
				effect: meta.Effect{},
				index:  &indexed{v3, []uint32{1}, 300},
				counts: map[uint32]int64{0: 0, 1: 1, 2: 0},
			},
		},
		{
			name:  "member with an empty id",
			prior: threeMembers(),
			entry: memberEntry("", "127.0.0.1:7009", ""),
			want:  want{err: true, unchanged: true},
		},
		{
			name:  "entry of no kind",
			prior: threeMembers(),
			entry: &messages.LogEntry{},
			want:  want{err: true, unchanged: true},
		},
	}
	ids := []int64{1, 2}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := meta.New()
			mustApply(t, s, tt.prior...)
			before := dumpState(s, ids)
			checkErr := s.Check(tt.entry)
			if !reflect.DeepEqual(dumpState(s, ids), before) {
				t.Fatalf("Check changed the state")
			}
			eff, err := s.Apply(tt.entry)
			if (checkErr != nil) != (err != nil) {
				t.Fatalf("Check error = %v, Apply error = %v: they must agree", checkErr, err)
			}
			if (err != nil) != tt.want.err {
				t.Fatalf("Apply error = %v, want error %v", err, tt.want.err)
			}
			if got, want := normalized(eff), normalized(tt.want.effect); !reflect.DeepEqual(got, want) {
				t.Errorf("effect = %+v, want %+v", got, want)
			}
			after := dumpState(s, ids)
			if tt.want.unchanged && !reflect.DeepEqual(after, before) {
				t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if len(after.Disagree) > 0 {
				t.Errorf("Lookup and Size disagree about ids %v", after.Disagree)
			}
			got, ok := after.Index[1]
			switch {
			case tt.want.index == nil && ok:
				t.Errorf("id 1 = %+v, want absent", got)
			case tt.want.index != nil && (!ok || !reflect.DeepEqual(got, *tt.want.index)):
				t.Errorf("id 1 = %+v (found %v), want %+v", got, ok, *tt.want.index)
			}
			if tt.want.counts != nil && !reflect.DeepEqual(s.Counts(), tt.want.counts) {
				t.Errorf("Counts = %v, want %v", s.Counts(), tt.want.counts)
			}
			if got, want := s.Counts(), recount(s, ids); !reflect.DeepEqual(got, want) {
				t.Errorf("Counts = %v, recounted from the index %v", got, want)
			}
		})
	}
}

// TestPruneSlotsAreACopy changes the PruneSlots an overwrite and a delete
// return and checks that the state did not change with them.
func TestPruneSlotsAreACopy(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	mustApply(t, s, putEntry(1, version(1, 1), 10, 0, 1), putEntry(2, version(1, 2), 20, 0, 1))
	for _, e := range []*messages.LogEntry{putEntry(1, version(1, 3), 30, 2), deleteEntry(2, version(1, 4))} {
		eff, err := s.Apply(e)
		if err != nil {
			t.Fatalf("apply %v: %v", e, err)
		}
		if !slices.Equal(eff.PruneSlots, []uint32{0, 1}) {
			t.Fatalf("apply %v: PruneSlots = %v, want [0 1]", e, eff.PruneSlots)
		}
		eff.PruneSlots[0], eff.PruneSlots[1] = 2, 2
	}
	// A put on the replica set {0, 1} reuses the interned set the effects
	// came from; it must still be {0, 1}.
	mustApply(t, s, putEntry(3, version(1, 5), 50, 1, 0))
	if _, replicas, ok := s.Lookup(3); !ok || !slices.Equal(replicas, []uint32{0, 1}) {
		t.Fatalf("Lookup(3) = %v %v, want [0 1]", replicas, ok)
	}
	if got, want := s.Counts(), map[uint32]int64{0: 1, 1: 1, 2: 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Counts = %v, want %v", got, want)
	}
}

func TestApplyMemberAssignsSlotsInOrder(t *testing.T) {
	s := meta.New()
	for i, id := range []string{"a", "b", "c"} {
		eff, err := s.Apply(memberEntry(id, fmt.Sprintf("node-%s", id), fmt.Sprintf("admin-%s", id)))
		if err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
		if eff.Slot != uint32(i) {
			t.Errorf("register %s: slot %d, want %d", id, eff.Slot, i)
		}
	}
	// Re-registration updates the addresses in place.
	eff, err := s.Apply(memberEntry("b", "node-b2", "admin-b2"))
	if err != nil {
		t.Fatalf("re-register b: %v", err)
	}
	if eff.Slot != 1 {
		t.Errorf("re-register b: slot %d, want 1", eff.Slot)
	}
	want := []meta.Member{
		{Slot: 0, ID: "a", NodeAddress: "node-a", AdminAddress: "admin-a"},
		{Slot: 1, ID: "b", NodeAddress: "node-b2", AdminAddress: "admin-b2"},
		{Slot: 2, ID: "c", NodeAddress: "node-c", AdminAddress: "admin-c"},
	}
	if got := s.Members(); !reflect.DeepEqual(got, want) {
		t.Errorf("Members = %+v, want %+v", got, want)
	}
	if got, want := s.Counts(), map[uint32]int64{0: 0, 1: 0, 2: 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	if m, ok := s.Member(2); !ok || m != want[2] {
		t.Errorf("Member(2) = %+v %v, want %+v", m, ok, want[2])
	}
	if _, ok := s.Member(3); ok {
		t.Error("Member(3) found, want absent")
	}
	if slot, ok := s.SlotOf("c"); !ok || slot != 2 {
		t.Errorf("SlotOf(c) = %d %v, want 2", slot, ok)
	}
	if _, ok := s.SlotOf("d"); ok {
		t.Error("SlotOf(d) found, want absent")
	}
	// Members returns a copy.
	s.Members()[0].ID = "changed"
	if m, _ := s.Member(0); m.ID != "a" {
		t.Errorf("changing the result of Members changed the state: %+v", m)
	}
}

func TestApplyEpochOnlyGrows(t *testing.T) {
	s := meta.New()
	for _, step := range []struct{ apply, want uint64 }{
		{3, 3}, {2, 3}, {3, 3}, {0, 3}, {7, 7}, {1 << 20, 1 << 20}, {5, 1 << 20},
	} {
		if _, err := s.Apply(epochEntry(step.apply)); err != nil {
			t.Fatalf("apply epoch %d: %v", step.apply, err)
		}
		if got := s.Epoch(); got != step.want {
			t.Errorf("after epoch %d: Epoch = %d, want %d", step.apply, got, step.want)
		}
	}
}

// entryGen produces a random but plausible metadata log: mostly fresh puts
// and deletes, with stale puts, old deletes, re-applied entries, member
// registrations, epoch changes and malformed puts mixed in.
type entryGen struct {
	rng     *rand.Rand
	ids     int // message ids are 0..ids-1
	members int // members registered so far, m0..m<members-1>
	epoch   uint64
	counter uint64
	history []*messages.LogEntry
}

func newEntryGen(seed uint64, ids int) *entryGen {
	return &entryGen{rng: rand.New(rand.NewPCG(seed, seed+1)), ids: ids, epoch: 1}
}

func (g *entryGen) allIDs() []int64 {
	ids := make([]int64, g.ids)
	for i := range ids {
		ids[i] = int64(i)
	}
	return ids
}

func (g *entryGen) fresh() uint64 {
	g.counter++
	return version(g.epoch, g.counter)
}

// old is a version at or below the newest minted so far.
func (g *entryGen) old() uint64 {
	return g.rng.Uint64N(version(g.epoch, g.counter) + 1)
}

// replicas is a random set of 1 to 3 distinct registered slots.
func (g *entryGen) replicas() []uint32 {
	perm := g.rng.Perm(g.members)
	out := make([]uint32, 0, 3)
	for _, p := range perm[:1+g.rng.IntN(min(3, g.members))] {
		out = append(out, uint32(p))
	}
	return out
}

// size is a payload size: mostly small, sometimes empty or the largest.
func (g *entryGen) size() uint32 {
	switch r := g.rng.IntN(20); r {
	case 0:
		return 0
	case 1:
		return math.MaxUint32
	default:
		return g.rng.Uint32N(1 << 20)
	}
}

func (g *entryGen) next() *messages.LogEntry {
	if g.members == 0 {
		return g.newMember()
	}
	id := int64(g.rng.IntN(g.ids))
	var e *messages.LogEntry
	switch r := g.rng.IntN(100); {
	case r < 50:
		e = putEntry(id, g.fresh(), g.size(), g.replicas()...)
	case r < 58:
		e = putEntry(id, g.old(), g.size(), g.replicas()...)
	case r < 70:
		e = deleteEntry(id, g.fresh())
	case r < 75:
		e = deleteEntry(id, g.old())
	case r < 85 && len(g.history) > 0:
		return g.history[g.rng.IntN(len(g.history))]
	case r < 88 && g.members < 8:
		return g.newMember()
	case r < 91:
		m := g.rng.IntN(g.members)
		e = memberEntry(fmt.Sprintf("m%d", m), fmt.Sprintf("node-%d-%d", m, g.rng.IntN(1000)), "")
	case r < 93:
		epoch := g.epoch + g.rng.Uint64N(3) - 1 // sometimes lower: ignored
		if epoch > g.epoch {
			g.epoch, g.counter = epoch, 0
		}
		e = epochEntry(epoch)
	default:
		switch g.rng.IntN(3) {
		case 0:
			e = putEntry(id, g.fresh(), g.size())
		case 1:
			e = putEntry(id, g.fresh(), g.size(), append(g.replicas(), uint32(g.members+g.rng.IntN(3)))...)
		default:
			r := g.replicas()
			e = putEntry(id, g.fresh(), g.size(), append(r, r[0])...)
		}
		return e // malformed: not worth re-applying
	}
	g.history = append(g.history, e)
	return e
}

func (g *entryGen) newMember() *messages.LogEntry {
	e := memberEntry(fmt.Sprintf("m%d", g.members), fmt.Sprintf("node-%d", g.members), fmt.Sprintf("admin-%d", g.members))
	g.members++
	g.history = append(g.history, e)
	return e
}

// model is a plain reference implementation of the index semantics.
type model struct {
	members []string
	index   map[int64]indexed
}

func (m *model) apply(e *messages.LogEntry) (meta.Effect, bool) {
	switch x := e.GetEntry().(type) {
	case *messages.LogEntry_Put:
		p := x.Put
		if len(p.GetReplicas()) == 0 {
			return meta.Effect{}, false
		}
		seen := make(map[uint32]bool)
		for _, slot := range p.GetReplicas() {
			if int(slot) >= len(m.members) || seen[slot] {
				return meta.Effect{}, false
			}
			seen[slot] = true
		}
		old, existed := m.index[p.GetId()]
		switch {
		case existed && p.GetVersion() == old.Version:
			return meta.Effect{Existed: true}, true
		case existed && p.GetVersion() < old.Version:
			// The stale put's own copies are garbage.
			return meta.Effect{Existed: true, Stale: true,
				PruneSlots: slices.Clone(p.GetReplicas()), PruneVersion: p.GetVersion(), PruneSize: p.GetSize()}, true
		}
		replicas := slices.Sorted(slices.Values(p.GetReplicas()))
		m.index[p.GetId()] = indexed{Version: p.GetVersion(), Replicas: replicas, Size: p.GetSize()}
		if !existed {
			return meta.Effect{}, true
		}
		// The replaced version's copies are garbage.
		return meta.Effect{Existed: true, PruneSlots: old.Replicas, PruneVersion: old.Version, PruneSize: old.Size}, true
	case *messages.LogEntry_Delete:
		old, existed := m.index[x.Delete.GetId()]
		if !existed || x.Delete.GetVersion() < old.Version {
			return meta.Effect{Existed: existed}, true
		}
		delete(m.index, x.Delete.GetId())
		return meta.Effect{Existed: true, PruneSlots: old.Replicas, PruneVersion: old.Version, PruneSize: old.Size}, true
	case *messages.LogEntry_Member:
		slot := slices.Index(m.members, x.Member.GetMemberId())
		if slot < 0 {
			slot = len(m.members)
			m.members = append(m.members, x.Member.GetMemberId())
		}
		return meta.Effect{Slot: uint32(slot)}, true
	default:
		return meta.Effect{}, true
	}
}

func TestApplyRandomizedMatchesModelAndCounts(t *testing.T) {
	const steps = 10_000
	gen := newEntryGen(42, 300)
	ids := gen.allIDs()
	s := meta.New()
	ref := &model{index: make(map[int64]indexed)}
	kinds := make(map[string]int)
	for step := range steps {
		e := gen.next()
		checkErr := s.Check(e)
		eff, err := s.Apply(e)
		if (checkErr == nil) != (err == nil) {
			t.Fatalf("step %d: %v: Check error %v, Apply error %v: they must agree", step, e, checkErr, err)
		}
		wantEff, wantOK := ref.apply(e)
		kind := fmt.Sprintf("%T", e.GetEntry())
		switch {
		case err != nil:
			kind += " (error)"
		case eff.Stale:
			kind += " (stale)"
		case len(eff.PruneSlots) > 0:
			kind += " (prunes)"
		}
		kinds[kind]++
		if (err == nil) != wantOK {
			t.Fatalf("step %d: apply %v: error %v, want ok %v", step, e, err, wantOK)
		}
		if got, want := normalized(eff), normalized(wantEff); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: apply %v: effect %+v, want %+v", step, e, got, want)
		}
		if got, want := s.Counts(), recount(s, ids); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: apply %v: Counts = %v, recounted from the index %v", step, e, got, want)
		}
		d := dumpState(s, ids)
		if !reflect.DeepEqual(d.Index, ref.index) {
			t.Fatalf("step %d: apply %v: index differs from the model", step, e)
		}
		if len(d.Disagree) > 0 {
			t.Fatalf("step %d: apply %v: Lookup and Size disagree about ids %v", step, e, d.Disagree)
		}
		if s.Len() != len(ref.index) {
			t.Fatalf("step %d: Len = %d, want %d", step, s.Len(), len(ref.index))
		}
	}
	t.Logf("applied %v", kinds)
	// The sequence must really exercise every path.
	for _, kind := range []string{
		"*messages.LogEntry_Put", "*messages.LogEntry_Put (stale)", "*messages.LogEntry_Put (error)",
		"*messages.LogEntry_Put (prunes)", "*messages.LogEntry_Delete", "*messages.LogEntry_Delete (prunes)",
		"*messages.LogEntry_Member", "*messages.LogEntry_Epoch",
	} {
		if kinds[kind] < 20 {
			t.Errorf("only %d entries of kind %s", kinds[kind], kind)
		}
	}
}

// roundTrip snapshots s, sends the snapshot through its wire encoding and
// restores it.
func roundTrip(t *testing.T, s *meta.State) (*meta.State, *messages.MetaSnapshot) {
	t.Helper()
	raw, err := proto.Marshal(s.Snapshot())
	if err != nil {
		t.Fatalf("marshal snapshot: %v", err)
	}
	var snap messages.MetaSnapshot
	if err := proto.Unmarshal(raw, &snap); err != nil {
		t.Fatalf("unmarshal snapshot: %v", err)
	}
	restored, err := meta.Restore(&snap)
	if err != nil {
		t.Fatalf("restore snapshot: %v", err)
	}
	return restored, &snap
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	gen := newEntryGen(7, 500)
	ids := gen.allIDs()
	s := meta.New()
	for round := range 5 {
		for range 2000 {
			_, _ = s.Apply(gen.next()) // malformed entries fail and change nothing
		}
		restored, _ := roundTrip(t, s)
		want := dumpState(s, ids)
		if got := dumpState(restored, ids); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: restored state differs:\ngot  %+v\nwant %+v", round, got, want)
		}
		// Both states keep agreeing as the log goes on.
		for range 300 {
			e := gen.next()
			eff1, err1 := s.Apply(e)
			eff2, err2 := restored.Apply(e)
			if (err1 == nil) != (err2 == nil) || !reflect.DeepEqual(normalized(eff1), normalized(eff2)) {
				t.Fatalf("round %d: apply %v: original %+v %v, restored %+v %v", round, e, eff1, err1, eff2, err2)
			}
		}
		if got, want := dumpState(restored, ids), dumpState(s, ids); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: states diverged after the snapshot", round)
		}
	}
	if s.Len() == 0 {
		t.Fatal("the generated log left the index empty")
	}
	// The comparisons above cover sizes only if there are some to lose.
	sized := 0
	for _, e := range dumpState(s, ids).Index {
		if e.Size != 0 {
			sized++
		}
	}
	if sized < s.Len()/2 {
		t.Fatalf("only %d of %d indexed messages have a non-zero size", sized, s.Len())
	}

	// Move every message onto one replica set: every other set is unused
	// now and must not be in the snapshot.
	for _, id := range ids {
		if _, _, ok := s.Lookup(id); ok {
			mustApply(t, s, putEntry(id, gen.fresh(), uint32(id), 1, 0))
		}
	}
	restored, snap := roundTrip(t, s)
	if len(snap.GetReplicaSets()) != 1 || !slices.Equal(snap.GetReplicaSets()[0].GetSlots(), []uint32{0, 1}) {
		t.Errorf("snapshot replica sets = %v, want only [0 1]", snap.GetReplicaSets())
	}
	if got, want := dumpState(restored, ids), dumpState(s, ids); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs after sets became unused:\ngot  %+v\nwant %+v", got, want)
	}
	// Sets unknown to the restored state are interned anew.
	mustApply(t, s, putEntry(ids[0], gen.fresh(), 7, 0, 2))
	mustApply(t, restored, putEntry(ids[0], gen.fresh(), 7, 0, 2))
	if got, want := recount(restored, ids), restored.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("restored Counts = %v, recounted %v", want, got)
	}
}

func TestSnapshotOfEmptyState(t *testing.T) {
	restored, _ := roundTrip(t, meta.New())
	if restored.Len() != 0 || restored.Epoch() != 0 || len(restored.Members()) != 0 {
		t.Errorf("restored empty state: len %d epoch %d members %v", restored.Len(), restored.Epoch(), restored.Members())
	}
}

func TestRestoreRejectsMalformedSnapshots(t *testing.T) {
	s := meta.New()
	mustApply(t, s, threeMembers()...)
	mustApply(t, s, epochEntry(4),
		putEntry(10, version(4, 1), 100, 0, 1),
		putEntry(11, version(4, 2), 200, 1, 2),
		putEntry(12, version(4, 3), 300, 0, 1),
	)
	base := s.Snapshot()
	if _, err := meta.Restore(base); err != nil {
		t.Fatalf("restore the unchanged snapshot: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*messages.MetaSnapshot)
	}{
		{"fewer versions than ids", func(m *messages.MetaSnapshot) { m.Versions = m.Versions[:2] }},
		{"more versions than ids", func(m *messages.MetaSnapshot) { m.Versions = append(m.Versions, 1) }},
		{"fewer set ids than ids", func(m *messages.MetaSnapshot) { m.SetIds = m.SetIds[:1] }},
		{"fewer sizes than ids", func(m *messages.MetaSnapshot) { m.Sizes = m.Sizes[:2] }},
		{"more sizes than ids", func(m *messages.MetaSnapshot) { m.Sizes = append(m.Sizes, 1) }},
		{"more ids than columns", func(m *messages.MetaSnapshot) { m.Ids = append(m.Ids, 99) }},
		{"unknown set id", func(m *messages.MetaSnapshot) { m.SetIds[1] = uint32(len(m.ReplicaSets)) }},
		{"set naming an unknown slot", func(m *messages.MetaSnapshot) { m.ReplicaSets[0].Slots = []uint32{0, 3} }},
		{"set naming a slot twice", func(m *messages.MetaSnapshot) { m.ReplicaSets[0].Slots = []uint32{1, 1} }},
		{"empty set", func(m *messages.MetaSnapshot) { m.ReplicaSets[1].Slots = nil }},
		{"duplicate id", func(m *messages.MetaSnapshot) { m.Ids[2] = m.Ids[0] }},
		{"member with an empty id", func(m *messages.MetaSnapshot) { m.Members[1].MemberId = "" }},
		{"member listed twice", func(m *messages.MetaSnapshot) {
			m.Members = append(m.Members, &messages.MemberEntry{MemberId: m.Members[0].GetMemberId(), NodeAddress: "127.0.0.1:7009"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := proto.Clone(base).(*messages.MetaSnapshot)
			tt.mutate(snap)
			if restored, err := meta.Restore(snap); err == nil {
				t.Errorf("Restore accepted the snapshot: %d messages, members %+v", restored.Len(), restored.Members())
			} else {
				t.Logf("Restore: %v", err)
			}
		})
	}
}

// indexBytesPerMessage measures the heap the index takes per message after
// n puts spread over three replica sets.
func indexBytesPerMessage(tb testing.TB, n int) float64 {
	s := meta.New()
	mustApply(tb, s, threeMembers()...)
	sets := [][]uint32{{0, 1}, {1, 2}, {0, 2}}
	put := &messages.PutEntry{}
	entry := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: put}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		put.Id, put.Version, put.Replicas, put.Size = int64(i), uint64(i+1), sets[i%len(sets)], uint32(i)
		if _, err := s.Apply(entry); err != nil {
			tb.Fatalf("apply put %d: %v", i, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.Len() != n {
		tb.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

func TestIndexMemoryPerMessage(t *testing.T) {
	const n = 1_000_000
	perMessage := indexBytesPerMessage(t, n)
	t.Logf("index memory: %.1f bytes/message over %d messages", perMessage, n)
	if perMessage > 150 {
		t.Errorf("index memory %.1f bytes/message, want at most 150", perMessage)
	}
}

func BenchmarkIndexMemory(b *testing.B) {
	var perMessage float64
	for b.Loop() {
		perMessage = indexBytesPerMessage(b, 1_000_000)
	}
	b.ReportMetric(perMessage, "bytes/message")
}

func BenchmarkApplyPut(b *testing.B) {
	sets := [][]uint32{{0, 1}, {1, 2}, {0, 2}}
	b.Run("new", func(b *testing.B) {
		s := meta.New()
		mustApply(b, s, threeMembers()...)
		put := &messages.PutEntry{}
		entry := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: put}}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			put.Id, put.Version, put.Replicas, put.Size = int64(i), uint64(i+1), sets[i%len(sets)], uint32(i)
			if _, err := s.Apply(entry); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("overwrite", func(b *testing.B) {
		const ids = 1 << 16
		s := meta.New()
		mustApply(b, s, threeMembers()...)
		put := &messages.PutEntry{}
		entry := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: put}}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			put.Id, put.Version, put.Replicas, put.Size = int64(i%ids), uint64(i+1), sets[i%len(sets)], uint32(i)
			if _, err := s.Apply(entry); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// TestRestoreWithoutSizes restores a snapshot written before sizes were
// recorded: every message keeps its version and replicas, with size 0.
func TestRestoreWithoutSizes(t *testing.T) {
	s := meta.New()
	for i := 0; i < 3; i++ {
		if _, err := s.Apply(&messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{MemberId: fmt.Sprintf("m%d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for id := int64(1); id <= 5; id++ {
		if _, err := s.Apply(&messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{Id: id, Version: uint64(id), Replicas: []uint32{0, 1}, Size: 42}}}); err != nil {
			t.Fatal(err)
		}
	}
	snap := s.Snapshot()
	snap.Sizes = nil
	restored, err := meta.Restore(snap)
	if err != nil {
		t.Fatalf("restore without sizes: %v", err)
	}
	for id := int64(1); id <= 5; id++ {
		v, replicas, ok := restored.Lookup(id)
		size, _ := restored.Size(id)
		if !ok || v != uint64(id) || len(replicas) != 2 || size != 0 {
			t.Fatalf("id %d: version %d replicas %v size %d ok %v", id, v, replicas, size, ok)
		}
	}
}

// BenchmarkSnapshot splits taking a snapshot of 1,000,000 messages into the
// part that stalls the leader (freeze: copying the index) and the part that
// runs beside it (encode: building and marshalling the message). Ids are
// random 63-bit numbers and versions those of epoch 3, as a client and a
// leader would make them, so that the snapshot's varints have their real
// width.
func BenchmarkSnapshot(b *testing.B) {
	const n = 1_000_000
	s := meta.New()
	mustApply(b, s, threeMembers()...)
	sets := [][]uint32{{0, 1}, {1, 2}, {0, 2}}
	ids := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		mustApply(b, s, &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
			Id: ids.Int64(), Version: 3<<meta.EpochShift | uint64(i+1), Replicas: sets[i%len(sets)], Size: 100,
		}}})
	}
	b.Run("freeze", func(b *testing.B) {
		for b.Loop() {
			if f := s.Freeze(); f.Len() != s.Len() {
				b.Fatalf("froze %d messages, want %d", f.Len(), n)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		f := s.Freeze()
		var size int
		for b.Loop() {
			data, err := proto.Marshal(f.Snapshot())
			if err != nil {
				b.Fatal(err)
			}
			size = len(data)
		}
		b.ReportMetric(float64(size)/n, "snapshot-bytes/message")
	})
}
