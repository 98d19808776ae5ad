package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/e2e/chaos/netfault"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// The gateways' Raft group (issue 9): three gateways and three members as
// real processes, clients on every gateway, and the leader killed,
// stopped, cut off; followers restarted, with and without their data; all
// gateways killed at once. After each, every write acknowledged OK reads
// back the same through every gateway, no write answered with a definite
// error reads back, and the gateways agree.

// raftGroup starts a group of gateways and members (tolerance 2) and waits
// until it is healthy. Nodes get group ids of their own when the test
// runs as root, for partitions.
func raftGroup(t *testing.T, gateways, members int, gatewayArgs ...string) *local.Cluster {
	t.Helper()
	c := newRaftGroup(t, gateways, members, gatewayArgs...)
	startRaftGroup(t, c)
	return c
}

// newRaftGroup is raftGroup before its processes start.
func newRaftGroup(t *testing.T, gateways, members int, gatewayArgs ...string) *local.Cluster {
	t.Helper()
	cfg := local.Config{
		Binary: bin, Dir: t.TempDir(), Gateways: gateways, Members: members, Tolerance: 2,
		LogLevel: "debug", GatewayArgs: gatewayArgs,
		NoPrompt: true, GatewayGroupArgs: local.RaftGroup, Addrs: ports,
	}
	if netfault.Available() == nil {
		cfg.GIDBase = uint32(200000 + (os.Getpid()%100000)*16)
	}
	c, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.KillAll()
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("---- %s log tail ----\n%s", n.Name, n.LogTail(5000))
			}
			if keep := os.Getenv("TOLEREX_E2E_LOGS"); keep != "" {
				dir := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
				if err := c.CopyLogs(dir); err != nil {
					t.Logf("copy logs: %v", err)
				}
			}
		}
	})
	return c
}

// startRaftGroup starts the processes of newRaftGroup and waits until the
// group is healthy.
func startRaftGroup(t *testing.T, c *local.Cluster) {
	t.Helper()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// raftStatus is a gateway's /api/raft, or an error if it does not answer.
func raftStatus(n *local.Node) (consensus.Status, error) {
	var st consensus.Status
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := n.GetJSON(ctx, "/api/raft", &st)
	return st, err
}

// raftLeader waits until one of the given gateways leads, ready, and every
// other of them follows it, and returns it.
func raftLeader(t *testing.T, gateways []*local.Node, limit time.Duration) *local.Node {
	t.Helper()
	var leader *local.Node
	Eventually(t, limit, "one gateway leads, the others follow", func() (bool, string) {
		leader = nil
		var view []string
		var lead uint64
		for _, g := range gateways {
			st, err := raftStatus(g)
			if err != nil {
				return false, g.Name + ": " + err.Error()
			}
			view = append(view, fmt.Sprintf("%s: %s lead %d term %d", g.Name, st.State, st.Lead, st.Term))
			if lead == 0 {
				lead = st.Lead
			}
			if st.Lead == 0 || st.Lead != lead {
				return false, strings.Join(view, "; ")
			}
			if st.State == "leader" && st.LeadershipReady {
				leader = g
			}
		}
		return leader != nil, strings.Join(view, "; ")
	})
	return leader
}

// others returns the gateways but one.
func others(gateways []*local.Node, but *local.Node) []*local.Node {
	var out []*local.Node
	for _, g := range gateways {
		if g != but {
			out = append(out, g)
		}
	}
	return out
}

// writeLoad runs one writer per gateway given, each SETting fresh ids on
// its own connection (reconnecting after a broken one) until stopped, and
// records every outcome.
type writeLoad struct {
	mu      sync.Mutex
	acked   map[int64]string
	refused map[int64]string // definite errors
	unknown map[int64]string // indeterminate: an error, a timeout, a broken connection
	okTimes []time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startWriteLoad(t *testing.T, addrs []string, firstID int64) *writeLoad {
	w := &writeLoad{acked: map[int64]string{}, refused: map[int64]string{}, unknown: map[int64]string{}, stop: make(chan struct{})}
	for i, addr := range addrs {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			id := firstID + int64(i)*10_000_000
			var cl *client.Client
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				if cl == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					c, err := client.Dial(ctx, addr, client.Options{DialTimeout: time.Second, IOTimeout: 15 * time.Second})
					cancel()
					if err != nil {
						time.Sleep(50 * time.Millisecond) // the gateway is down; try again
						continue
					}
					cl = c
				}
				value := fmt.Sprintf("w%d-%d", i, id)
				err := cl.Set(id, []byte(value))
				w.record(id, value, err)
				var se *client.ServerError
				switch {
				case err != nil && !errors.As(err, &se):
					cl.Close()
					cl = nil
				case err != nil:
					// Refused: back off as a client would, rather than
					// piling up refused ids that verify reads back one by
					// one (a removed gateway refuses at once).
					time.Sleep(10 * time.Millisecond)
				}
				id++
			}
		}()
	}
	return w
}

func (w *writeLoad) record(id int64, value string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var se *client.ServerError
	switch {
	case err == nil:
		w.acked[id] = value
		w.okTimes = append(w.okTimes, time.Now())
	case errors.As(err, &se) && codec.ClassifyError(se.Error()) == codec.Definite:
		w.refused[id] = se.Error()
	default:
		w.unknown[id] = err.Error()
	}
}

// oks is the number of acknowledged writes so far.
func (w *writeLoad) oks() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.okTimes)
}

// answered is the number of writes answered so far, whatever the outcome.
func (w *writeLoad) answered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked) + len(w.refused) + len(w.unknown)
}

// acknowledgedBetween is the number of writes acknowledged in [from, to).
func (w *writeLoad) acknowledgedBetween(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.okTimes {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// finish stops the writers.
func (w *writeLoad) finish() {
	close(w.stop)
	w.wg.Wait()
}

// longestGapAfter is the longest time without an acknowledged write from
// since on, and how long after since the first write was acknowledged.
func (w *writeLoad) longestGapAfter(since time.Time) (gap, first time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := since
	first = -1
	for _, at := range w.okTimes {
		if at.Before(since) {
			continue
		}
		if first < 0 {
			first = at.Sub(since)
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap, first
}

// waitOKs waits for n more acknowledged writes.
func (w *writeLoad) waitOKs(t *testing.T, n int) {
	t.Helper()
	target := w.oks() + n
	Eventually(t, 30*time.Second, fmt.Sprintf("%d acknowledged writes", target), func() (bool, string) {
		return w.oks() >= target, fmt.Sprintf("%d so far", w.oks())
	})
}

// verify reads every outcome back through each given gateway.
func (w *writeLoad) verify(t *testing.T, gateways []*local.Node) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("writes: %d acknowledged, %d refused (definite), %d unknown", len(w.acked), len(w.refused), len(w.unknown))
	for _, g := range gateways {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl, err := client.Dial(ctx, g.ClientAddr, client.Options{DialTimeout: 2 * time.Second, IOTimeout: 30 * time.Second})
		cancel()
		if err != nil {
			t.Fatalf("dial %s: %v", g.Name, err)
		}
		bad := 0
		for id, want := range w.acked {
			got, found, err := cl.Get(id)
			if err != nil || !found || string(got) != want {
				if bad++; bad <= 5 {
					t.Errorf("through %s: GET %d = %q found=%v err=%v, want %q (acknowledged)", g.Name, id, got, found, err, want)
				}
			}
		}
		for id, reply := range w.refused {
			if got, found, err := cl.Get(id); err != nil || found {
				if bad++; bad <= 5 {
					t.Errorf("through %s: GET %d = %q found=%v err=%v; the SET was refused (%s)", g.Name, id, got, found, err, reply)
				}
			}
		}
		cl.Close()
		if bad > 0 {
			t.Fatalf("through %s: %d reads wrong", g.Name, bad)
		}
	}
}

// waitConverged waits until every given gateway applied the same index
// as the leader committed.
func waitConverged(t *testing.T, gateways []*local.Node) {
	t.Helper()
	Eventually(t, 20*time.Second, "gateways applied the same log", func() (bool, string) {
		var applied []uint64
		for _, g := range gateways {
			st, err := raftStatus(g)
			if err != nil {
				return false, err.Error()
			}
			applied = append(applied, st.Applied)
		}
		return slices.Min(applied) == slices.Max(applied), fmt.Sprint(applied)
	})
}

func clientAddrs(gateways []*local.Node) []string {
	var out []string
	for _, g := range gateways {
		out = append(out, g.ClientAddr)
	}
	return out
}

// groupWritingThroughFollowers starts 3 gateways and 3 members, finds the
// leader and writes through the two other gateways until 200 writes are
// acknowledged.
func groupWritingThroughFollowers(t *testing.T) (c *local.Cluster, leader *local.Node, followers []*local.Node, load *writeLoad) {
	t.Helper()
	c = raftGroup(t, 3, 3)
	leader = raftLeader(t, c.Gateways, 10*time.Second)
	followers = others(c.Gateways, leader)
	load = startWriteLoad(t, clientAddrs(followers), 1)
	load.waitOKs(t, 200)
	return c, leader, followers, load
}

// membersRehomed waits until every member heartbeats to the gateway lead
// (as each member reports: the gateway that last acknowledged its
// heartbeat as the leader, issue 9, item 3) and returns when it saw that.
// A member that takes longer than 3 s fails the test: it would be
// declared down (2 s without a heartbeat) and refused writes meanwhile.
// The members are asked, not the leader: right after a gateway died,
// /api/cluster waits up to a second for that gateway's own report.
func membersRehomed(t *testing.T, members []*local.Node, lead *local.Node, since time.Time) time.Time {
	t.Helper()
	Eventually(t, 10*time.Second, "every member heartbeating to "+lead.Name, func() (bool, string) {
		for _, m := range members {
			var st struct {
				Gateway string `json:"gateway"`
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := m.GetJSON(ctx, "/api/cluster", &st)
			cancel()
			if err != nil || st.Gateway != lead.NodeAddr {
				return false, fmt.Sprintf("%s heartbeats to %q (%v)", m.Name, st.Gateway, err)
			}
		}
		return true, ""
	})
	at := time.Now()
	if took := at.Sub(since); took > 3*time.Second {
		t.Errorf("the members took %v to heartbeat to the new leader %s", took.Round(time.Millisecond), lead.Name)
	}
	return at
}

func TestRaftLeaderKilled(t *testing.T) {
	c, leader, survivors, load := groupWritingThroughFollowers(t)
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// An operator looks now: a survivor's /api/cluster waits for the dead
	// leader's liveness figures and its report side by side, a second at
	// most each (operations.md).
	var view struct {
		LivenessFrom  string `json:"liveness_from"`
		LivenessError string `json:"liveness_error"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := survivors[0].GetJSON(ctx, "/api/cluster", &view)
	cancel()
	took := time.Since(killed)
	t.Logf("%s's /api/cluster right after the kill: answered in %v (liveness from %q, error %q)",
		survivors[0].Name, took.Round(time.Millisecond), view.LivenessFrom, view.LivenessError)
	if err != nil || took > 1800*time.Millisecond {
		t.Errorf("%s's /api/cluster right after the leader was killed: %v after %v, want an answer within two waits of a second run side by side",
			survivors[0].Name, err, took.Round(time.Millisecond))
	}
	next := raftLeader(t, survivors, 10*time.Second)
	seen := time.Now()
	rehomed := membersRehomed(t, c.Members, next, seen)
	t.Logf("every member heartbeating to the new leader %v after it was seen leading (%v after the kill)",
		rehomed.Sub(seen).Round(time.Millisecond), rehomed.Sub(killed).Round(time.Millisecond))
	load.waitOKs(t, 300)
	gap, first := load.longestGapAfter(killed)
	t.Logf("leader %s killed: first write acknowledged %v later (through the survivors), longest gap %v; %s leads now",
		leader.Name, first.Round(time.Millisecond), gap.Round(time.Millisecond), next.Name)
	if gap > 5*time.Second {
		t.Errorf("writes stopped for %v after the leader was killed", gap)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 100)
	load.finish()
	waitConverged(t, c.Gateways)
	load.verify(t, c.Gateways)
}

func TestRaftLeaderStoppedHandsOff(t *testing.T) {
	_, leader, survivors, load := groupWritingThroughFollowers(t)
	stopped := time.Now()
	if err := leader.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 300)
	gap, _ := load.longestGapAfter(stopped)
	line := grepLines(leader.LogTail(200_000), "leadership handed off before stopping")
	m := regexp.MustCompile(`"handed_off":true,"took":([0-9.]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%s did not hand its leadership off before stopping: %q", leader.Name, line)
	}
	took, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("leader %s stopped with SIGTERM: leadership handed off in %.1f ms; longest gap in writes %v",
		leader.Name, took, gap.Round(time.Millisecond))
	if took > 500 {
		t.Errorf("the leadership transfer took %.0f ms", took)
	}
	// A write's copy acknowledgement is sometimes lost while the members'
	// connections to the stopping gateway close (protoactor tears down a
	// member's connection to the new leader along with it); the copy then
	// waits for its store timeout (2 s) before another member takes it.
	if gap > 3*time.Second {
		t.Errorf("writes stopped for %v although leadership was handed off", gap)
	}
	load.finish()
	load.verify(t, survivors)
}

// TestGatewayStopsWhileAMemberIsPaused SIGTERMs the leading gateway while
// a member it is connected to is paused (SIGSTOP), as the fault suite
// found: the gateway must still exit within a bound. protoactor's graceful
// stop of the remote layer waits for every connection to close, and a
// paused peer closes none.
func TestGatewayStopsWhileAMemberIsPaused(t *testing.T) {
	c, leader, survivors, load := groupWritingThroughFollowers(t)
	paused := c.Members[0]
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = paused.Resume() }()
	started := time.Now()
	err := leader.Stop(30 * time.Second)
	took := time.Since(started)
	t.Logf("%s stopped with SIGTERM while %s was paused: exited after %v (%v)", leader.Name, paused.Name, took.Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("stop %s: %v", leader.Name, err)
	}
	// The drain (at most --drain-timeout, 5 s) and the remote layer's
	// stop (bounded) come well under the fault suite's 15 s.
	if took > 10*time.Second {
		t.Errorf("%s took %v to exit after SIGTERM with a member paused", leader.Name, took.Round(time.Millisecond))
	}
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 100)
	load.finish()
	load.verify(t, survivors)
}

func TestRaftLeaderCutOff(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skipf("partitions need root and iptables: %v", err)
	}
	c := raftGroup(t, 3, 3)
	var endpoints []netfault.Endpoint
	for _, n := range c.Nodes() {
		endpoints = append(endpoints, netfault.Endpoint{Name: n.Name, GID: n.GID, Ports: n.Ports()})
	}
	parts, err := netfault.New(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parts.Close() })
	leader := raftLeader(t, c.Gateways, 10*time.Second)
	majority := others(c.Gateways, leader)
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1) // a writer on the cut-off leader too
	load.waitOKs(t, 200)
	cut, err := parts.Cut([]string{leader.Name}, []string{majority[0].Name, majority[1].Name})
	if err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	Eventually(t, 5*time.Second, "the cut-off leader steps down", func() (bool, string) {
		st, err := raftStatus(leader)
		return err == nil && st.State != "leader", fmt.Sprintf("%+v %v", st.State, err)
	})
	steppedDown := time.Since(cutAt)
	next := raftLeader(t, majority, 10*time.Second)
	load.waitOKs(t, 200)
	gap, _ := load.longestGapAfter(cutAt)
	t.Logf("leader %s cut off from the other gateways: stepped down after %v; %s leads; longest gap in writes %v",
		leader.Name, steppedDown.Round(time.Millisecond), next.Name, gap.Round(time.Millisecond))
	if steppedDown > 2*time.Second {
		t.Errorf("the cut-off leader stepped down only after %v (election timeout 500 ms)", steppedDown)
	}
	// A read through the cut-off gateway is not answered from its stale
	// index: it fails, slowly or at once, but never returns a value the
	// majority has overwritten or lacks.
	if err := parts.Heal(cut); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 100)
	load.finish()
	waitConverged(t, c.Gateways)
	load.verify(t, c.Gateways)
}

func TestRaftFollowerCatchesUp(t *testing.T) {
	c := raftGroup(t, 3, 3, "--snapshot-entries", "100", "--snapshot-catch-up-entries", "20")
	leader := raftLeader(t, c.Gateways, 10*time.Second)
	follower := others(c.Gateways, leader)[0]
	load := startWriteLoad(t, clientAddrs([]*local.Node{leader}), 1)

	// Killed and restarted on its data: it catches up from its log and
	// the leader's.
	if err := follower.Kill(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 500)
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 100)
	waitConvergedWhileWriting(t, c.Gateways)

	// Its data lost, started again under the same id: the group remembers
	// log entries it acknowledged, which Raft cannot repair. It says so
	// and serves nothing (instead of crashing in a loop).
	if err := follower.Kill(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 500)
	if err := os.RemoveAll(follower.DataDir); err != nil {
		t.Fatal(err)
	}
	args := follower.Args()
	follower.SetArgs(append(args, "--initial-cluster-state", "existing"))
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "the gateway that lost its data says so", func() (bool, string) {
		ready, reason := follower.Ready(context.Background())
		return !ready && strings.Contains(reason, "data was lost"), reason
	})
	if strings.Contains(follower.LogTail(400_000), "crashed") {
		t.Errorf("%s crashed instead of reporting its lost data", follower.Name)
	}

	// The way back: remove it, and add it again under a new id on an
	// empty data dir. The leader's log was compacted long ago: it catches
	// up from a snapshot.
	id := strings.TrimPrefix(follower.Name, "gateway-")
	cli := func(args ...string) (*Child, int) {
		return RunChild(t, bin, ChildOptions{Args: append([]string{"cluster", "--admin-addr", leader.AdminAddr}, args...)}, 90*time.Second)
	}
	if out, code := cli("remove-gateway", id); code != 0 {
		t.Fatalf("remove-gateway %s: exit %d\n%s", id, code, out.Output())
	}
	if err := follower.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(follower.DataDir); err != nil {
		t.Fatal(err)
	}
	newArgs := slices.Clone(args)
	i := slices.Index(newArgs, "--gateway-id")
	newArgs[i+1] = "7"
	follower.SetArgs(append(newArgs, "--initial-cluster-state", "existing"))
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	if out, code := cli("add-gateway", "7", follower.NodeAddr); code != 0 {
		t.Fatalf("add-gateway 7: exit %d\n%s", code, out.Output())
	}
	load.waitOKs(t, 100)
	load.finish()
	waitConverged(t, c.Gateways)
	if !strings.Contains(follower.LogTail(400_000), "state machine replaced by the leader's snapshot") {
		t.Errorf("%s caught up without a snapshot; the test meant to make it need one", follower.Name)
	}
	// The leader counted the snapshots it took (one per 100 entries).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	body, status, err := leader.Get(ctx, "/metrics")
	cancel()
	m := regexp.MustCompile(`(?m)^tolerex_raft_snapshots_total (\S+)$`).FindSubmatch(body)
	if err != nil || status != 200 || m == nil || string(m[1]) == "0" {
		t.Errorf("%s's tolerex_raft_snapshots_total after %d writes at one snapshot per 100 entries: %q (status %d, %v)",
			leader.Name, load.oks(), m, status, err)
	}
	load.verify(t, c.Gateways)
}

// waitConvergedWhileWriting waits until no gateway's applied index lags
// the others' by much (writes go on meanwhile).
func waitConvergedWhileWriting(t *testing.T, gateways []*local.Node) {
	t.Helper()
	Eventually(t, 20*time.Second, "gateways close in the log", func() (bool, string) {
		var applied []uint64
		for _, g := range gateways {
			st, err := raftStatus(g)
			if err != nil {
				return false, err.Error()
			}
			applied = append(applied, st.Applied)
		}
		return slices.Max(applied)-slices.Min(applied) < 50, fmt.Sprint(applied)
	})
}

func TestRaftAllGatewaysKilled(t *testing.T) {
	c := raftGroup(t, 3, 3)
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 500)
	for _, g := range c.Gateways {
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	load.finish()
	for _, g := range c.Gateways {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	load.verify(t, c.Gateways)
}

// TestRaftFiveGatewaysLoseTwo: a group of five (issue 9, item 1) keeps
// serving with any two gateways dead, the leader among them. With a
// third dead the two left cannot commit, so no write is acknowledged
// until one is back. Then every gateway catches up and every
// acknowledged write reads back through each of them.
func TestRaftFiveGatewaysLoseTwo(t *testing.T) {
	const deadline = 2 * time.Second
	c := raftGroup(t, 5, 3, "--request-timeout", deadline.String())
	lead := raftLeader(t, c.Gateways, 15*time.Second)
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 300)

	followers := others(c.Gateways, lead)
	dead := []*local.Node{lead, followers[0]}
	for _, g := range dead {
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	load.waitOKs(t, 300)
	survivors := followers[1:]
	next := raftLeader(t, survivors, 10*time.Second)
	gap, first := load.longestGapAfter(killed)
	t.Logf("%s (leader) and %s killed: first write acknowledged %v later, longest gap %v; %s leads the three left",
		lead.Name, followers[0].Name, first.Round(time.Millisecond), gap.Round(time.Millisecond), next.Name)

	// A third dies, the new leader: two of five are no majority.
	if err := next.Kill(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	dead = append(dead, next)
	left := others(survivors, next)
	Eventually(t, 15*time.Second, "the two left know of no leader", func() (bool, string) {
		for _, g := range left {
			st, err := raftStatus(g)
			if err != nil || st.Lead != 0 {
				return false, fmt.Sprintf("%s: %+v %v", g.Name, st, err)
			}
		}
		return true, ""
	})
	// Only the writers of the two left reach a gateway now: let each of
	// them be answered twice or so (with an error, if all is well).
	answeredBefore := load.answered()
	Eventually(t, 15*time.Second, "writes through the two left answered", func() (bool, string) {
		answered := load.answered() - answeredBefore
		return answered >= 2*len(left), fmt.Sprintf("%d writes answered", answered)
	})
	restarted := time.Now()
	// A write committed just before the cut may be answered a moment
	// after it; none may be answered later while two of five run.
	const grace = time.Second
	if late := load.acknowledgedBetween(cut.Add(grace), restarted); late > 0 {
		t.Errorf("%d writes acknowledged between %v after the third gateway died and its restart, with two of five gateways running",
			late, grace)
	} else {
		t.Logf("3 of 5 dead: no write acknowledged from %v after the cut to the restart (%v after it)", grace, restarted.Sub(cut).Round(time.Millisecond))
	}

	for _, g := range dead {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
	}
	load.waitOKs(t, 200)
	load.finish()
	waitConverged(t, c.Gateways)
	load.verify(t, c.Gateways)
}

// startJoiningGateway starts gateway 4 to join c's group of three
// (--initial-cluster-state existing) with the certificates in tlsDir (none:
// extra says how it runs), on fresh addresses and an empty data dir; it is
// killed when the test ends.
func startJoiningGateway(t *testing.T, c *local.Cluster, tlsDir string, extra ...string) (*local.Node, *Child) {
	t.Helper()
	four := &local.Node{Name: "gateway-4", NodeAddr: FreeAddr(t), AdminAddr: FreeAddr(t), ClientAddr: FreeAddr(t)}
	var initial []string
	for i, g := range c.Gateways {
		initial = append(initial, fmt.Sprintf("%d=%s", i+1, g.NodeAddr))
	}
	initial = append(initial, "4="+four.NodeAddr)
	args := append([]string{"gateway", "--gateway-id", "4", "--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "existing", "--node-addr", four.NodeAddr, "--admin-addr", four.AdminAddr,
		"--client-addr", four.ClientAddr, "--data-dir", filepath.Join(t.TempDir(), "gateway-4"), "--no-prompt"}, extra...)
	if tlsDir != "" {
		args = append(args, "--tls-dir", tlsDir)
	}
	child := StartChild(t, bin, ChildOptions{Args: args})
	t.Cleanup(func() { _ = child.Signal(os.Kill) })
	return four, child
}

func TestRaftGatewayAddedAndRemoved(t *testing.T) {
	c := raftGroup(t, 3, 3)
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 300)

	// A fourth gateway, started to join, then added from the CLI.
	four, _ := startJoiningGateway(t, c, c.TLSDir)
	nodeAddr, clientAddr := four.NodeAddr, four.ClientAddr
	cliAt := func(admin string, args ...string) (*Child, int) {
		return RunChild(t, bin, ChildOptions{Args: append([]string{"cluster", "--admin-addr", admin}, args...)}, 90*time.Second)
	}
	cli := func(args ...string) (*Child, int) { return cliAt(c.Gateways[0].AdminAddr, args...) }
	if out, code := cli("add-gateway", "4", nodeAddr); code != 0 {
		t.Fatalf("add-gateway 4: exit %d\n%s", code, out.Output())
	}
	out, code := cli("status")
	if code != 0 || !strings.Contains(out.Stdout(), nodeAddr) {
		t.Fatalf("cluster status after adding gateway 4: exit %d\n%s", code, out.Output())
	}
	t.Logf("cluster status:\n%s", out.Stdout())

	// Misuse gets a clear error.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add-gateway", "4", nodeAddr}, "already in the group"},
		{[]string{"add-gateway", "0", nodeAddr}, "positive number"},
		{[]string{"add-gateway", "5", "nohostport"}, "host:port"},
		{[]string{"add-gateway", "5", c.Gateways[1].NodeAddr}, "already has node address"},
		{[]string{"remove-gateway", "9"}, "not in the group"},
		{[]string{"remove-gateway", "x"}, "positive number"},
	} {
		out, code := cli(tc.args...)
		if code == 0 || !strings.Contains(out.Output(), tc.want) {
			t.Errorf("cluster %v: exit %d, output %q; want a failure saying %q", tc.args, code, out.Output(), tc.want)
		}
	}

	// Remove the leader: leadership moves off it first.
	leader := raftLeader(t, c.Gateways, 10*time.Second)
	id := strings.TrimPrefix(leader.Name, "gateway-")
	if out, code := cli("remove-gateway", id); code != 0 {
		t.Fatalf("remove-gateway %s (the leader): exit %d\n%s", id, code, out.Output())
	}
	// Still running, the removed gateway learns that it was removed (the
	// others drop its Raft messages and tell it), says so, and refuses
	// clients at once, so that they move on; its id cannot come back.
	Eventually(t, 10*time.Second, "the removed gateway says it was removed", func() (bool, string) {
		ready, reason := leader.Ready(context.Background())
		return !ready && strings.Contains(reason, "removed from the Raft group"), reason
	})
	if reply, took := askOnce(t, leader.ClientAddr, "GET 1"); !strings.HasPrefix(reply, "ERROR: gateway unavailable: removed from the Raft group") || took > 2*time.Second {
		t.Errorf("GET on the removed gateway: %q after %v; want \"ERROR: gateway unavailable: removed from the Raft group ...\" at once", reply, took)
	}
	// Seen from its admin API: status fails saying why, and the tree still
	// shows the removed gateway itself, with the reason.
	if out, code := cliAt(leader.AdminAddr, "status"); code == 0 || !strings.Contains(out.Output(), "cannot run: removed from the Raft group") {
		t.Errorf("cluster status asked of the removed %s: exit %d, output %q; want a failure saying it was removed", leader.Name, code, out.Output())
	}
	if out, code := RunChild(t, bin, ChildOptions{Args: []string{"tree", "--admin-addr", leader.AdminAddr}}, 20*time.Second); code != 0 ||
		!strings.Contains(out.Stdout(), "gateway  "+leader.NodeAddr+"  (Raft: cannot run: removed from the Raft group") || !strings.Contains(out.Stdout(), "consensus") {
		t.Errorf("tree asked of the removed %s: exit %d, output %q; want its own tree, saying it was removed", leader.Name, code, out.Output())
	}
	stayed := others(c.Gateways, leader)[0]
	if out, code := cliAt(stayed.AdminAddr, "add-gateway", id, leader.NodeAddr); code == 0 || !strings.Contains(out.Output(), "never joins again") {
		t.Errorf("add-gateway %s again, asked of %s: exit %d, output %q; want a refusal", id, stayed.Name, code, out.Output())
	}
	asked := time.Now()
	if out, code := cliAt(leader.AdminAddr, "add-gateway", "5", FreeAddr(t)); code == 0 || !strings.Contains(out.Output(), "removed from the Raft group") || time.Since(asked) > 5*time.Second {
		t.Errorf("add-gateway asked of the removed %s: exit %d after %v, output %q; want a refusal at once saying it was removed",
			leader.Name, code, time.Since(asked).Round(time.Millisecond), out.Output())
	}
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	// Leadership may move to gateway 4, which is not one of c.Gateways.
	rest := append(others(c.Gateways, leader), four)
	next := raftLeader(t, rest, 10*time.Second)
	st, err := raftStatus(next)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Gateways) != 3 || slices.ContainsFunc(st.Gateways, func(g consensus.GatewayStatus) bool { return g.NodeAddress == leader.NodeAddr }) {
		t.Errorf("group after removing %s: %+v", leader.Name, st.Gateways)
	}
	load.waitOKs(t, 200)
	load.finish()
	load.verify(t, rest)
	load.verifyAt(t, clientAddr)
}

// askOnce sends one HaToKuSe command on a new connection to addr and
// returns the reply line and how long it took.
func askOnce(t *testing.T, addr, command string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{IOTimeout: 15 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	started := time.Now()
	reply, err := c.Do(command)
	if _, refused := errors.AsType[*client.ServerError](err); err != nil && !refused {
		t.Fatalf("%q on %s: %v", command, addr, err)
	}
	return reply, time.Since(started)
}

// verifyAt reads every acknowledged write back through a gateway given by
// its client address.
func (w *writeLoad) verifyAt(t *testing.T, addr string) {
	t.Helper()
	w.verify(t, []*local.Node{{Name: addr, ClientAddr: addr}})
}

func TestRaftRecoveredFromOneSurvivor(t *testing.T) {
	c := raftGroup(t, 3, 3)
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 500)
	load.finish()
	waitConverged(t, c.Gateways)
	// Two gateways and their disks are lost for good: the survivor alone
	// can never elect a leader.
	survivor := c.Gateways[0]
	for _, g := range c.Gateways[1:] {
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(g.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	if err := survivor.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, code := RunChild(t, bin, ChildOptions{Args: []string{"recover-gateway", "--data-dir", survivor.DataDir,
		"--gateway-id", "1", "--node-addr", survivor.NodeAddr}}, 60*time.Second)
	if code != 0 {
		t.Fatalf("recover-gateway: exit %d\n%s", code, out.Output())
	}
	t.Logf("recover-gateway: %s", strings.TrimSpace(out.Stdout()))
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	raftLeader(t, []*local.Node{survivor}, 10*time.Second)
	load.verify(t, []*local.Node{survivor})
	// And the recovered group takes writes.
	more := startWriteLoad(t, []string{survivor.ClientAddr}, 900_000_000)
	more.waitOKs(t, 50)
	more.finish()
	more.verify(t, []*local.Node{survivor})
}

// TestRaftMembersStartedFirst starts the members before any gateway: they
// register within a second of the group having an active leader, and the
// store takes writes.
func TestRaftMembersStartedFirst(t *testing.T) {
	cfg := local.Config{
		Binary: bin, Dir: t.TempDir(), Gateways: 3, Members: 3, Tolerance: 2, LogLevel: "debug",
		NoPrompt: true, GatewayGroupArgs: local.RaftGroup, Addrs: ports,
	}
	c, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.KillAll() })
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The members try every gateway in turn, none answering: until each
	// member has found each gateway down once (its probe refused, or, as
	// before membership.Reach, the remote layer's dial failed).
	Eventually(t, 10*time.Second, "members up, each having tried every gateway", func() (bool, string) {
		for _, m := range c.Members {
			if !m.Running() {
				return false, m.Name + " not running"
			}
			log := m.Log()
			// One line per gateway when its probe first fails.
			if tries := strings.Count(log, `"message":"gateway unreachable"`) + strings.Count(log, "EndpointWriter failed to connect"); tries < len(c.Gateways) {
				return false, fmt.Sprintf("%s tried %d gateways", m.Name, tries)
			}
		}
		return true, ""
	})
	gatewaysStarted := time.Now()
	for _, g := range c.Gateways {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 20*time.Second, "a gateway leading actively", func() (bool, string) {
		_, ok := c.Leader(context.Background())
		return ok, "no gateway leads"
	})
	active := time.Now()
	if err := c.WaitHealthy(context.Background(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	registered := time.Since(active)
	t.Logf("gateways started after the members: a leader active %v later, every member registered and live %v after that",
		active.Sub(gatewaysStarted).Round(time.Millisecond), registered.Round(time.Millisecond))
	// The bound, not a speed figure: a new leader learns the
	// members within a second. Members that had dialled the gateways
	// while they were down were deaf to them for up to 2 s more
	// (protoactor's sleep after a failed dial; membership.Reach).
	if registered > time.Second {
		t.Fatalf("every member registered and live %v after a gateway led, want within 1s", registered)
	}
	// How: a member hands the remote layer nothing for a gateway that is
	// not accepting connections, so it never starts the dial that sleeps.
	for _, m := range c.Members {
		if n := strings.Count(m.Log(), "EndpointWriter failed to connect"); n > 0 {
			t.Errorf("%s: the remote layer failed to connect %d times: heartbeats went to gateways that were down", m.Name, n)
		}
	}
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 100)
	load.finish()
	load.verify(t, c.Gateways)
}

// TestRaftSeenFromOutside: any gateway, leading or not, shows the whole
// group (issue 9, item 10): /api/cluster lists every gateway with its own
// Raft state, exactly one leading; /api/tree and `tolerex tree` show every
// gateway's actors (consensus included) and mark the leader; the leader's
// metrics count proposals and time read barriers.
func TestRaftSeenFromOutside(t *testing.T) {
	c := raftGroup(t, 3, 3)
	lead := raftLeader(t, c.Gateways, 10*time.Second)
	follower := others(c.Gateways, lead)[0]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, follower.ClientAddr, client.Options{DialTimeout: 2 * time.Second, IOTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for id := int64(1); id <= 20; id++ {
		if err := cl.Set(id, []byte("v"+strconv.FormatInt(id, 10))); err != nil {
			t.Fatalf("SET %d: %v", id, err)
		}
		if _, _, err := cl.Get(id); err != nil {
			t.Fatalf("GET %d: %v", id, err)
		}
	}

	// /api/cluster on a follower: every gateway, with its own figures, and
	// the members as the leader sees them (only it tracks their liveness).
	var st struct {
		Leader   string                  `json:"leader"`
		Gateways []consensus.GatewayView `json:"gateways"`
		leader.LivenessSource
		LiveCount int                   `json:"live_members"`
		Members   []leader.MemberStatus `json:"members"`
	}
	Eventually(t, 10*time.Second, "the follower's /api/cluster to show three gateways that agree", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := follower.GetJSON(ctx, "/api/cluster", &st); err != nil {
			return false, err.Error()
		}
		leading, applied := 0, map[uint64]bool{}
		for _, g := range st.Gateways {
			if g.Error != "" || g.Term == 0 || g.Commit == 0 || g.Applied == 0 {
				return false, fmt.Sprintf("%+v", g)
			}
			if g.Leader {
				leading++
				if g.NodeAddress != lead.NodeAddr {
					return false, "the wrong gateway leads: " + g.NodeAddress
				}
			}
			applied[g.Applied] = true
		}
		for _, m := range st.Members {
			if !m.Alive || !m.StorageReady || m.LastHeartbeat == "" || m.Indexed == 0 {
				return false, fmt.Sprintf("member as the follower shows it: %+v", m)
			}
		}
		return len(st.Gateways) == 3 && leading == 1 && len(applied) == 1 && st.Leader == lead.NodeAddr &&
			len(st.Members) == 3 && st.LiveCount == 3 && st.LivenessFrom == lead.NodeAddr, fmt.Sprintf("%+v", st)
	})
	// Where a message is, asked of the follower: its replicas are alive.
	var loc leader.Location
	if err := follower.GetJSON(ctx, "/api/messages/1", &loc); err != nil {
		t.Fatal(err)
	}
	if !loc.Found || len(loc.Replicas) != 2 || loc.LivenessFrom != lead.NodeAddr || !loc.Replicas[0].Alive || !loc.Replicas[1].Alive {
		t.Errorf("the follower's /api/messages/1 = %+v; want 2 live replicas as the leader %s sees them", loc, lead.NodeAddr)
	}

	// tolerex tree against the follower: three gateways, one marked leader,
	// each with its consensus actor, then the members.
	// It is a live view: a member the follower cannot reach in time is
	// shown with the error, so ask until every member answered.
	var tc *Child
	var blocks []string
	Eventually(t, 30*time.Second, "tolerex tree on a follower shows every member", func() (bool, string) {
		var code int
		tc, code = RunChild(t, bin, ChildOptions{Args: []string{"tree", "--admin-addr", follower.AdminAddr}}, 20*time.Second)
		if code != 0 {
			return false, "tolerex tree failed\n" + tc.Output()
		}
		blocks = strings.Split(strings.TrimSpace(tc.Stdout()), "\n\n")
		for _, b := range blocks {
			if strings.HasPrefix(b, "member ") && strings.Contains(strings.SplitN(b, "\n", 2)[0], "(") {
				return false, tc.Stdout()
			}
		}
		return true, ""
	})
	if len(blocks) != 6 {
		t.Fatalf("tree shows %d nodes, want 3 gateways and 3 members\n%s", len(blocks), tc.Stdout())
	}
	leaders := 0
	for _, b := range blocks[:3] {
		title := strings.SplitN(b, "\n", 2)[0]
		if !strings.HasPrefix(title, "gateway  ") || !strings.Contains(b, "consensus") {
			t.Errorf("gateway block without its title or consensus actor:\n%s", b)
		}
		if strings.Contains(title, "(Raft LEADER, term ") {
			leaders++
			if !strings.Contains(title, lead.NodeAddr) {
				t.Errorf("tree marks %q as the leader, want %s", title, lead.NodeAddr)
			}
		} else if !strings.Contains(title, "(Raft follower, term ") {
			t.Errorf("gateway title %q is neither leader nor follower", title)
		}
	}
	if leaders != 1 {
		t.Errorf("tree marks %d leaders\n%s", leaders, tc.Stdout())
	}
	for _, b := range blocks[3:] {
		if !strings.HasPrefix(b, "member ") || strings.Contains(strings.SplitN(b, "\n", 2)[0], "(") {
			t.Errorf("member block with an error or no title:\n%s", b)
		}
	}

	// The leader's metrics: proposals, read barriers, term, leadership.
	body, status, err := lead.Get(ctx, "/metrics")
	if err != nil || status != 200 {
		t.Fatalf("leader /metrics: %d %v", status, err)
	}
	metric := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Errorf("leader metrics lack %s", name)
			return 0
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if v := metric("tolerex_raft_proposed_entries_total"); v < 20 {
		t.Errorf("tolerex_raft_proposed_entries_total %v after 20 SETs", v)
	}
	if v := metric("tolerex_raft_read_index_seconds_count"); v < 1 {
		t.Errorf("tolerex_raft_read_index_seconds_count %v after 20 GETs", v)
	}
	if v := metric("tolerex_raft_is_leader"); v != 1 {
		t.Errorf("tolerex_raft_is_leader %v on the leader", v)
	}
	if v := metric("tolerex_raft_term"); v < 1 {
		t.Errorf("tolerex_raft_term %v", v)
	}
	// Its own appends of those entries: timed, and fsync'd.
	if v := metric("tolerex_raft_log_append_seconds_count"); v < 1 {
		t.Errorf("tolerex_raft_log_append_seconds_count %v after 20 SETs", v)
	}
	if v := metric("tolerex_raft_log_sync_seconds_count"); v < 1 {
		t.Errorf("tolerex_raft_log_sync_seconds_count %v after 20 SETs", v)
	}
	metric("tolerex_raft_apply_seconds_count")
	metric("tolerex_raft_leader_changes_total")
	// The commit of each SET's index entry, as the leader waited for it;
	// snapshots (none yet at the default interval, but counted).
	if v := metric("tolerex_metadata_commit_seconds_count"); v < 20 {
		t.Errorf("tolerex_metadata_commit_seconds_count %v after 20 SETs", v)
	}
	metric("tolerex_raft_snapshots_total")
}

// TestRaftQuorumLost kills two of three gateways: the survivor learns of no
// leader, so a write sent to it waits its whole request deadline, is never
// sent anywhere and is answered with the definite "no leader: ..."; a read
// times out. Once the group is back, the refused write is not there (a
// definite error must mean no effect) and writes work again.
func TestRaftQuorumLost(t *testing.T) {
	const deadline = 2 * time.Second
	c := raftGroup(t, 3, 3, "--request-timeout", deadline.String())
	lead := raftLeader(t, c.Gateways, 10*time.Second)
	survivor := others(c.Gateways, lead)[0]
	for _, g := range others(c.Gateways, survivor) {
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	// Until its election timeout passes the survivor still names the dead
	// leader and would send requests there (their outcome would then be
	// unknown); once it campaigns it names none.
	Eventually(t, 10*time.Second, "the survivor to know of no leader", func() (bool, string) {
		st, err := raftStatus(survivor)
		return err == nil && st.Lead == 0, fmt.Sprintf("%+v %v", st, err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, survivor.ClientAddr, client.Options{DialTimeout: 2 * time.Second, IOTimeout: 4 * deadline})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tt := range []struct{ line, want string }{
		{"SET 7 refused", "ERROR: " + leader.NoLeaderError},
		{"DEL 8", "ERROR: " + leader.NoLeaderError},
		{"GET 7", "ERROR: timeout: no leader answered this read before its deadline"},
	} {
		asked := time.Now()
		reply, _ := cl.Do(tt.line)
		took := time.Since(asked)
		if reply != tt.want || codec.ClassifyError(reply) != codec.Definite {
			t.Fatalf("%s with 2 of 3 gateways dead: %q after %v, want the definite %q", tt.line, reply, took, tt.want)
		}
		t.Logf("%s with 2 of 3 gateways dead: answered after %v: %s", tt.line, took.Round(time.Millisecond), reply)
	}
	for _, g := range others(c.Gateways, survivor) {
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, found, err := cl.Get(7); err != nil || found {
		t.Fatalf("GET 7 after the group is back: found=%v err=%v; the definitely refused SET took effect", found, err)
	}
	// Writes work again. The first one may still meet the connections
	// the restarted gateways' peers are replacing: a copy's acknowledgement
	// lost then costs a store timeout (design.md, "Known gaps"), longer
	// than this test's 2 s request deadline, so it is answered "outcome
	// unknown"; the same SET is sent again until one is acknowledged.
	attempts := 0
	Eventually(t, 20*time.Second, "a SET acknowledged after the group is back", func() (bool, string) {
		attempts++
		err := cl.Set(7, []byte("after"))
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("SET 7 after the group is back: acknowledged at attempt %d", attempts)
}
