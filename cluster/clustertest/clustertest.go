// Package clustertest runs the consensus actors of several gateways in one
// process, for fast tests of the Raft group: each gateway has its own actor
// system and protoactor remote endpoint on 127.0.0.1 (plaintext) and its
// own Raft log directory. A test can stop a gateway (its actor system goes
// away; its directory stays) and start it again, cut gateways off from
// each other, propose entries, ask for read barriers, and wait until the
// gateways agree. Faults between processes (SIGKILL, SIGSTOP, iptables
// partitions) are the e2e tests' and the fault suite's business.
package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/diskspace"
)

// Options configure a Cluster.
type Options struct {
	// Gateways is the size of the initial group.
	Gateways int
	// SnapshotEntries and CatchUpEntries are passed to every gateway (0:
	// the defaults).
	SnapshotEntries, CatchUpEntries uint64
	// LogLevel of the gateways' logs, written to the test's temp dir
	// (default: warn).
	LogLevel string
	// MinFreeBytes is every gateway's free-space watermark on its Raft
	// log's filesystem (0: no check). The free space a gateway sees is
	// what Node.SetDiskFree last set, 1 TiB until then.
	MinFreeBytes uint64
}

// Cluster is a group of in-process gateways.
type Cluster struct {
	t     testing.TB
	opts  Options
	dir   string
	Nodes map[uint64]*Node
	peers []consensus.Peer
}

// Node is one gateway: its consensus actor and what it reported.
type Node struct {
	ID      uint64
	Address string
	Dir     string
	// View is the gateway's state machine.
	View   *consensus.StateView
	Health *consensus.Health

	c       *Cluster
	join    bool
	node    *cluster.Node
	pid     *actor.PID
	probe   *actor.PID
	events  *events
	blocked *sync.Map // node addresses whose messages are dropped
	logFile *os.File
	free    atomic.Uint64 // the free space its disk guard sees
	// syncDelay is added to every fsync of its Raft log (nanoseconds).
	syncDelay atomic.Int64
}

// SetSyncDelay makes every fsync of the gateway's Raft log take d longer,
// from now on: a slow disk.
func (n *Node) SetSyncDelay(d time.Duration) { n.syncDelay.Store(int64(d)) }

// SetDiskFree sets the free space the gateway's disk guard sees on its Raft
// log's filesystem (with Options.MinFreeBytes set); the guard checks it
// every tick.
func (n *Node) SetDiskFree(bytes uint64) { n.free.Store(bytes) }

// New prepares and starts a group of opts.Gateways gateways.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	c := &Cluster{t: t, opts: opts, dir: t.TempDir(), Nodes: make(map[uint64]*Node)}
	for id := uint64(1); id <= uint64(opts.Gateways); id++ {
		c.peers = append(c.peers, consensus.Peer{ID: id, NodeAddress: freeAddr(t)})
	}
	for _, p := range c.peers {
		c.Nodes[p.ID] = c.newNode(p.ID, p.NodeAddress, false)
	}
	for _, p := range c.peers {
		c.Nodes[p.ID].Start()
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Stop()
		}
		if t.Failed() {
			c.dumpLogs()
		}
	})
	return c
}

// dumpLogs prints the end of every gateway's log (run after a failure).
func (c *Cluster) dumpLogs() {
	for id, n := range c.Nodes {
		data, err := os.ReadFile(n.Dir + ".log")
		if err != nil {
			continue
		}
		if len(data) > 8000 {
			data = data[len(data)-8000:]
		}
		c.t.Logf("---- gateway %d log tail ----\n%s", id, data)
	}
}

func (c *Cluster) newNode(id uint64, addr string, join bool) *Node {
	n := &Node{
		ID: id, Address: addr, Dir: filepath.Join(c.dir, fmt.Sprintf("gateway-%d", id)),
		c: c, join: join, blocked: &sync.Map{},
	}
	n.free.Store(1 << 40)
	return n
}

// AddNode prepares a gateway that joins the running group (it is not in
// the group until a change adds it) and starts it.
func (c *Cluster) AddNode(id uint64) *Node {
	c.t.Helper()
	n := c.newNode(id, freeAddr(c.t), true)
	c.Nodes[id] = n
	n.Start()
	return n
}

// Start starts the gateway on its directory (again).
func (n *Node) Start() {
	t := n.c.t
	t.Helper()
	if n.node != nil {
		t.Fatalf("gateway %d is running", n.ID)
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(n.Dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	log, err := cluster.NewLogger(logFile, n.c.opts.LogLevel)
	if err != nil {
		t.Fatal(err)
	}
	log = log.With().Uint64("gateway", n.ID).Logger()
	node, err := cluster.StartNode(cluster.NodeOptions{
		Role: "gateway", NodeAddress: n.Address, Insecure: true, Logger: log, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatalf("start gateway %d: %v", n.ID, err)
	}
	n.node, n.logFile = node, logFile
	n.View, n.Health, n.events = consensus.NewStateView(), &consensus.Health{}, newEvents()
	cfg := consensus.Config{
		ID: n.ID, NodeAddress: n.Address, Peers: n.c.peers, Join: n.join, Dir: filepath.Join(n.Dir, "raft"), Sync: true,
		SnapshotEntries: n.c.opts.SnapshotEntries, CatchUpEntries: n.c.opts.CatchUpEntries,
		View: n.View, Health: n.Health, Logger: log,
		MinFreeBytes: n.c.opts.MinFreeBytes,
		FS:           slowSyncFS{FS: vfs.Default, delay: &n.syncDelay},
		Statfs: func(string) (diskspace.Usage, error) {
			return diskspace.Usage{Free: n.free.Load(), Total: 1 << 41}, nil
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	props := actor.PropsFromProducer(consensus.New(cfg), actor.WithReceiverMiddleware(n.dropBlocked))
	pid, err := node.System.Root.SpawnNamed(props, messages.ConsensusActor)
	if err != nil {
		t.Fatalf("spawn consensus on gateway %d: %v", n.ID, err)
	}
	n.pid = pid
	n.probe = node.System.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probe{consensus: pid, events: n.events} }))
}

// Stop stops the gateway: its actor system and remote endpoint go away,
// its directory stays.
func (n *Node) Stop() {
	if n.node == nil {
		return
	}
	_ = n.node.System.Root.StopFuture(n.pid).Wait()
	n.node.Stop()
	n.node = nil
	_ = n.logFile.Close()
}

// Running reports whether the gateway runs.
func (n *Node) Running() bool { return n.node != nil }

// dropBlocked is a receiver middleware that drops the Raft messages of
// gateways this one is cut off from.
func (n *Node) dropBlocked(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
		if env.Sender != nil {
			if _, cut := n.blocked.Load(env.Sender.Address); cut {
				return
			}
		}
		next(ctx, env)
	}
}

// Partition cuts the group into the given sides: a gateway hears only the
// gateways of its own side. Gateways not named form a side of their own.
func (c *Cluster) Partition(sides ...[]uint64) {
	side := make(map[uint64]int)
	for i, s := range sides {
		for _, id := range s {
			side[id] = i + 1
		}
	}
	for _, a := range c.Nodes {
		a.blocked.Clear()
		for _, b := range c.Nodes {
			if a != b && side[a.ID] != side[b.ID] {
				a.blocked.Store(b.Address, true)
			}
		}
	}
}

// Heal undoes Partition.
func (c *Cluster) Heal() {
	for _, n := range c.Nodes {
		n.blocked.Clear()
	}
}

// Leader waits until exactly one running gateway is a ready leader that
// the given others (all running ones if none are given) follow, and
// returns it.
func (c *Cluster) Leader(among ...uint64) *Node {
	c.t.Helper()
	var leader *Node
	Eventually(c.t, 10*time.Second, "one ready leader", func() (bool, string) {
		leader = nil
		var view []string
		for _, n := range c.Nodes {
			if !n.Running() || (len(among) > 0 && !slices.Contains(among, n.ID)) {
				continue
			}
			lc := n.events.leader()
			view = append(view, fmt.Sprintf("%d: lead %d term %d ready %v", n.ID, lc.Lead, lc.Term, n.events.readyIn(lc.Term)))
			if lc.Local && n.events.readyIn(lc.Term) {
				if leader != nil {
					return false, "two leaders: " + fmt.Sprint(view)
				}
				leader = n
			}
		}
		if leader == nil {
			return false, fmt.Sprint(view)
		}
		for _, n := range c.Nodes {
			if n.Running() && (len(among) == 0 || slices.Contains(among, n.ID)) && n.events.leader().Lead != leader.ID {
				return false, fmt.Sprint(view)
			}
		}
		return true, ""
	})
	return leader
}

// Propose sends entries to the gateway's consensus actor, as its leader
// actor would; the outcome shows in the gateways' states.
func (n *Node) Propose(entries ...*messages.LogEntry) {
	n.node.System.Root.RequestWithCustomSender(n.pid, &consensus.Propose{Entries: entries}, n.probe)
}

// Dropped returns the proposals this gateway refused so far.
func (n *Node) Dropped() int { return n.events.droppedCount() }

// Barrier asks the gateway for a read barrier and waits for its answer:
// nil when it is done, an error when it failed or no answer came in time.
func (n *Node) Barrier(timeout time.Duration) error {
	id, ch := n.events.newBarrier()
	n.node.System.Root.RequestWithCustomSender(n.pid, &consensus.ReadBarrier{ID: id}, n.probe)
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("barrier %d: no answer in %v", id, timeout)
	}
}

// Send sends msg to the gateway's consensus actor, expecting no answer.
func (n *Node) Send(msg any) { n.node.System.Root.Send(n.pid, msg) }

// Request sends msg to the gateway's consensus actor and waits for the
// answer.
func (n *Node) Request(msg any, timeout time.Duration) (any, error) {
	return n.node.System.Root.RequestFuture(n.pid, msg, timeout).Result()
}

// Status returns the gateway's consensus status.
func (n *Node) Status() *consensus.Status {
	res, err := n.Request(&consensus.StatusRequest{}, 5*time.Second)
	if err != nil {
		n.c.t.Fatalf("status of gateway %d: %v", n.ID, err)
	}
	return res.(*consensus.Status)
}

// Read calls f with the gateway's state.
func (n *Node) Read(f func(*meta.State)) { n.View.Read(f) }

// LeaderChanges returns every LeaderChanged the gateway reported.
func (n *Node) LeaderChanges() []consensus.LeaderChanged { return n.events.leaderChanges() }

// Applied returns how many client entries the gateway reported applied.
func (n *Node) Applied() int { return n.events.appliedCount() }

// Eventually polls cond until it holds, and fails the test with cond's
// last status if that takes longer than limit.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	poll.Eventually(t, limit, 10*time.Millisecond, what, cond)
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago,
// below Linux's ephemeral range (32768 and up), so that outgoing
// connections do not take it while a stopped gateway is down.
func freeAddr(t testing.TB) string {
	const low, high = 20000, 32000
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(low+rand.IntN(high-low)))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port found")
	return ""
}
