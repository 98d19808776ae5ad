package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// TestLeaderCrashUnderLoad crashes the leader actor (not the process)
// while a client pipelines SETs: the supervisor restarts it from the
// metadata log, every SET answered OK is readable, every SET answered
// with an error is not (unless the error says its outcome is unknown),
// and the gateway serves again.
func TestLeaderCrashUnderLoad(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	const n = 20000
	sent := make(chan error, 1)
	go func() {
		for id := 0; id < n; id++ {
			if err := cl.Send([]byte("SET " + strconv.Itoa(id) + " v" + strconv.Itoa(id))); err != nil {
				sent <- err
				return
			}
			if id%100 == 99 {
				if err := cl.Flush(); err != nil {
					sent <- err
					return
				}
			}
			if id == n/4 {
				go func() {
					if resp, err := httpClient.Post("http://"+c.Gateway.AdminAddr+"/debug/fault/leader-panic", "text/plain", nil); err == nil {
						resp.Body.Close()
					}
				}()
			}
		}
		sent <- cl.Flush()
	}()
	var ok, failed, unknown []int64
	for id := int64(0); id < n; id++ {
		reply, err := cl.ReadReply()
		if err != nil {
			t.Fatalf("reply %d: %v", id, err)
		}
		switch r := string(reply); {
		case r == "OK":
			ok = append(ok, id)
		case strings.HasPrefix(r, "ERROR: outcome unknown"):
			unknown = append(unknown, id)
		case strings.HasPrefix(r, "ERROR: "):
			failed = append(failed, id)
		default:
			t.Fatalf("SET %d: %q", id, r)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d OK, %d failed, %d unknown", len(ok), len(failed), len(unknown))
	if len(failed) == 0 {
		t.Logf("no SET failed: the crash hit between requests")
	}
	if !strings.Contains(c.Gateway.Log(), "leader crashed; restarting it") {
		t.Fatalf("the leader did not crash")
	}
	c.Gateway.WaitReady(t, 10*time.Second)
	c.WaitLive(t, 3, 10*time.Second)
	check := c.Dial(t)
	for _, id := range ok {
		v, found, err := check.Get(id)
		if err != nil || !found || string(v) != "v"+strconv.FormatInt(id, 10) {
			t.Fatalf("acknowledged SET %d: GET = %q found=%v err=%v", id, v, found, err)
		}
	}
	for _, id := range failed {
		v, found, err := check.Get(id)
		var se *client.ServerError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("GET %d: %v", id, err)
		}
		if found {
			t.Fatalf("SET %d was answered with an error but GET returns %q", id, v)
		}
	}
	if code := c.Gateway.Post(t, "/debug/fault/leader-panic"); code != http.StatusOK {
		t.Fatalf("second fault injection: %d", code)
	}
	c.Gateway.WaitReady(t, 10*time.Second)
	if err := check.Set(n+1, []byte("after")); err != nil {
		// The first request after a crash may race the restart.
		if err := check.Set(n+1, []byte("after")); err != nil {
			t.Fatalf("SET after the leader restarted: %v", err)
		}
	}
}

// TestStoppedLeaderAnswersRequests crashes the leader actor until its
// supervisor stops it for good: each crash is logged at error level with
// its panic value and stack, /api/tree shows the leader stopped with its
// last failure, /readyz says why, and requests sent afterwards are answered
// with an error at once instead of waiting forever.
func TestStoppedLeaderAnswersRequests(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2, NoPrompt: true, GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	if err := cl.Set(1, []byte("before")); err != nil {
		t.Fatal(err)
	}
	// The leader is restarted ten times within a minute, then stopped.
	for i := 1; i <= 11; i++ {
		if code := c.Gateway.Post(t, "/debug/fault/leader-panic"); code != http.StatusOK {
			t.Fatalf("fault injection %d: %d", i, code)
		}
		want := "leader crashed; restarting it"
		if i == 11 {
			want = "leader keeps crashing; stopping it"
		}
		Eventually(t, 10*time.Second, "crash "+strconv.Itoa(i)+" logged", func() (bool, string) {
			return strings.Count(c.Gateway.Log(), "leader crashed; restarting it") >= min(i, 10) &&
				strings.Contains(c.Gateway.Log(), want), "waiting for: " + want
		})
	}
	crashLine := grepLines(c.Gateway.Log(), "leader keeps crashing")
	for _, want := range []string{`"level":"error"`, `"reason":"injected leader fault"`, `leader.(*leader).Receive`} {
		if !strings.Contains(crashLine, want) {
			t.Errorf("the crash log line lacks %s:\n%s", want, crashLine)
		}
	}

	code, body := readyz(c.Gateway)
	if code == http.StatusOK || !strings.Contains(body, "leader stopped after 11 crashes") || !strings.Contains(body, "injected leader fault") {
		t.Errorf("/readyz = %d %q; want not ready, saying the leader stopped and why", code, body)
	}
	var leaderView *tree.ActorView
	for _, node := range c.Tree(t).Nodes {
		for i := range node.Actors {
			if node.Actors[i].ID == "leader" {
				leaderView = &node.Actors[i]
			}
		}
	}
	if leaderView == nil || !leaderView.Stopped || leaderView.LastFailure == nil ||
		leaderView.LastFailure.Reason != "injected leader fault" || leaderView.LastFailure.Count != 11 {
		t.Errorf("/api/tree leader = %+v; want it stopped, its 11th failure the injected fault", leaderView)
	}

	// Requests now reach no leader: each is answered, definitely, at once.
	started := time.Now()
	for _, req := range []func() error{
		func() error { return cl.Set(2, []byte("after")) },
		func() error { _, _, err := cl.Get(1); return err },
	} {
		err := req()
		var se *client.ServerError
		if !errors.As(err, &se) || !strings.Contains(se.Error(), "gateway unavailable: leader unavailable") {
			t.Errorf("request to a stopped leader: %v; want ERROR: gateway unavailable: leader unavailable", err)
		}
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Errorf("answers to a stopped leader took %v", took)
	}
}

// TestLeaderCrashMidBatchIsAnswered panics the leader actor while it takes
// a pipelined batch, at the fifth of ten SETs: every request of the batch
// is answered (OK, or an unknown outcome for those the crash caught; none
// hangs), requests sent afterwards on the same connection are answered
// normally, and every SET answered OK reads back.
func TestLeaderCrashMidBatchIsAnswered(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true, GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	var lines []string
	for i := 1; i <= 10; i++ {
		msg := "v" + strconv.Itoa(i)
		if i == 5 {
			msg = leader.PanicMessage
		}
		lines = append(lines, "SET "+strconv.Itoa(i)+" "+msg)
	}
	for _, l := range lines {
		if err := cl.Send([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	var acked []int64
	for i := 1; i <= 10; i++ {
		reply, err := cl.ReadReply()
		if err != nil {
			t.Fatalf("reply to %q: %v (after %v)", lines[i-1], err, time.Since(started))
		}
		r := string(reply)
		switch {
		case r == "OK":
			acked = append(acked, int64(i))
		case strings.HasPrefix(r, "ERROR: outcome unknown"):
		default:
			t.Errorf("%q: %q, want OK or an unknown outcome", lines[i-1], r)
		}
	}
	t.Logf("10 SETs with a leader crash at the 5th answered in %v; %d OK", time.Since(started).Round(time.Millisecond), len(acked))
	if !strings.Contains(c.Gateway.Log(), "leader panics in the middle of a batch") {
		t.Fatal("the leader did not crash")
	}
	c.Gateway.WaitReady(t, 10*time.Second)
	// The connection works on.
	Eventually(t, 10*time.Second, "a SET after the crash", func() (bool, string) {
		err := cl.Set(100, []byte("after"))
		return err == nil, fmt.Sprint(err)
	})
	for _, id := range acked {
		if v, found, err := cl.Get(id); err != nil || !found || string(v) != "v"+strconv.FormatInt(id, 10) {
			t.Errorf("SET %d answered OK; GET = %q found=%v err=%v", id, v, found, err)
		}
	}
}

// TestConsensusCrashRestarts makes the gateway's consensus actor panic
// (POST /debug/fault/consensus-panic) between writes. Expected: its
// supervisor restarts it, it reopens the Raft log, leads again, and the
// leader actor hears of it (its subscription outlives the restart):
// writes go on and everything acknowledged reads back.
func TestConsensusCrashRestarts(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	for round := int64(0); round < 3; round++ {
		for id := round * 100; id < round*100+100; id++ {
			if err := cl.Set(id, []byte(fmt.Sprintf("round %d", round))); err != nil {
				t.Fatalf("SET %d in round %d: %v", id, round, err)
			}
		}
		if code := c.Gateway.Post(t, "/debug/fault/consensus-panic"); code != http.StatusOK {
			t.Fatalf("fault injection: %d", code)
		}
		Eventually(t, 10*time.Second, "a SET after the consensus actor restarted", func() (bool, string) {
			err := cl.Set(10_000+round, []byte("after"))
			return err == nil, fmt.Sprint(err)
		})
	}
	for id := int64(0); id < 300; id++ {
		v, found, err := cl.Get(id)
		if want := fmt.Sprintf("round %d", id/100); err != nil || !found || string(v) != want {
			t.Fatalf("GET %d = %q found=%v err=%v; want %q", id, v, found, err, want)
		}
	}
	if n := strings.Count(c.Gateway.Log(), `"consensus started"`); n != 4 {
		t.Errorf("consensus started %d times, want 4 (once, then after each of 3 crashes)", n)
	}
	if n := strings.Count(c.Gateway.Log(), "consensus crashed; restarting it"); n != 3 {
		t.Errorf("the gateway logged %d consensus crashes, want 3", n)
	}
}

// TestConsensusKeepsCrashing crashes the consensus actor 11 times in a
// row. Expected: each crash is logged, the first 10 restart it, the 11th
// stops it for good, and /readyz says so and how to recover, instead of
// "no Raft leader known".
func TestConsensusKeepsCrashing(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	crashConsensus(t, c.Gateway.node, 11)
	Eventually(t, 10*time.Second, "/readyz to say consensus stopped", func() (bool, string) {
		status, body := readyz(c.Gateway)
		return status == http.StatusServiceUnavailable && strings.Contains(body, "consensus stopped after 11 crashes within 1m0s (restart the gateway); last: "), fmt.Sprintf("%d %s", status, body)
	})
	_, body := readyz(c.Gateway)
	t.Logf("/readyz: %s", strings.TrimSpace(body))
	if n := strings.Count(c.Gateway.Log(), "consensus crashed; restarting it"); n != 10 {
		t.Errorf("the gateway logged %d restarts of consensus, want 10", n)
	}
	// Requests are refused at once, definitely, with the reason: nothing
	// will be led here until the gateway restarts.
	reply, _ := c.Dial(t).Do("SET 1 x")
	if !strings.HasPrefix(reply, "ERROR: gateway unavailable: consensus stopped after 11 crashes") || codec.ClassifyError(reply) != codec.Definite {
		t.Errorf("a SET to the gateway whose consensus stopped: %q, want a definite gateway unavailable error", reply)
	}
}

// crashConsensus crashes the consensus actor of gateway n (started with
// --fault-injection) times times in a row, waiting for each crash to be
// logged: restarted, or, past the crash budget, stopped.
func crashConsensus(t *testing.T, n *local.Node, times int) {
	t.Helper()
	crashActor(t, n, "consensus", times)
}

// crashLeaderActor does the same to the leader actor.
func crashLeaderActor(t *testing.T, n *local.Node, times int) {
	t.Helper()
	crashActor(t, n, "leader", times)
}

// crashActor crashes actor ("consensus" or "leader") of gateway n with
// POST /debug/fault/<actor>-panic times times, each once the one before
// was logged by the actor's supervisor ("<actor> crashed; restarting it"
// or "<actor> keeps crashing; stopping it").
func crashActor(t *testing.T, n *local.Node, actor string, times int) {
	t.Helper()
	for crash := 1; crash <= times; crash++ {
		if code, err := n.Post(context.Background(), "/debug/fault/"+actor+"-panic"); err != nil || code != http.StatusOK {
			t.Fatalf("fault injection %d on %s: %d %v", crash, n.Name, code, err)
		}
		Eventually(t, 10*time.Second, "the crash to be logged", func() (bool, string) {
			got := strings.Count(n.Log(), `"`+actor+` crashed; restarting it`) + strings.Count(n.Log(), `"`+actor+` keeps crashing; stopping it`)
			return got == crash, fmt.Sprintf("%d crashes logged", got)
		})
	}
}

// TestRaftLeaderWithoutCoordinatorStepsAside stops the leader actor of the
// gateway that leads the Raft group for good (11 injected crashes). That
// gateway can no longer coordinate, so it hands its leadership to another
// and refuses its own clients with the definite "gateway unavailable:
// ...": writes go on through the other gateways, and `tolerex client
// --addr it,other` moves on. It keeps voting and replicating, and when the
// new leader dies it does not keep the leadership either, should it win
// the election: the last healthy gateway leads.
func TestRaftLeaderWithoutCoordinatorStepsAside(t *testing.T) {
	c := raftGroup(t, 3, 3, "--fault-injection")
	broken := raftLeader(t, c.Gateways, 10*time.Second)
	healthy := others(c.Gateways, broken)
	load := startWriteLoad(t, clientAddrs(healthy), 1)
	load.waitOKs(t, 100)

	crashLeaderActor(t, broken, 11)
	next := ledBy(t, broken, healthy)
	load.waitOKs(t, 200)
	t.Logf("%s's leader actor stopped: %s leads now", broken.Name, next.Name)

	clientMovesOn(t, broken, next, 900000, "leader unavailable")

	// Kill the new leader: the broken gateway and the last healthy one
	// elect one of them, and the broken one hands over if it wins.
	last := others(healthy, next)[0]
	if err := next.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := ledBy(t, broken, []*local.Node{last}); got != last {
		t.Fatalf("%s leads after %s was killed, want %s", got.Name, next.Name, last.Name)
	}
	load.waitOKs(t, 100)
	t.Logf("%s killed: %s leads; %s stepped aside %d times in all:\n%s", next.Name, last.Name, broken.Name,
		strings.Count(broken.Log(), "stepping aside"), grepLines(broken.Log(), "stepping aside"))
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	load.waitOKs(t, 100)
	load.finish()
	waitConverged(t, c.Gateways)
	load.verify(t, healthy)
}

// ledBy waits until one of candidates leads, ready, and the gateway that
// steps aside follows it, and returns it.
func ledBy(t *testing.T, aside *local.Node, candidates []*local.Node) *local.Node {
	t.Helper()
	var leader *local.Node
	Eventually(t, 15*time.Second, "a gateway other than "+aside.Name+" to lead", func() (bool, string) {
		view := ""
		for _, g := range candidates {
			st, err := raftStatus(g)
			if err != nil {
				return false, g.Name + ": " + err.Error()
			}
			view += fmt.Sprintf("%s: %s lead %d; ", g.Name, st.State, st.Lead)
			if st.State == "leader" && st.LeadershipReady {
				leader = g
			}
		}
		st, err := raftStatus(aside)
		if err != nil {
			return false, aside.Name + ": " + err.Error()
		}
		view += fmt.Sprintf("%s: %s lead %d", aside.Name, st.State, st.Lead)
		return leader != nil && st.State != "leader" && st.Lead != 0 && st.Lead != st.ID, view
	})
	return leader
}

// TestMembershipCrashRestarts crashes the gateway's membership actor
// (POST /debug/fault/membership-panic), the leader actor's sibling.
// Expected: its supervisor restarts it, it asks the leader actor where
// leadership stands and so goes on keeping the members' liveness: writes
// go on, and a member killed afterwards is seen down. (Restarted without
// asking, it would take its gateway for a follower, redirect every
// heartbeat, and report no member down.)
func TestMembershipCrashRestarts(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	c.WaitLive(t, 3, 10*time.Second)
	cl := c.Dial(t)
	if code := c.Gateway.Post(t, "/debug/fault/membership-panic"); code != http.StatusOK {
		t.Fatalf("fault injection: %d", code)
	}
	Eventually(t, 10*time.Second, "the membership actor restarted", func() (bool, string) {
		return strings.Contains(c.Gateway.Log(), "membership restarted; asking the leader actor"), "no restart logged"
	})
	var restarted *tree.ActorView
	for _, node := range c.Tree(t).Nodes {
		if node.Role == "gateway" {
			restarted = findActor(node.Actors, "membership")
		}
	}
	if restarted == nil || restarted.Restarts != 1 || restarted.LastFailure == nil || restarted.LastFailure.Reason != "injected membership fault" {
		t.Fatalf("/api/tree membership = %+v; want it restarted once after the injected fault", restarted)
	}
	for id := int64(0); id < 100; id++ {
		if err := cl.Set(id, []byte("after the crash")); err != nil {
			t.Fatalf("SET %d after the membership actor restarted: %v", id, err)
		}
	}
	c.Members[2].Kill(t)
	c.WaitOnlyLive(t, 10*time.Second, c.Members[0], c.Members[1])
	for id := int64(100); id < 200; id++ {
		if err := cl.Set(id, []byte("after the kill")); err != nil {
			t.Fatalf("SET %d with two members left: %v", id, err)
		}
	}
	for id := int64(0); id < 200; id++ {
		if _, found, err := cl.Get(id); err != nil || !found {
			t.Fatalf("GET %d: found=%v err=%v", id, found, err)
		}
	}
}
