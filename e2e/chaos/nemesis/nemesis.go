package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/e2e/chaos/diskfault"
	"github.com/tolerex/tolerex/e2e/chaos/netfault"
)

// Applied is what became of one planned fault.
type Applied struct {
	Event
	// Nodes are the nodes it hit (for Leader, the one found).
	Nodes []string `json:"nodes,omitempty"`
	// Started and Healed are on the workload's clock; Healed is 0 if the
	// fault was never applied.
	Started time.Duration `json:"started_ns"`
	Healed  time.Duration `json:"healed_ns"`
	// Skipped says why the fault was not applied.
	Skipped string `json:"skipped,omitempty"`
	// Error is a failure to apply or heal it.
	Error string `json:"error,omitempty"`
}

// Nemesis applies a plan to a cluster.
type Nemesis struct {
	cluster *local.Cluster
	net     *netfault.Partitioner      // nil: no partitions
	disks   map[string]*diskfault.Disk // by member name
	// diskLeave is what a full disk keeps free.
	diskLeave int64
	clock     func() time.Duration
	log       io.Writer

	mu      sync.Mutex
	applied []*Applied
	active  map[int]*active // by event number
	logMu   sync.Mutex
}

// active is a fault that holds, and how to heal it.
type active struct {
	applied *Applied // guarded by Nemesis.mu
	heal    func() error
	kind    Kind
	nodes   []string
}

// Config configures a Nemesis.
type Config struct {
	Cluster *local.Cluster
	// Net makes partitions; nil if partition faults are not planned.
	Net *netfault.Partitioner
	// Disks are the members' small disks, by member name; needed by
	// DiskFull faults.
	Disks map[string]*diskfault.Disk
	// DiskLeave is the free space a full disk keeps, in bytes.
	DiskLeave int64
	// Clock is the workload's clock, for the times in Applied.
	Clock func() time.Duration
	// Log receives a line per fault applied and healed; nil discards.
	Log io.Writer
}

// New returns a Nemesis.
func New(cfg Config) *Nemesis {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Nemesis{
		cluster: cfg.Cluster, net: cfg.Net, disks: cfg.Disks, diskLeave: cfg.DiskLeave,
		clock: cfg.Clock, log: cfg.Log, active: make(map[int]*active),
	}
}

func (n *Nemesis) logf(format string, args ...any) {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	fmt.Fprintf(n.log, "%8.2fs nemesis: "+format+"\n", append([]any{n.clock().Seconds()}, args...)...)
}

// action is a fault starting or healing at a time.
type action struct {
	at    time.Duration
	start bool
	event Event
}

// Run applies the plan's faults at their times until the plan ends or ctx
// ends. It does not heal what still holds then: call HealAll.
func (n *Nemesis) Run(ctx context.Context, plan Plan) {
	var actions []action
	for _, e := range plan.Events {
		actions = append(actions, action{at: e.At, start: true, event: e}, action{at: e.At + e.For, event: e})
	}
	slices.SortStableFunc(actions, func(a, b action) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		case !a.start && b.start: // heal before starting at the same time
			return -1
		case a.start && !b.start:
			return 1
		}
		return 0
	})
	for _, a := range actions {
		// Waiting for the planned time is a timer, not synchronisation.
		if wait := a.at - n.clock(); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		if a.start {
			n.start(ctx, a.event)
		} else {
			n.heal(a.event.N)
		}
	}
}

// start applies one fault.
func (n *Nemesis) start(ctx context.Context, e Event) {
	ap := &Applied{Event: e, Nodes: slices.Clone(e.Nodes), Started: n.clock()}
	// ap is shared (n.applied) only once it is complete.
	defer func() {
		n.mu.Lock()
		n.applied = append(n.applied, ap)
		n.mu.Unlock()
	}()
	if e.Target == Leader || e.Target == LeaderGateways {
		leader, ok := n.cluster.Leader(ctx)
		if !ok {
			ap.Skipped = "no gateway leads"
			n.logf("#%d %s %s skipped: %s", e.N, e.Kind, e.Target, ap.Skipped)
			return
		}
		ap.Nodes = []string{leader.Name}
	}
	nodes := make([]*local.Node, 0, len(ap.Nodes))
	for _, name := range ap.Nodes {
		node, ok := n.cluster.Node(name)
		if !ok {
			ap.Error = "unknown node " + name
			return
		}
		nodes = append(nodes, node)
	}
	heal, err := n.apply(e.Kind, nodes, e.Target == LeaderGateways)
	if err != nil {
		ap.Error = err.Error()
		n.logf("#%d %s %v failed: %v", e.N, e.Kind, ap.Nodes, err)
		// Undo what was done before the failure.
		if heal != nil {
			if herr := heal(); herr != nil {
				ap.Error += "; undo: " + herr.Error()
			}
		}
		ap.Healed = n.clock()
		return
	}
	n.logf("#%d %s %s %v for %.2fs", e.N, e.Kind, e.Target, ap.Nodes, e.For.Seconds())
	n.mu.Lock()
	n.active[e.N] = &active{applied: ap, heal: heal, kind: e.Kind, nodes: slices.Clone(ap.Nodes)}
	n.mu.Unlock()
}

// apply starts a fault on nodes and returns how to heal it. On error, the
// returned heal (if any) undoes what was done.
// apply starts a fault on nodes; gatewaysOnly cuts a partition between
// nodes and the other gateways only.
func (n *Nemesis) apply(kind Kind, nodes []*local.Node, gatewaysOnly bool) (func() error, error) {
	switch kind {
	case Kill, ClusterKill:
		var killed []*local.Node
		heal := func() error { return startAll(killed) }
		for _, node := range nodes {
			if err := node.Kill(); err != nil {
				return heal, err
			}
			killed = append(killed, node)
		}
		return heal, nil
	case Stop:
		var stopped []*local.Node
		heal := func() error { return startAll(stopped) }
		for _, node := range nodes {
			stopped = append(stopped, node) // down even if its stop failed
			if err := stopGracefully(node); err != nil {
				return heal, err
			}
		}
		return heal, nil
	case Pause:
		var paused []*local.Node
		heal := func() error {
			var errs []error
			for _, node := range paused {
				if node.Running() {
					errs = append(errs, node.Resume())
				}
			}
			return errors.Join(errs...)
		}
		for _, node := range nodes {
			if err := node.Pause(); err != nil {
				return heal, err
			}
			paused = append(paused, node)
		}
		return heal, nil
	case Partition:
		if n.net == nil {
			return nil, errors.New("partitions are not available in this run")
		}
		var inside, outside []string
		for _, node := range n.cluster.Nodes() {
			switch {
			case slices.Contains(nodes, node):
				inside = append(inside, node.Name)
			case !gatewaysOnly || node.Role == local.Gateway:
				outside = append(outside, node.Name)
			}
		}
		if len(outside) == 0 {
			return nil, errors.New("a partition needs nodes on both sides")
		}
		id, err := n.net.Cut(inside, outside)
		if err != nil {
			return nil, err
		}
		return func() error { return n.net.Heal(id) }, nil
	case DiskFull:
		var filled []*diskfault.Disk
		heal := func() error {
			var errs []error
			for _, d := range filled {
				errs = append(errs, d.Unfill())
			}
			return errors.Join(errs...)
		}
		for _, node := range nodes {
			d, ok := n.disks[node.Name]
			if !ok {
				return heal, fmt.Errorf("%s has no small disk", node.Name)
			}
			filled = append(filled, d)
			if err := d.Fill(n.diskLeave); err != nil {
				return heal, err
			}
		}
		return heal, nil
	}
	return nil, fmt.Errorf("unknown fault kind %q", kind)
}

// stopLimit bounds a Stop fault's graceful stop of one node: a gateway's
// leadership hand-off and client drain (--drain-timeout, 5 s) fit well
// within it; a node still running then is killed, and the fault records
// the error.
const stopLimit = 15 * time.Second

// stopGracefully sends node SIGTERM once its process answers /healthz
// (waiting up to upLimit; a paused process is continued by Stop): a
// process just restarted by an earlier fault's heal may not have
// installed its signal handler yet, and would die of the signal instead
// of stopping.
func stopGracefully(node *local.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), upLimit)
	defer cancel()
	_ = poll.Until(ctx, upLimit, 50*time.Millisecond, node.Name+" up", func() (bool, error) {
		if !node.Running() {
			return false, poll.Abort(errors.New("not running"))
		}
		if node.Paused() {
			return true, nil // it runs, and Stop continues it
		}
		_, code, err := node.Get(ctx, "/healthz")
		return err == nil && code == 200, err
	})
	return node.Stop(stopLimit)
}

// upLimit bounds the wait for a process to answer before it is stopped.
const upLimit = 10 * time.Second

func startAll(nodes []*local.Node) error {
	var errs []error
	for _, node := range nodes {
		if !node.Running() {
			errs = append(errs, node.Start())
		}
	}
	return errors.Join(errs...)
}

// heal ends one fault that holds, then restarts any node that exited on
// its own (the exit is already on record in the cluster).
func (n *Nemesis) heal(event int) {
	n.mu.Lock()
	a, ok := n.active[event]
	delete(n.active, event)
	n.mu.Unlock()
	if !ok {
		return
	}
	err := a.heal()
	if err != nil {
		n.logf("#%d heal failed: %v", event, err)
	} else {
		n.logf("#%d %s %v healed", event, a.kind, a.nodes)
	}
	n.mu.Lock()
	if err != nil {
		a.applied.Error = err.Error()
	}
	a.applied.Healed = n.clock()
	n.mu.Unlock()
	n.restartCrashed()
}

// restartCrashed starts nodes that are down although no fault holds them.
func (n *Nemesis) restartCrashed() {
	held := make(map[string]bool)
	n.mu.Lock()
	for _, a := range n.active {
		if a.kind == Kill || a.kind == ClusterKill || a.kind == Stop {
			for _, name := range a.nodes {
				held[name] = true
			}
		}
	}
	n.mu.Unlock()
	for _, node := range n.cluster.Nodes() {
		if !held[node.Name] && !node.Running() {
			n.logf("%s is down with no fault holding it (it exited on its own); restarting it", node.Name)
			if err := node.Start(); err != nil {
				n.logf("restart %s: %v", node.Name, err)
			}
		}
	}
}

// HealAll ends every fault that holds, partitions and disks included, and
// restarts every node that is down.
func (n *Nemesis) HealAll() error {
	n.mu.Lock()
	var events []int
	for e := range n.active {
		events = append(events, e)
	}
	n.mu.Unlock()
	slices.Sort(events)
	for _, e := range events {
		n.heal(e)
	}
	var errs []error
	if n.net != nil {
		errs = append(errs, n.net.HealAll())
	}
	for _, d := range n.disks {
		errs = append(errs, d.Unfill())
	}
	for _, node := range n.cluster.Nodes() {
		if node.Paused() {
			errs = append(errs, node.Resume())
		}
	}
	n.restartCrashed()
	return errors.Join(errs...)
}

// Applied lists every fault the run started or skipped, in order.
func (n *Nemesis) Applied() []Applied {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Applied, len(n.applied))
	for i, a := range n.applied {
		out[i] = *a
	}
	return out
}
