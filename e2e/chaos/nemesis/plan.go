// Package nemesis decides which faults a run applies and when (a plan,
// reproducible from a seed) and applies them to a cluster: SIGKILL with a
// restart on the same data dir and ports, SIGSTOP/SIGCONT, network
// partitions, a whole-cluster SIGKILL with restart, and a full disk, each
// aimed at a member, a gateway, the leader, a minority or a majority of the
// nodes, one at a time or several at once.
package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The kinds of fault.
const (
	// Kill SIGKILLs the target nodes and restarts them when the fault
	// heals.
	Kill Kind = "kill"
	// Stop stops the target nodes with SIGTERM (a graceful stop: a gateway
	// that leads hands its leadership over, a gateway drains its clients)
	// and starts them again when the fault heals. A stop that does not end
	// in a clean exit is an error of the fault.
	Stop Kind = "stop"
	// Pause stops the target nodes with SIGSTOP and continues them with
	// SIGCONT.
	Pause Kind = "pause"
	// Partition cuts the target nodes off from every other node.
	Partition Kind = "partition"
	// ClusterKill SIGKILLs every node and restarts them all.
	ClusterKill Kind = "cluster-kill"
	// DiskFull fills a node's disk (a member's store, or a gateway's Raft
	// log) and frees it when the fault heals.
	DiskFull Kind = "disk-full"
)

// Target says which nodes a fault hits.
type Target string

// The targets.
const (
	Member  Target = "member"  // one member
	Gateway Target = "gateway" // one gateway
	Leader  Target = "leader"  // the gateway that leads, found when the fault starts
	// LeaderGateways is the leader, cut off from the other gateways only:
	// members and clients still reach it (partitions only).
	LeaderGateways Target = "leader-gateways"
	Minority       Target = "minority" // fewer than half of all nodes, at least one
	Majority       Target = "majority" // more than half of all nodes
	All            Target = "all"      // every node (ClusterKill)
)

// Fault is one kind of fault aimed at one kind of target.
type Fault struct {
	Kind   Kind
	Target Target
}

// String names the fault as kind:target, the form ParseFaults reads.
func (f Fault) String() string { return string(f.Kind) + ":" + string(f.Target) }

// Mixes are named sets of faults for ParseFaults.
func Mixes() map[string][]Fault {
	member := []Fault{{Kill, Member}, {Pause, Member}, {Partition, Member}}
	gateway := []Fault{{Kill, Gateway}, {Pause, Gateway}, {Partition, Gateway}, {Kill, Leader}, {Pause, Leader}, {Partition, Leader}, {Partition, LeaderGateways}}
	stops := []Fault{{Stop, Member}, {Stop, Gateway}, {Stop, Leader}}
	quorum := []Fault{{Kill, Minority}, {Pause, Minority}, {Partition, Minority}, {Kill, Majority}, {Pause, Majority}, {Partition, Majority}}
	mixed := slices.Concat(member, gateway, quorum, stops, []Fault{{ClusterKill, All}})
	return map[string][]Fault{
		"member":       member,
		"gateway":      gateway,
		"quorum":       quorum,
		"mixed":        mixed,
		"cluster-kill": {{ClusterKill, All}},
		"kills":        {{Kill, Member}, {Kill, Gateway}, {Kill, Leader}, {ClusterKill, All}},
		"pauses":       {{Pause, Member}, {Pause, Gateway}, {Pause, Leader}},
		"stops":        stops,
		"partitions":   {{Partition, Member}, {Partition, Gateway}, {Partition, Leader}, {Partition, LeaderGateways}, {Partition, Minority}, {Partition, Majority}},
		"disk":         {{DiskFull, Member}},
		"gateway-disk": {{DiskFull, Gateway}, {DiskFull, Leader}},
		"none":         nil,
	}
}

// ParseFaults reads a comma-separated list of mix names (see Mixes) and
// kind:target pairs, such as "member,pause:leader".
func ParseFaults(spec string) ([]Fault, error) {
	mixes := Mixes()
	var faults []Fault
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if mix, ok := mixes[item]; ok {
			faults = append(faults, mix...)
			continue
		}
		kind, target, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("fault %q: neither a mix (%s) nor kind:target", item, strings.Join(mixNames(mixes), ", "))
		}
		f := Fault{Kind(kind), Target(target)}
		if err := f.validate(); err != nil {
			return nil, err
		}
		faults = append(faults, f)
	}
	// Each fault once, in a stable order.
	slices.SortFunc(faults, func(a, b Fault) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(faults), nil
}

func mixNames(mixes map[string][]Fault) []string {
	names := make([]string, 0, len(mixes))
	for name := range mixes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (f Fault) validate() error {
	switch f.Kind {
	case Kill, Stop, Pause, Partition:
		switch f.Target {
		case Member, Gateway, Leader, Minority, Majority:
			return nil
		case LeaderGateways:
			if f.Kind == Partition {
				return nil
			}
		}
	case ClusterKill:
		if f.Target == All {
			return nil
		}
	case DiskFull:
		switch f.Target {
		case Member, Gateway, Leader:
			return nil
		}
	default:
		return fmt.Errorf("fault %s: unknown kind %q (kill, stop, pause, partition, cluster-kill, disk-full)", f, f.Kind)
	}
	return fmt.Errorf("fault %s: %s cannot aim at %q", f, f.Kind, f.Target)
}

// Event is one planned fault.
type Event struct {
	// N numbers the events from 1.
	N int `json:"n"`
	// At is when the fault starts, from the start of the workload.
	At time.Duration `json:"at_ns"`
	// For is how long it holds before it heals.
	For    time.Duration `json:"for_ns"`
	Kind   Kind          `json:"kind"`
	Target Target        `json:"target"`
	// Nodes are the nodes it hits; empty for Leader, which is found when
	// the fault starts.
	Nodes []string `json:"nodes,omitempty"`
}

// String describes the event for the run's plan and summary.
func (e Event) String() string {
	nodes := strings.Join(e.Nodes, ",")
	if e.Target == Leader || e.Target == LeaderGateways {
		nodes = "(the leader)"
	}
	return fmt.Sprintf("#%-3d at %7.2fs for %5.2fs  %-12s %-9s %s", e.N, e.At.Seconds(), e.For.Seconds(), e.Kind, e.Target, nodes)
}

// PlanConfig is what a plan is made from.
type PlanConfig struct {
	Seed uint64
	// Duration is how long the workload runs; no fault starts later.
	Duration time.Duration
	// Interval is the mean time between the start of one fault and the
	// start of the next (or, with Concurrency 1, the end of the previous
	// one); each gap is drawn from [Interval/2, 3*Interval/2].
	Interval time.Duration
	// MinHold and MaxHold bound how long a fault holds.
	MinHold, MaxHold time.Duration
	// Concurrency is how many faults may hold at once.
	Concurrency int
	Faults      []Fault
	// Gateways and Members name the nodes.
	Gateways, Members []string
}

// Plan is the schedule of a run's faults.
type Plan struct {
	Seed   uint64  `json:"seed"`
	Events []Event `json:"events"`
}

// String lists the events, one a line.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fault plan (seed %d): %d faults\n", p.Seed, len(p.Events))
	for _, e := range p.Events {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// NewPlan draws a plan from cfg.Seed: the same configuration and seed
// always give the same plan. A fault is never aimed at a node that another
// fault holds at the time; a fault that finds no free target is skipped.
func NewPlan(cfg PlanConfig) (Plan, error) {
	switch {
	case cfg.Interval <= 0:
		return Plan{}, errors.New("plan: the interval must be positive")
	case cfg.MinHold <= 0 || cfg.MaxHold < cfg.MinHold:
		return Plan{}, fmt.Errorf("plan: bad hold range %s..%s", cfg.MinHold, cfg.MaxHold)
	case cfg.Concurrency < 1:
		return Plan{}, errors.New("plan: concurrency must be at least 1")
	case len(cfg.Gateways) == 0 || len(cfg.Members) == 0:
		return Plan{}, errors.New("plan: no nodes")
	}
	for _, f := range cfg.Faults {
		if err := f.validate(); err != nil {
			return Plan{}, err
		}
	}
	plan := Plan{Seed: cfg.Seed}
	if len(cfg.Faults) == 0 {
		return plan, nil
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x746f6c65726578)) // "tolerex"
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	all := slices.Concat(cfg.Gateways, cfg.Members)
	type held struct {
		end   time.Duration
		nodes []string
	}
	var holding []held
	t := between(cfg.Interval/2, 3*cfg.Interval/2)
	for t < cfg.Duration {
		// Drop faults that healed by t; wait for one to heal if too many
		// hold.
		holding = slices.DeleteFunc(holding, func(h held) bool { return h.end <= t })
		if len(holding) >= cfg.Concurrency {
			end := holding[0].end
			for _, h := range holding {
				end = min(end, h.end)
			}
			t = end
			continue
		}
		busy := make(map[string]bool)
		for _, h := range holding {
			for _, n := range h.nodes {
				busy[n] = true
			}
		}
		free := func(names []string) []string {
			return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return busy[n] })
		}
		f := cfg.Faults[rng.IntN(len(cfg.Faults))]
		hold := between(cfg.MinHold, cfg.MaxHold)
		var nodes []string
		switch f.Target {
		case Member:
			nodes = pick(rng, free(cfg.Members), 1)
		case Gateway:
			nodes = pick(rng, free(cfg.Gateways), 1)
		case Leader, LeaderGateways:
			// The leader is found when the fault starts: every gateway
			// must be free.
			if len(free(cfg.Gateways)) == len(cfg.Gateways) {
				nodes = slices.Clone(cfg.Gateways)
			}
		case Minority:
			nodes = pick(rng, free(all), max(1, (len(all)-1)/2))
		case Majority:
			nodes = pick(rng, free(all), len(all)/2+1)
		case All:
			if len(busy) == 0 {
				nodes = slices.Clone(all)
			}
		}
		if len(nodes) > 0 {
			e := Event{N: len(plan.Events) + 1, At: t, For: hold, Kind: f.Kind, Target: f.Target, Nodes: nodes}
			if f.Target == Leader || f.Target == LeaderGateways {
				e.Nodes = nil
			}
			plan.Events = append(plan.Events, e)
			holding = append(holding, held{end: t + hold, nodes: nodes})
		}
		gap := between(cfg.Interval/2, 3*cfg.Interval/2)
		if cfg.Concurrency == 1 && len(nodes) > 0 {
			t += hold
		}
		t += gap
	}
	return plan, nil
}

// pick draws n distinct names, in a stable order, or none if there are
// fewer.
func pick(rng *rand.Rand, names []string, n int) []string {
	if len(names) < n || n <= 0 {
		return nil
	}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	chosen := slices.Clone(names[:n])
	slices.Sort(chosen)
	return chosen
}
