package consensus_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/cluster/clustertest"
	"github.com/tolerex/tolerex/messages"
)

// Each test runs a group of gateways in this process (cluster/clustertest):
// real consensus actors, Raft logs on disk and protoactor remote on
// 127.0.0.1, with stops, restarts and partitions.

func member(id string) *messages.LogEntry {
	return &messages.LogEntry{Entry: &messages.LogEntry_Member{Member: &messages.MemberEntry{MemberId: id, NodeAddress: "node-" + id}}}
}

func put(id int64, version uint64) *messages.LogEntry {
	return &messages.LogEntry{
		Entry:   &messages.LogEntry_Put{Put: &messages.PutEntry{Id: id, Version: version, Replicas: []uint32{0}, Size: uint32(id)}},
		Request: &messages.RequestId{Origin: 99, Seq: uint64(id)},
	}
}

// dump is what the tests compare between gateways.
type dump struct {
	Messages int
	Members  []meta.Member
	Gateways []meta.Gateway
	Index    map[int64]uint64
}

func dumpOf(n *clustertest.Node, ids int64) dump {
	var d dump
	n.Read(func(s *meta.State) {
		d.Messages, d.Members, d.Gateways, d.Index = s.Len(), s.Members(), s.Gateways(), make(map[int64]uint64)
		for id := int64(0); id < ids; id++ {
			if v, _, ok := s.Lookup(id); ok {
				d.Index[id] = v
			}
		}
	})
	return d
}

// converged waits until every running gateway holds want messages and all
// hold the same state.
func converged(t *testing.T, c *clustertest.Cluster, want int, ids int64) {
	t.Helper()
	clustertest.Eventually(t, 15*time.Second, fmt.Sprintf("every gateway holds %d messages, the same", want), func() (bool, string) {
		var first *dump
		status := ""
		for id, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			d := dumpOf(n, ids)
			status += fmt.Sprintf(" gateway %d: %d messages;", id, d.Messages)
			if d.Messages != want {
				return false, status
			}
			if first == nil {
				first = &d
			} else if !reflect.DeepEqual(*first, d) {
				return false, status + " states differ"
			}
		}
		return true, ""
	})
}

// proposeAll proposes puts of ids [from, to) at the leader, in batches
// of 50 (which become one Raft entry each), after registering member m0
// (the puts name its slot 0).
func proposeAll(leader *clustertest.Node, from, to int64) {
	proposeBatches(leader, from, to, 50)
}

// proposeBatches proposes puts of ids [from, to) in batches of size.
func proposeBatches(leader *clustertest.Node, from, to, size int64) {
	leader.Propose(member("m0"))
	for id := from; id < to; id += size {
		var batch []*messages.LogEntry
		for i := id; i < min(id+size, to); i++ {
			batch = append(batch, put(i, uint64(i)+1))
		}
		leader.Propose(batch...)
	}
}

func TestGroupElectsOneLeaderAndEveryGatewayApplies(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	leader := c.Leader()
	proposeAll(leader, 0, 300)
	converged(t, c, 300, 300)
	for _, n := range c.Nodes {
		if got := dumpOf(n, 0).Gateways; len(got) != 3 {
			t.Errorf("gateway %d knows gateways %v, want all three", n.ID, got)
		}
	}
	// A follower refuses proposals; they come back as dropped.
	for _, n := range c.Nodes {
		if n != leader {
			n.Propose(put(1000, 1))
			clustertest.Eventually(t, 5*time.Second, "follower drops the proposal", func() (bool, string) {
				return n.Dropped() == 1, fmt.Sprintf("%d dropped", n.Dropped())
			})
			break
		}
	}
}

func TestLeaderStoppedAnotherTakesOverAndItCatchesUp(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	old := c.Leader()
	proposeAll(old, 0, 100)
	converged(t, c, 100, 400)
	old.Stop()
	stopped := time.Now()
	leader := c.Leader()
	t.Logf("new leader %d ready %v after the old leader stopped", leader.ID, time.Since(stopped).Round(time.Millisecond))
	if leader == old {
		t.Fatal("the stopped gateway still leads")
	}
	for id := int64(100); id < 200; id++ {
		leader.Propose(put(id, uint64(id)+1))
	}
	converged(t, c, 200, 400)
	old.Start()
	converged(t, c, 200, 400)
}

func TestPartitionedLeaderStepsDownAndReadsFail(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	old := c.Leader()
	proposeAll(old, 0, 10)
	converged(t, c, 10, 100)
	if err := old.Barrier(5 * time.Second); err != nil {
		t.Fatalf("read barrier on the leader: %v", err)
	}
	var others []uint64
	for id := range c.Nodes {
		if id != old.ID {
			others = append(others, id)
		}
	}
	c.Partition([]uint64{old.ID}, others)
	cut := time.Now()
	// CheckQuorum: the cut-off leader steps down within an election
	// timeout or so, and the majority elects another.
	clustertest.Eventually(t, 5*time.Second, "the cut-off leader steps down", func() (bool, string) {
		changes := old.LeaderChanges()
		last := changes[len(changes)-1]
		return !last.Local, fmt.Sprintf("last change %+v", last)
	})
	t.Logf("cut-off leader stepped down %v after the partition", time.Since(cut).Round(time.Millisecond))
	if err := old.Barrier(2 * time.Second); err == nil {
		t.Error("a read barrier on the cut-off gateway succeeded")
	}
	leader := c.Leader(others...)
	if err := leader.Barrier(5 * time.Second); err != nil {
		t.Fatalf("read barrier on the new leader: %v", err)
	}
	for id := int64(10); id < 20; id++ {
		leader.Propose(put(id, uint64(id)+1))
	}
	c.Heal()
	converged(t, c, 20, 100)
	c.Leader()
}

func TestLaggingGatewayCatchesUpFromASnapshot(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3, SnapshotEntries: 100, CatchUpEntries: 10})
	leader := c.Leader()
	var lagging *clustertest.Node
	for _, n := range c.Nodes {
		if n != leader {
			lagging = n
			break
		}
	}
	lagging.Stop()
	proposeBatches(leader, 0, 1000, 1) // a Raft entry each: ten snapshots' worth
	converged(t, c, 1000, 1000)
	// Snapshots are taken off the actor's goroutine: wait for one.
	clustertest.Eventually(t, 5*time.Second, "the leader takes a snapshot", func() (bool, string) {
		st := leader.Status()
		return st.SnapshotIndex > 0, fmt.Sprintf("the leader took no snapshot: %+v", st)
	})
	lagging.Start()
	converged(t, c, 1000, 1000)
}

// TestLearnerNotRunningIsNotPromoted: a learner that never answered the
// leader is not caught up, however short the log: promoting it would add a
// voter that is down, and with it the quorum would need one more gateway.
func TestLearnerNotRunningIsNotPromoted(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	leader := c.Leader()
	proposeAll(leader, 0, 5) // a log far shorter than the promotion lag
	converged(t, c, 5, 5)
	res, err := leader.Request(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, Id: 4, NodeAddress: "127.0.0.1:1"}, 5*time.Second)
	if r, _ := res.(*messages.GatewayChangeReply); err != nil || r.GetError() != "" {
		t.Fatalf("add learner 4 (nothing runs at its address): %+v, %v", res, err)
	}
	clustertest.Eventually(t, 10*time.Second, "gateway 4 a learner", func() (bool, string) {
		st := leader.Status()
		return slices.ContainsFunc(st.Gateways, func(g consensus.GatewayStatus) bool { return g.ID == 4 && g.Role == "learner" }), fmt.Sprintf("%+v", st.Gateways)
	})
	deadline := time.Now().Add(2 * time.Second)
	clustertest.Eventually(t, 10*time.Second, "2 s of refused promotions", func() (bool, string) {
		res, err := leader.Request(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_PROMOTE, Id: 4}, 5*time.Second)
		r, _ := res.(*messages.GatewayChangeReply)
		switch {
		case err != nil:
			return false, err.Error()
		case r.GetError() == "":
			t.Fatalf("gateway 4, which never answered the leader, was promoted to voter")
		case !r.GetRetry() || !strings.Contains(r.GetError(), "not caught up"):
			t.Fatalf("promoting gateway 4: %+v; want a retry saying it has not caught up", r)
		}
		return time.Now().After(deadline), r.GetError()
	})
}

func TestGatewayAddedAsLearnerPromotedAndRemoved(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	leader := c.Leader()
	proposeAll(leader, 0, 50)
	converged(t, c, 50, 50)

	four := c.AddNode(4)
	change := func(n *clustertest.Node, kind messages.GatewayChangeKind, id uint64, addr string) *messages.GatewayChangeReply {
		res, err := n.Request(&messages.GatewayChange{Kind: kind, Id: id, NodeAddress: addr}, 5*time.Second)
		if err != nil {
			t.Fatalf("request change: %v", err)
		}
		return res.(*messages.GatewayChangeReply)
	}
	if r := change(leader, messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, 4, four.Address); r.GetError() != "" {
		t.Fatalf("add learner: %v", r.GetError())
	}
	converged(t, c, 50, 50)
	if r := change(leader, messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, 4, four.Address); r.GetError() == "" || r.GetRetry() {
		t.Errorf("adding gateway 4 twice: %+v; want a definite error", r)
	}
	for _, n := range c.Nodes {
		if n != leader && n.ID != 4 {
			if r := change(n, messages.GatewayChangeKind_GATEWAY_PROMOTE, 4, ""); !r.GetRetry() || r.GetLeader() != leader.Address {
				t.Errorf("a follower asked to promote: %+v; want retry, naming the leader %s", r, leader.Address)
			}
			break
		}
	}
	clustertest.Eventually(t, 10*time.Second, "gateway 4 promoted", func() (bool, string) {
		r := change(leader, messages.GatewayChangeKind_GATEWAY_PROMOTE, 4, "")
		return r.GetError() == "", r.GetError()
	})
	clustertest.Eventually(t, 10*time.Second, "gateway 4 a voter everywhere", func() (bool, string) {
		for _, n := range c.Nodes {
			for _, g := range n.Status().Gateways {
				if g.ID == 4 && g.Role != "voter" {
					return false, fmt.Sprintf("gateway %d sees 4 as %s", n.ID, g.Role)
				}
			}
		}
		return true, ""
	})
	// Remove the leader: it hands leadership over first.
	old := leader
	if r := change(old, messages.GatewayChangeKind_GATEWAY_REMOVE, old.ID, ""); !r.GetRetry() {
		t.Fatalf("removing the leader: %+v; want retry while leadership moves", r)
	}
	clustertest.Eventually(t, 10*time.Second, "old leader removed", func() (bool, string) {
		now := c.Leader()
		r := change(now, messages.GatewayChangeKind_GATEWAY_REMOVE, old.ID, "")
		return r.GetError() == "", r.GetError()
	})
	old.Stop()
	delete(c.Nodes, old.ID)
	leader = c.Leader()
	for id := int64(50); id < 60; id++ {
		leader.Propose(put(id, uint64(id)+1))
	}
	converged(t, c, 60, 60)
	for _, n := range c.Nodes {
		if got := len(dumpOf(n, 0).Gateways); got != 3 {
			t.Errorf("gateway %d knows %d gateways, want 3", n.ID, got)
		}
	}
}

// TestSteppedAsideGatewayHandsOverWheneverItLeads: a leader told to step
// aside (its gateway's leader actor stopped for good) hands its leadership
// to another gateway, and when leadership is transferred back to it, it
// hands it over again at once, while it goes on applying the log.
func TestSteppedAsideGatewayHandsOverWheneverItLeads(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	aside := c.Leader()
	proposeAll(aside, 0, 50)
	converged(t, c, 50, 200)

	aside.Send(&consensus.StepAside{Reason: "the test's coordinator stopped"})
	var rest []uint64
	for id := range c.Nodes {
		if id != aside.ID {
			rest = append(rest, id)
		}
	}
	next := c.Leader(rest...)
	notLeading(t, c, aside, next)

	// Hand the leadership back to it: it takes it, then passes it on.
	leader := handBackAndPassOn(t, c, next, aside, rest)
	for id := int64(50); id < 100; id++ {
		leader.Propose(put(id, uint64(id)+1))
	}
	converged(t, c, 100, 200)
}

// handBackAndPassOn transfers the leadership from leader to aside, a
// gateway that must not lead, waits until aside won it, then until one of
// rest leads and every gateway follows it; it returns that leader.
func handBackAndPassOn(t *testing.T, c *clustertest.Cluster, leader, aside *clustertest.Node, rest []uint64) *clustertest.Node {
	t.Helper()
	won := len(aside.LeaderChanges())
	if _, err := leader.Request(&consensus.TransferLeadership{To: aside.ID}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 10*time.Second, fmt.Sprintf("gateway %d to win the transfer", aside.ID), func() (bool, string) {
		for _, lc := range aside.LeaderChanges()[won:] {
			if lc.Local {
				return true, ""
			}
		}
		return false, fmt.Sprint(aside.LeaderChanges()[won:])
	})
	next := c.Leader(rest...)
	notLeading(t, c, aside, next)
	return next
}

// notLeading checks that every gateway follows leader, which is not aside.
func notLeading(t *testing.T, c *clustertest.Cluster, aside, leader *clustertest.Node) {
	t.Helper()
	clustertest.Eventually(t, 10*time.Second, "every gateway to follow the new leader", func() (bool, string) {
		var view string
		for _, n := range c.Nodes {
			st := n.Status()
			view += fmt.Sprintf(" %d: %s lead %d;", n.ID, st.State, st.Lead)
			if st.Lead != leader.ID || (n == aside && st.State == "leader") {
				return false, view
			}
		}
		return true, ""
	})
}

// TestDiskFullGatewayHandsOverWheneverItLeads: a gateway whose Raft log's
// disk fills while it leads hands its leadership over, and it does so
// again whenever it leads later while still full: here a transfer makes it
// leader again (its log is current, as no entry came since it filled).
// Once space is back it takes entries again and catches up.
func TestDiskFullGatewayHandsOverWheneverItLeads(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3, MinFreeBytes: 1 << 20})
	full := c.Leader()
	proposeAll(full, 0, 50)
	converged(t, c, 50, 200)

	full.SetDiskFree(1 << 10)
	var rest []uint64
	for id := range c.Nodes {
		if id != full.ID {
			rest = append(rest, id)
		}
	}
	next := c.Leader(rest...)
	notLeading(t, c, full, next)
	if err := full.Health.NotReady(); err == nil || !strings.HasPrefix(err.Error(), "disk full: ") {
		t.Fatalf("full gateway's health: %v, want disk full", err)
	}

	// Its log holds every entry but the new leader's empty one, which it
	// ignored; a transfer to it waits for it to catch up, so give it that
	// one entry with space for a moment, then fill the disk again.
	full.SetDiskFree(1 << 40)
	clustertest.Eventually(t, 10*time.Second, "the full gateway to catch up once it has space", func() (bool, string) {
		st, lead := full.Status(), next.Status()
		return full.Health.NotReady() == nil && st.Applied == lead.Applied, fmt.Sprintf("applied %d of %d", st.Applied, lead.Applied)
	})
	full.SetDiskFree(1 << 10)
	clustertest.Eventually(t, 5*time.Second, "the gateway's disk to be full again", func() (bool, string) {
		err := full.Health.NotReady()
		return err != nil, fmt.Sprint(err)
	})
	leader := handBackAndPassOn(t, c, next, full, rest)

	full.SetDiskFree(1 << 40)
	for id := int64(50); id < 100; id++ {
		leader.Propose(put(id, uint64(id)+1))
	}
	converged(t, c, 100, 200)
}

// TestSlowFsyncDoesNotStarveTicks: the Raft log is written and fsync'd by
// its own goroutine, so a disk whose fsyncs take 400 ms (most of the 500 ms
// election timeout) does not hold up the consensus actor. The leader and a
// follower on such disks keep ticking every 50 ms and answering
// heartbeats: no gateway starts an election, the leader keeps leading, and
// writes commit at the disk's pace.
func TestSlowFsyncDoesNotStarveTicks(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	leader := c.Leader()
	proposeAll(leader, 0, 10)
	converged(t, c, 10, 100)
	var follower *clustertest.Node
	changes := map[uint64]int{}
	for id, n := range c.Nodes {
		changes[id] = len(n.LeaderChanges())
		if id != leader.ID && follower == nil {
			follower = n
		}
	}

	const delay = 400 * time.Millisecond
	leader.SetSyncDelay(delay)
	follower.SetSyncDelay(delay)
	ticksBefore := map[uint64]uint64{leader.ID: leader.Status().Ticks, follower.ID: follower.Status().Ticks}
	start := time.Now()
	for id := int64(10); id < 18; id++ {
		leader.Propose(put(id, uint64(id)+1))
		converged(t, c, int(id)+1, 100)
	}
	elapsed := time.Since(start)
	leader.SetSyncDelay(0)
	follower.SetSyncDelay(0)

	if elapsed < 8*delay {
		t.Fatalf("8 writes took %v; each should have waited for a %v fsync", elapsed, delay)
	}
	want := uint64(elapsed / consensus.DefaultTickInterval)
	for _, n := range []*clustertest.Node{leader, follower} {
		got := n.Status().Ticks - ticksBefore[n.ID]
		t.Logf("gateway %d: %d ticks in %v (%d due)", n.ID, got, elapsed.Round(time.Millisecond), want)
		if got < want*8/10 {
			t.Errorf("gateway %d took %d ticks in %v; want at least %d of the %d due", n.ID, got, elapsed, want*8/10, want)
		}
	}
	for id, n := range c.Nodes {
		if got := n.LeaderChanges()[changes[id]:]; len(got) != 0 {
			t.Errorf("gateway %d saw leadership change while fsyncs were slow: %v", id, got)
		}
	}
}

// TestRemovedGatewayLeavesTheGroup: a follower removed from the group while
// cut off from it never receives its removal; once it can talk to the
// others again they drop its Raft messages and tell it, and it stops taking
// part and says why. Its id cannot be added again. Started again on its
// data while the leader is gone, it is told again and does not lead the
// voter that is left.
func TestRemovedGatewayLeavesTheGroup(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Gateways: 3})
	leader := c.Leader()
	proposeAll(leader, 0, 50)
	converged(t, c, 50, 50)
	var removed, voter *clustertest.Node
	for _, n := range c.Nodes {
		switch {
		case n == leader:
		case removed == nil:
			removed = n
		default:
			voter = n
		}
	}
	c.Partition([]uint64{removed.ID}, []uint64{leader.ID, voter.ID})
	res, err := leader.Request(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_REMOVE, Id: removed.ID}, 5*time.Second)
	if err != nil || res.(*messages.GatewayChangeReply).GetError() != "" {
		t.Fatalf("remove gateway %d: %v %v", removed.ID, res, err)
	}
	clustertest.Eventually(t, 10*time.Second, "gateway removed", func() (bool, string) {
		st := voter.Status()
		return len(st.Gateways) == 2, fmt.Sprintf("%+v", st.Gateways)
	})
	saysRemoved := func() (bool, string) {
		err := removed.Health.NotReady()
		return err != nil && strings.Contains(err.Error(), "applied the removal and drops"), fmt.Sprint(err)
	}
	c.Heal()
	clustertest.Eventually(t, 10*time.Second, "the removed gateway says it was removed", saysRemoved)
	t.Logf("gateway %d: %v", removed.ID, removed.Health.NotReady())
	if st := removed.Status(); st.State != "" {
		t.Errorf("the removed gateway still runs Raft: %+v", st)
	}

	res, err = leader.Request(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, Id: removed.ID, NodeAddress: "127.0.0.1:1"}, 5*time.Second)
	if r, _ := res.(*messages.GatewayChangeReply); err != nil || r.GetRetry() || !strings.Contains(r.GetError(), "never joins again") {
		t.Errorf("adding removed gateway %d again: %+v, %v; want a definite refusal", removed.ID, res, err)
	}
	// Asked itself (its admin API asks its own consensus actor first), the
	// removed gateway refuses at once and says why.
	asked := time.Now()
	res, err = removed.Request(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, Id: 9, NodeAddress: "127.0.0.1:1"}, 5*time.Second)
	if r, _ := res.(*messages.GatewayChangeReply); err != nil || r.GetRetry() || !strings.Contains(r.GetError(), "removed from the Raft group") {
		t.Errorf("a group change asked of the removed gateway: %+v, %v after %v; want a definite refusal saying it was removed", res, err, time.Since(asked))
	}

	// The removed gateway is started again on its data, while the leader
	// is gone: it must not lead the voter that is left.
	leader.Stop()
	removed.Stop()
	removed.Start()
	deadline := time.Now().Add(3 * time.Second)
	clustertest.Eventually(t, 10*time.Second, "3 s without the removed gateway leading", func() (bool, string) {
		st := removed.Status()
		if st.State == "leader" || voter.Status().Lead == removed.ID {
			t.Fatalf("removed gateway %d leads (voter %d: %+v)", removed.ID, voter.ID, voter.Status())
		}
		return time.Now().After(deadline), fmt.Sprintf("removed: %+v", st)
	})
	clustertest.Eventually(t, 10*time.Second, "the restarted removed gateway says it was removed", saysRemoved)
}
