package selector_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/selector"
	"github.com/tolerex/tolerex/messages"
)

var policies = []selector.Policy{selector.LeastLoaded, selector.PowerOfTwo}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		want    selector.Policy
		wantErr bool
	}{
		{"least_loaded", selector.LeastLoaded, false},
		{"p2c", selector.PowerOfTwo, false},
		{"", "", true},
		{"LEAST_LOADED", "", true},
		{"p2c ", "", true},
		{"round_robin", "", true},
	}
	for _, tt := range tests {
		got, err := selector.ParsePolicy(tt.name)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

// slots returns 0..n-1.
func slots(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i)
	}
	return out
}

// checkSelection checks one Select result against the live set and the
// exclusions.
func checkSelection(t *testing.T, got []uint32, count int, live, exclude []uint32) {
	t.Helper()
	available := 0
	for _, slot := range live {
		if !slices.Contains(exclude, slot) {
			available++
		}
	}
	if want := min(count, available); len(got) != want {
		t.Fatalf("Select(%d, %v) over live %v = %v: %d members, want %d", count, exclude, live, got, len(got), want)
	}
	for i, slot := range got {
		if slices.Contains(got[:i], slot) {
			t.Fatalf("Select(%d, %v) over live %v = %v: %d chosen twice", count, exclude, live, got, slot)
		}
		if !slices.Contains(live, slot) {
			t.Fatalf("Select(%d, %v) over live %v = %v: %d is not live", count, exclude, live, got, slot)
		}
		if slices.Contains(exclude, slot) {
			t.Fatalf("Select(%d, %v) over live %v = %v: %d is excluded", count, exclude, live, got, slot)
		}
	}
}

func TestSelectReturnsDistinctLiveNonExcludedMembers(t *testing.T) {
	for _, policy := range policies {
		t.Run(string(policy), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			sel := selector.New(policy, 1)
			for range 5000 {
				// A random live set among slots 0..15 and a random exclusion
				// list that may name members that are not live.
				var live, exclude []uint32
				for slot := range uint32(16) {
					if rng.IntN(2) == 0 {
						live = append(live, slot)
					}
					if rng.IntN(4) == 0 {
						exclude = append(exclude, slot)
					}
				}
				rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
				sel.SetLive(live)
				if rng.IntN(3) == 0 {
					load := make(map[uint32]int64)
					for _, slot := range live {
						load[slot] = rng.Int64N(100)
					}
					sel.SetLoad(load)
				}
				count := rng.IntN(10)
				checkSelection(t, sel.Select(count, exclude), count, live, exclude)
			}
		})
	}
}

func TestSelectEdgeCases(t *testing.T) {
	for _, policy := range policies {
		t.Run(string(policy), func(t *testing.T) {
			sel := selector.New(policy, 1)
			if got := sel.Select(3, nil); len(got) != 0 {
				t.Errorf("Select with no live members = %v, want none", got)
			}
			sel.SetLive([]uint32{4, 2, 9})
			if sel.Live() != 3 {
				t.Errorf("Live = %d, want 3", sel.Live())
			}
			if got := sel.Select(0, nil); len(got) != 0 {
				t.Errorf("Select(0) = %v, want none", got)
			}
			checkSelection(t, sel.Select(5, nil), 5, []uint32{2, 4, 9}, nil)
			checkSelection(t, sel.Select(3, []uint32{2, 4, 9}), 3, []uint32{2, 4, 9}, []uint32{2, 4, 9})
			checkSelection(t, sel.Select(1, []uint32{2, 9}), 1, []uint32{2, 4, 9}, []uint32{2, 9})
			// A live set naming a member twice still has that member once.
			sel.SetLive([]uint32{7, 7, 8})
			if sel.Live() != 2 {
				t.Errorf("Live after SetLive([7 7 8]) = %d, want 2", sel.Live())
			}
			for range 100 {
				checkSelection(t, sel.Select(3, nil), 3, []uint32{7, 8}, nil)
			}
		})
	}
}

func TestSetLiveCopiesItsArgument(t *testing.T) {
	sel := selector.New(selector.LeastLoaded, 1)
	live := []uint32{0, 1}
	sel.SetLive(live)
	live[0], live[1] = 5, 6
	checkSelection(t, sel.Select(2, nil), 2, []uint32{0, 1}, nil)
}

func TestLeastLoadedPicksTheLeastLoaded(t *testing.T) {
	sel := selector.New(selector.LeastLoaded, 1)
	sel.SetLive([]uint32{0, 1, 2, 3, 4})
	sel.SetLoad(map[uint32]int64{0: 10, 1: 5, 2: 7, 3: 1, 4: 20})
	got := sel.Select(2, []uint32{3})
	slices.Sort(got)
	if !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("Select(2, exclude 3) = %v, want [1 2]", got)
	}
	// Every selection counts on the chosen members.
	for slot, want := range map[uint32]int64{0: 10, 1: 6, 2: 8, 3: 1, 4: 20} {
		if got := sel.Load(slot); got != want {
			t.Errorf("Load(%d) = %d, want %d", slot, got, want)
		}
	}
	if got := sel.Select(1, nil); !slices.Equal(got, []uint32{3}) {
		t.Errorf("Select(1) = %v, want [3]", got)
	}
	// SetLoad replaces the loads: members missing from the report are at 0.
	sel.SetLoad(map[uint32]int64{0: 3, 1: 3, 2: 3, 3: 3})
	if got := sel.Select(1, nil); !slices.Equal(got, []uint32{4}) {
		t.Errorf("Select(1) after SetLoad without member 4 = %v, want [4]", got)
	}
}

func TestLeastLoadedSpreadsEvenly(t *testing.T) {
	const (
		members    = 3
		tolerance  = 2
		selections = 30_000
	)
	sel := selector.New(selector.LeastLoaded, 1)
	sel.SetLive(slots(members))
	for range selections {
		sel.Select(tolerance, nil)
	}
	loads := loadsOf(sel, members)
	if sum(loads) != selections*tolerance {
		t.Fatalf("loads %v sum to %d, want %d", loads, sum(loads), selections*tolerance)
	}
	if spread := slices.Max(loads) - slices.Min(loads); spread > 2 {
		t.Errorf("loads %v: max-min = %d, want at most 2", loads, spread)
	}
}

func TestLeastLoadedSharesTiesAtRandom(t *testing.T) {
	// With equal loads reported before every selection, the choice must not
	// always fall on the same member.
	sel := selector.New(selector.LeastLoaded, 1)
	sel.SetLive(slots(4))
	picked := make(map[uint32]int)
	for range 4000 {
		sel.SetLoad(map[uint32]int64{0: 5, 1: 5, 2: 5, 3: 5})
		picked[sel.Select(1, nil)[0]]++
	}
	for slot := range uint32(4) {
		if picked[slot] < 800 {
			t.Errorf("member %d picked %d of 4000 times with equal loads (%v)", slot, picked[slot], picked)
		}
	}
}

func TestPowerOfTwoSpreadsReasonably(t *testing.T) {
	const (
		members    = 5
		selections = 30_000
	)
	sel := selector.New(selector.PowerOfTwo, 1)
	sel.SetLive(slots(members))
	for range selections {
		sel.Select(2, nil)
	}
	loads := loadsOf(sel, members)
	if sum(loads) != selections*2 {
		t.Fatalf("loads %v sum to %d, want %d", loads, sum(loads), selections*2)
	}
	ratio := float64(slices.Max(loads)) / float64(slices.Min(loads))
	t.Logf("p2c loads %v, max/min %.4f", loads, ratio)
	if ratio > 1.1 {
		t.Errorf("loads %v: max/min = %.3f, want at most 1.1", loads, ratio)
	}
}

func TestPowerOfTwoAvoidsAnOverloadedMember(t *testing.T) {
	const (
		members    = 5
		selections = 10_000
	)
	sel := selector.New(selector.PowerOfTwo, 1)
	sel.SetLive(slots(members))
	sel.SetLoad(map[uint32]int64{0: 1 << 40})
	hot := 0
	for range selections {
		if slices.Contains(sel.Select(2, nil), 0) {
			hot++
		}
	}
	if hot > selections/100 {
		t.Errorf("the overloaded member was picked in %d of %d selections", hot, selections)
	}
	// When every member is needed, the overloaded one is still used.
	if got := sel.Select(members, nil); !slices.Contains(got, 0) {
		t.Errorf("Select(%d) = %v, want every member", members, got)
	}
}

func TestSelectIsReproducibleWithASeed(t *testing.T) {
	for _, policy := range policies {
		t.Run(string(policy), func(t *testing.T) {
			run := func(seed uint64) [][]uint32 {
				sel := selector.New(policy, seed)
				sel.SetLive(slots(6))
				var out [][]uint32
				for i := range 200 {
					if i%50 == 0 {
						sel.SetLoad(map[uint32]int64{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1})
					}
					out = append(out, sel.Select(2, []uint32{uint32(i % 7)}))
				}
				return out
			}
			a, b := run(11), run(11)
			for i := range a {
				if !slices.Equal(a[i], b[i]) {
					t.Fatalf("selection %d differs with the same seed: %v and %v", i, a[i], b[i])
				}
			}
			c := run(12)
			same := true
			for i := range a {
				same = same && slices.Equal(a[i], c[i])
			}
			if same {
				t.Error("seeds 11 and 12 made the same 200 selections")
			}
		})
	}
}

func loadsOf(sel *selector.Selector, members int) []int64 {
	loads := make([]int64, members)
	for i := range loads {
		loads[i] = sel.Load(uint32(i))
	}
	return loads
}

func sum(xs []int64) int64 {
	var total int64
	for _, x := range xs {
		total += x
	}
	return total
}

func TestActorAnswersSelectReplicas(t *testing.T) {
	system := actortest.QuietSystem(t)
	pid := system.Root.Spawn(actor.PropsFromProducer(selector.NewActor(selector.LeastLoaded, 1)))
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })

	ask := func(req *messages.SelectReplicas) *messages.ReplicasSelected {
		t.Helper()
		res, err := system.Root.RequestFuture(pid, req, 5*time.Second).Result()
		if err != nil {
			t.Fatalf("request %v: %v", req, err)
		}
		reply, ok := res.(*messages.ReplicasSelected)
		if !ok {
			t.Fatalf("request %v: reply %T, want *messages.ReplicasSelected", req, res)
		}
		return reply
	}

	// No live members yet.
	reply := ask(&messages.SelectReplicas{RequestId: 1, Count: 2})
	if reply.GetRequestId() != 1 || reply.GetLive() != 0 || len(reply.GetMembers()) != 0 {
		t.Errorf("reply before any live set = %v, want request 1, live 0, no members", reply)
	}

	// Messages from one sender arrive in order, so the updates are applied
	// before the request.
	system.Root.Send(pid, &messages.SelectorLiveSet{Live: []uint32{0, 1, 2, 3}})
	system.Root.Send(pid, &messages.SelectorLoad{Messages: map[uint32]int64{0: 50, 1: 0, 2: 9, 3: 4}})
	reply = ask(&messages.SelectReplicas{RequestId: 42, Count: 2, Exclude: []uint32{1}})
	members := slices.Sorted(slices.Values(reply.GetMembers()))
	if reply.GetRequestId() != 42 || reply.GetLive() != 4 || !slices.Equal(members, []uint32{2, 3}) {
		t.Errorf("reply = %v, want request 42, live 4, members [2 3]", reply)
	}

	reply = ask(&messages.SelectReplicas{RequestId: 43, Count: 9})
	if reply.GetRequestId() != 43 || reply.GetLive() != 4 || len(reply.GetMembers()) != 4 {
		t.Errorf("reply = %v, want request 43, live 4, all 4 members", reply)
	}

	system.Root.Send(pid, &messages.SelectorLiveSet{Live: []uint32{3}})
	reply = ask(&messages.SelectReplicas{RequestId: 44, Count: 2})
	if reply.GetRequestId() != 44 || reply.GetLive() != 1 || !slices.Equal(reply.GetMembers(), []uint32{3}) {
		t.Errorf("reply = %v, want request 44, live 1, members [3]", reply)
	}
}

func BenchmarkSelectLeastLoaded(b *testing.B) { benchmarkSelect(b, selector.LeastLoaded) }

func BenchmarkSelectP2C(b *testing.B) { benchmarkSelect(b, selector.PowerOfTwo) }

func benchmarkSelect(b *testing.B, policy selector.Policy) {
	for _, members := range []int{3, 16} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			sel := selector.New(policy, 1)
			sel.SetLive(slots(members))
			b.ReportAllocs()
			for b.Loop() {
				sel.Select(2, nil)
			}
		})
	}
}

// Late members are chosen only when the others do not make up the count,
// with either policy, and an excluded member is never chosen.
func TestSelectChoosesLateMembersLast(t *testing.T) {
	for _, policy := range []selector.Policy{selector.LeastLoaded, selector.PowerOfTwo} {
		sel := selector.New(policy, 7)
		sel.SetLive([]uint32{0, 1, 2, 3})
		sel.SetLate([]uint32{1, 3})
		sel.SetLoad(map[uint32]int64{0: 100, 1: 0, 2: 100, 3: 0}) // the late ones least loaded
		for range 50 {
			if got := slices.Sorted(slices.Values(sel.Select(2, nil))); !slices.Equal(got, []uint32{0, 2}) {
				t.Fatalf("%s: Select(2) = %v, want [0 2]: late members chosen before others", policy, got)
			}
		}
		got := sel.Select(3, []uint32{2})
		if len(got) != 3 || got[0] != 0 || (got[1] != 1 && got[1] != 3) || (got[2] != 1 && got[2] != 3) || got[1] == got[2] {
			t.Fatalf("%s: Select(3, exclude [2]) = %v, want 0 and then both late ones", policy, got)
		}
		sel.SetLate(nil)
		if got := sel.Select(2, nil); !slices.Equal(slices.Sorted(slices.Values(got)), []uint32{1, 3}) {
			t.Fatalf("%s: Select(2) with none late = %v, want the least loaded [1 3]", policy, got)
		}
	}
}
