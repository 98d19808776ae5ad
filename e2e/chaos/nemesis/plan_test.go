package nemesis

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func planConfig(seed uint64, spec string, concurrency int) PlanConfig {
	faults, err := ParseFaults(spec)
	if err != nil {
		panic(err)
	}
	return PlanConfig{
		Seed: seed, Duration: 60 * time.Second, Interval: 2 * time.Second,
		MinHold: 500 * time.Millisecond, MaxHold: 4 * time.Second, Concurrency: concurrency,
		Faults: faults, Gateways: []string{"gateway-1"}, Members: []string{"member-1", "member-2", "member-3"},
	}
}

func TestPlanIsReproducible(t *testing.T) {
	a, err := NewPlan(planConfig(42, "mixed", 2))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPlan(planConfig(42, "mixed", 2))
	c, _ := NewPlan(planConfig(43, "mixed", 2))
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave two plans")
	}
	if reflect.DeepEqual(a.Events, c.Events) {
		t.Error("seeds 42 and 43 gave the same plan")
	}
	if len(a.Events) < 10 {
		t.Errorf("only %d faults in 60 s at a 2 s interval:\n%s", len(a.Events), a)
	}
}

// TestPlanRespectsConcurrency: never more faults at once than allowed, and
// never two on one node.
func TestPlanRespectsConcurrency(t *testing.T) {
	for _, concurrency := range []int{1, 2, 3} {
		for seed := range uint64(20) {
			cfg := planConfig(seed, "mixed", concurrency)
			plan, err := NewPlan(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range plan.Events {
				if e.At >= cfg.Duration || e.For < cfg.MinHold || e.For > cfg.MaxHold {
					t.Errorf("event out of bounds: %s", e)
				}
				holding := 0
				nodes := map[string]int{}
				for _, o := range plan.Events {
					if o.At <= e.At && e.At < o.At+o.For {
						holding++
						names := o.Nodes
						if o.Target == Leader {
							names = cfg.Gateways
						}
						for _, n := range names {
							nodes[n]++
						}
					}
				}
				if holding > concurrency {
					t.Errorf("concurrency %d seed %d: %d faults hold at %s", concurrency, seed, holding, e.At)
				}
				for n, k := range nodes {
					if k > 1 {
						t.Errorf("concurrency %d seed %d: %d faults on %s at %s\n%s", concurrency, seed, k, n, e.At, plan)
					}
				}
			}
		}
	}
}

func TestPlanTargets(t *testing.T) {
	plan, err := NewPlan(planConfig(7, "quorum,cluster-kill,pause:leader", 1))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Target]bool{}
	for _, e := range plan.Events {
		seen[e.Target] = true
		want := map[Target]int{Minority: 1, Majority: 3, All: 4, Leader: 0}[e.Target]
		if len(e.Nodes) != want {
			t.Errorf("%s: %d nodes, want %d", e, len(e.Nodes), want)
		}
	}
	for _, target := range []Target{Minority, Majority, All, Leader} {
		if !seen[target] {
			t.Errorf("no %s fault in 60 s:\n%s", target, plan)
		}
	}
}

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults("member, pause:leader,kill:member")
	if err != nil {
		t.Fatal(err)
	}
	want := []Fault{{Kill, Member}, {Partition, Member}, {Pause, Leader}, {Pause, Member}}
	slices.SortFunc(want, func(a, b Fault) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"nonsense", "kill:everyone", "cluster-kill:member", "disk-full:minority", "disk-full:all", "explode:member"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) succeeded", bad)
		}
	}
	if faults, err := ParseFaults("gateway-disk"); err != nil || !slices.Equal(faults, []Fault{{DiskFull, Gateway}, {DiskFull, Leader}}) {
		t.Errorf("gateway-disk: %v %v", faults, err)
	}
	if faults, err := ParseFaults("none"); err != nil || len(faults) != 0 {
		t.Errorf("none: %v %v", faults, err)
	}
}

func TestNewPlanRejectsBadConfig(t *testing.T) {
	for _, mutate := range []func(*PlanConfig){
		func(c *PlanConfig) { c.Interval = 0 },
		func(c *PlanConfig) { c.MaxHold = c.MinHold - 1 },
		func(c *PlanConfig) { c.Concurrency = 0 },
		func(c *PlanConfig) { c.Members = nil },
		func(c *PlanConfig) { c.Faults = []Fault{{"melt", Member}} },
	} {
		cfg := planConfig(1, "member", 1)
		mutate(&cfg)
		if _, err := NewPlan(cfg); err == nil {
			t.Errorf("NewPlan(%+v) succeeded", cfg)
		}
	}
}
