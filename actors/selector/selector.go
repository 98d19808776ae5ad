// Package selector is the replica-selector actor: it picks which live
// members store a new message, by load, with one of two policies:
// least_loaded (the members holding the fewest messages) or p2c
// (power of two choices: of two random members, the less loaded).
//
// Load is the number of messages indexed on a member, as last reported by
// the leader (SelectorLoad), plus every selection made since, so a burst
// of writes spreads out instead of piling onto the member that was least
// loaded at the last report.
package selector

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/messages"
)

// Policy is a replica-selection policy.
type Policy string

// The policies.
const (
	LeastLoaded Policy = "least_loaded"
	PowerOfTwo  Policy = "p2c"
)

// ParsePolicy validates a policy name.
func ParsePolicy(name string) (Policy, error) {
	switch p := Policy(name); p {
	case LeastLoaded, PowerOfTwo:
		return p, nil
	default:
		return "", fmt.Errorf("unknown balancer %q (want %s or %s)", name, LeastLoaded, PowerOfTwo)
	}
}

// Selector chooses replicas. It is the state of the selector actor and can
// be used directly (it is not safe for concurrent use).
type Selector struct {
	policy Policy
	rng    *rand.Rand
	live   []uint32
	late   []uint32
	load   map[uint32]int64
}

// New returns a selector with no live members. seed makes random choices
// reproducible in tests.
func New(policy Policy, seed uint64) *Selector {
	return &Selector{
		policy: policy,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		load:   make(map[uint32]int64),
	}
}

// SetLive replaces the set of live members; a slot named twice counts once.
func (s *Selector) SetLive(live []uint32) {
	s.live = slices.Clone(live)
	slices.Sort(s.live)
	s.live = slices.Compact(s.live)
}

// SetLate replaces the set of late members: live members that left a copy
// unanswered past the leader's hedge time (a stopped member is found down
// only after its heartbeat timeout). Select chooses them last.
func (s *Selector) SetLate(late []uint32) {
	s.late = slices.Clone(late)
}

// SetLoad replaces the per-member load.
func (s *Selector) SetLoad(load map[uint32]int64) {
	clear(s.load)
	for slot, n := range load {
		s.load[slot] = n
	}
}

// Load returns the current load estimate of a member.
func (s *Selector) Load(slot uint32) int64 { return s.load[slot] }

// Live returns how many members are live.
func (s *Selector) Live() int { return len(s.live) }

// Select picks up to count distinct live members not in exclude, by the
// policy among those not late and then, if they are too few, among the
// late ones, and counts one more message on each. It returns fewer when
// fewer are available.
func (s *Selector) Select(count int, exclude []uint32) []uint32 {
	var prompt, late []uint32
	for _, slot := range s.live {
		switch {
		case slices.Contains(exclude, slot):
		case slices.Contains(s.late, slot):
			late = append(late, slot)
		default:
			prompt = append(prompt, slot)
		}
	}
	chosen := s.choose(prompt, count)
	if len(chosen) < count {
		chosen = append(chosen, s.choose(late, count-len(chosen))...)
	}
	for _, slot := range chosen {
		s.load[slot]++
	}
	return chosen
}

// choose picks up to count of candidates by the policy.
func (s *Selector) choose(candidates []uint32, count int) []uint32 {
	if count <= 0 || len(candidates) == 0 {
		return nil
	}
	if s.policy == PowerOfTwo {
		return s.powerOfTwo(candidates, count)
	}
	return s.leastLoaded(candidates, count)
}

// leastLoaded takes the count least-loaded candidates; ties are broken at
// random so equal members share the work.
func (s *Selector) leastLoaded(candidates []uint32, count int) []uint32 {
	s.rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	slices.SortStableFunc(candidates, func(a, b uint32) int {
		switch la, lb := s.load[a], s.load[b]; {
		case la < lb:
			return -1
		case la > lb:
			return 1
		}
		return 0
	})
	return slices.Clone(candidates[:min(count, len(candidates))])
}

// powerOfTwo repeatedly draws two distinct random candidates and keeps the
// less loaded one.
func (s *Selector) powerOfTwo(candidates []uint32, count int) []uint32 {
	chosen := make([]uint32, 0, count)
	for len(chosen) < count && len(candidates) > 0 {
		pick := s.rng.IntN(len(candidates))
		if len(candidates) > 1 {
			other := s.rng.IntN(len(candidates) - 1)
			if other >= pick {
				other++
			}
			if s.load[candidates[other]] < s.load[candidates[pick]] {
				pick = other
			}
		}
		chosen = append(chosen, candidates[pick])
		candidates = slices.Delete(candidates, pick, pick+1)
	}
	return chosen
}

// NewActor returns a producer for the selector actor. It answers
// SelectReplicas with ReplicasSelected and SelectBatch with SelectedBatch,
// and takes SelectorLiveSet and SelectorLoad updates.
func NewActor(policy Policy, seed uint64) actor.Producer {
	return func() actor.Actor { return &selectorActor{sel: New(policy, seed)} }
}

type selectorActor struct {
	sel *Selector
}

func (a *selectorActor) selectOne(req *messages.SelectReplicas) *messages.ReplicasSelected {
	return &messages.ReplicasSelected{
		RequestId: req.GetRequestId(),
		Members:   a.sel.Select(int(req.GetCount()), req.GetExclude()),
		Live:      uint32(a.sel.Live()),
	}
}

func (a *selectorActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *messages.SelectReplicas:
		ctx.Respond(a.selectOne(msg))
	case *messages.SelectBatch:
		replies := make([]*messages.ReplicasSelected, len(msg.GetRequests()))
		for i, req := range msg.GetRequests() {
			replies[i] = a.selectOne(req)
		}
		ctx.Respond(&messages.SelectedBatch{Replies: replies})
	case *messages.SelectorLiveSet:
		a.sel.SetLive(msg.GetLive())
		a.sel.SetLate(msg.GetLate())
	case *messages.SelectorLoad:
		a.sel.SetLoad(msg.GetMessages())
	}
}
