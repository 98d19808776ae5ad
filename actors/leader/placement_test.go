package leader

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func TestPlacementStoresOnChosenMembers(t *testing.T) {
	p, first := newPlacement(2)
	if first.count != 2 || len(first.exclude) != 0 {
		t.Fatalf("first selection = %+v, want 2 members, no exclusions", first)
	}
	send, next := p.selected([]uint32{4, 1})
	if !reflect.DeepEqual(send, []uint32{4, 1}) || next != nil {
		t.Fatalf("selected = %v, %v; want [4 1], no further selection", send, next)
	}
	p.copyStored(1)
	if p.complete() || p.hopeless() {
		t.Fatalf("after one copy: complete %v, hopeless %v", p.complete(), p.hopeless())
	}
	p.copyStored(4)
	if !p.complete() || !reflect.DeepEqual(p.replicas(), []uint32{1, 4}) {
		t.Fatalf("complete %v, replicas %v; want complete on [1 4]", p.complete(), p.replicas())
	}
}

func TestPlacementRefusesWhenTooFewMembersAtFirst(t *testing.T) {
	p, _ := newPlacement(3)
	send, next := p.selected([]uint32{0, 1})
	if send != nil || next != nil || !p.hopeless() {
		t.Fatalf("selected = %v, %v, hopeless %v; want nothing sent and hopeless", send, next, p.hopeless())
	}
}

// The issue-8 scenario: both members of a tolerance-2 write time out one
// right after the other. The second failure must wait for the first
// replacement's selection, and that selection's choice must be excluded
// from the second one, so no member is chosen twice.
func TestPlacementConcurrentTimeoutsNeverChooseAMemberTwice(t *testing.T) {
	p, _ := newPlacement(2)
	p.selected([]uint32{0, 1})
	first := p.copyFailed() // member 0 timed out
	if first == nil || first.count != 1 || !reflect.DeepEqual(first.exclude, []uint32{0, 1}) {
		t.Fatalf("replacement for 0 = %+v, want 1 member excluding [0 1]", first)
	}
	if second := p.copyFailed(); second != nil { // member 1 timed out too
		t.Fatalf("a second selection started while one is outstanding: %+v", second)
	}
	send, next := p.selected([]uint32{2})
	if !reflect.DeepEqual(send, []uint32{2}) {
		t.Fatalf("sent to %v, want [2]", send)
	}
	if next == nil || next.count != 1 || !reflect.DeepEqual(next.exclude, []uint32{0, 1, 2}) {
		t.Fatalf("replacement for 1 = %+v, want 1 member excluding [0 1 2]", next)
	}
	// Only members 0..2 are live again: the selector has nobody new.
	send, next = p.selected(nil)
	if send != nil || next != nil {
		t.Fatalf("selected(nil) = %v, %v; want nothing", send, next)
	}
	if !p.hopeless() {
		t.Fatal("one copy in flight for a tolerance-2 write with no member left: want hopeless")
	}
}

// A selector that returns a member already chosen (it raced with a
// liveness change, or has a bug) must not make the write use it twice.
func TestPlacementDropsMembersChosenBefore(t *testing.T) {
	p, _ := newPlacement(2)
	p.selected([]uint32{0, 1})
	p.copyStored(0)
	sel := p.copyFailed()
	send, _ := p.selected([]uint32{0, 1, 1})
	if len(send) != 0 {
		t.Fatalf("selection %+v answered with chosen members; sent to %v, want none", sel, send)
	}
	if !p.hopeless() {
		t.Fatal("want hopeless: no new member could be found")
	}
	p2, _ := newPlacement(2)
	if send, _ := p2.selected([]uint32{3, 3, 5}); !reflect.DeepEqual(send, []uint32{3, 5}) {
		t.Fatalf("first answer [3 3 5] sent to %v, want [3 5]", send)
	}
}

// Random event orders: whatever the order of answers and failures, the
// chosen members are distinct, never more than asked for are in flight,
// the index entry names distinct members, and the write ends complete or
// hopeless once nothing is outstanding.
func TestPlacementRandomOrdersKeepReplicasDistinct(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		const members = 6
		need := 1 + rng.IntN(3)
		p, first := newPlacement(need)
		pending := []selection{first}
		var inflight []uint32
		for steps := 0; steps < 100 && !p.complete() && !p.hopeless(); steps++ {
			if len(pending) > 1 {
				t.Fatalf("seed %d: %d selections outstanding", seed, len(pending))
			}
			switch {
			case len(pending) == 1 && (len(inflight) == 0 || rng.IntN(2) == 0):
				sel := pending[0]
				pending = pending[:0]
				// A sloppy selector: live members in random order, some
				// excluded ones slipped in.
				var answer []uint32
				for m := range uint32(members) {
					if !slices.Contains(sel.exclude, m) || rng.IntN(4) == 0 {
						if rng.IntN(5) > 0 {
							answer = append(answer, m)
						}
					}
				}
				rng.Shuffle(len(answer), func(i, j int) { answer[i], answer[j] = answer[j], answer[i] })
				send, next := p.selected(answer)
				if len(send) > sel.count {
					t.Fatalf("seed %d: asked for %d, sent %d", seed, sel.count, len(send))
				}
				inflight = append(inflight, send...)
				if next != nil {
					pending = append(pending, *next)
				}
			case len(inflight) > 0:
				i := rng.IntN(len(inflight))
				slot := inflight[i]
				inflight = slices.Delete(inflight, i, i+1)
				if rng.IntN(3) == 0 {
					if next := p.copyFailed(); next != nil {
						pending = append(pending, *next)
					}
				} else {
					p.copyStored(slot)
				}
			}
		}
		chosen := slices.Clone(p.chosen)
		slices.Sort(chosen)
		if len(slices.Compact(chosen)) != len(p.chosen) {
			t.Fatalf("seed %d: a member was chosen twice: %v", seed, p.chosen)
		}
		if p.complete() {
			r := p.replicas()
			slices.Sort(r)
			if len(slices.Compact(r)) != len(p.replicas()) {
				t.Fatalf("seed %d: replicas %v name a member twice", seed, p.replicas())
			}
		}
		if !p.complete() && !p.hopeless() && len(pending) == 0 && len(inflight) == 0 {
			t.Fatalf("seed %d: nothing outstanding, yet neither complete nor hopeless: %+v", seed, p)
		}
	}
}

// A member whose copy timed out is asked again only when the selector has
// nobody new, and only once.
func TestPlacementAsksATimedOutMemberAgainOnce(t *testing.T) {
	p, _ := newPlacement(2)
	p.selected([]uint32{0, 1})
	p.copyStored(1)
	next := p.copyTimedOut(0)
	if send, _ := p.selected([]uint32{2}); !reflect.DeepEqual(send, []uint32{2}) || next == nil {
		t.Fatalf("sent to %v, want the new member 2 before asking 0 again", send)
	}
	if p.isAskedAgain(0) {
		t.Fatal("0 asked again although a new member was found")
	}
	next = p.copyTimedOut(2)
	if next == nil || !reflect.DeepEqual(next.exclude, []uint32{0, 1, 2}) {
		t.Fatalf("replacement for 2 = %+v, want one excluding [0 1 2]", next)
	}
	send, _ := p.selected(nil)
	if !reflect.DeepEqual(send, []uint32{0}) || !p.isAskedAgain(0) || p.isAskedAgain(2) {
		t.Fatalf("sent to %v (again: 0 %v, 2 %v), want 0 asked again first", send, p.isAskedAgain(0), p.isAskedAgain(2))
	}
	p.copyTimedOut(0) // silent twice: not asked a third time
	if send, _ = p.selected(nil); !reflect.DeepEqual(send, []uint32{2}) {
		t.Fatalf("sent to %v, want 2 asked again", send)
	}
	p.copyTimedOut(2)
	if send, _ = p.selected(nil); send != nil || !p.hopeless() {
		t.Fatalf("sent to %v, hopeless %v; want nobody left to ask", send, p.hopeless())
	}
}

// A late copy stays in flight while one more member is asked: whichever
// copies are stored first make the write, and the late one is not named.
func TestPlacementLateCopyAsksForOneMoreAndKeepsItInFlight(t *testing.T) {
	p, _ := newPlacement(2)
	p.selected([]uint32{0, 1})
	p.copyStored(1)
	next := p.copyLate()
	if next == nil || next.count != 1 || !reflect.DeepEqual(next.exclude, []uint32{0, 1}) {
		t.Fatalf("selection for a late copy = %+v, want one member excluding [0 1]", next)
	}
	if send, _ := p.selected([]uint32{2}); !reflect.DeepEqual(send, []uint32{2}) {
		t.Fatalf("sent to %v, want 2", send)
	}
	if p.hopeless() || p.complete() {
		t.Fatalf("hopeless %v, complete %v with 0 and 2 in flight; want neither", p.hopeless(), p.complete())
	}
	p.copyStored(2)
	if !p.complete() || !reflect.DeepEqual(p.replicas(), []uint32{1, 2}) {
		t.Fatalf("complete %v, replicas %v; want [1 2]", p.complete(), p.replicas())
	}

	// Late while a replacement is being selected: asked for with it.
	p, _ = newPlacement(2)
	p.selected([]uint32{0, 1})
	if p.copyFailed() == nil {
		t.Fatal("no replacement asked for")
	}
	if next := p.copyLate(); next != nil {
		t.Fatalf("a second selection %+v while one is outstanding", next)
	}
	send, next := p.selected([]uint32{2})
	if !reflect.DeepEqual(send, []uint32{2}) || next == nil || next.count != 1 || !reflect.DeepEqual(next.exclude, []uint32{0, 1, 2}) {
		t.Fatalf("sent to %v, next %+v; want 2, then one more excluding [0 1 2]", send, next)
	}
	// Nobody new: the late copy is still awaited.
	if send, _ := p.selected(nil); send != nil || p.hopeless() {
		t.Fatalf("sent to %v, hopeless %v; want nothing sent and the late copies awaited", send, p.hopeless())
	}
}
