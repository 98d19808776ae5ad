package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// The client side of the gateways' Raft group (issue 9, item 9): `tolerex
// bench` and `tolerex client` take the list of gateways and move to the
// next one when theirs dies.

// TestBenchAndClientFailOverBetweenGateways runs `tolerex bench --addr
// g1,g2,g3` and SIGKILLs the gateway that leads while it runs. The
// connections on that gateway count their requests in flight as lost
// (nothing else fails), reconnect to the next gateway and go on; every
// write acknowledged reads back through the survivors, and writes are
// acknowledged after the kill. Then `tolerex client --addr dead,alive`
// connects to the live one.
func TestBenchAndClientFailOverBetweenGateways(t *testing.T) {
	c := raftGroup(t, 3, 3)
	leader, ok := c.Leader(context.Background())
	if !ok {
		t.Fatal("no gateway leads in a healthy group")
	}
	var killed int
	for i, g := range c.Gateways {
		if g == leader {
			killed = i
		}
	}
	addrs := c.ClientAddrs()

	const (
		offset   = 5_000_000
		size     = 32
		conns    = 6
		duration = 8 * time.Second
	)
	series := filepath.Join(t.TempDir(), "series.csv")
	bench := StartChild(t, bin, ChildOptions{Args: []string{"bench", "--json",
		"--addr", strings.Join(addrs, ","), "--op", "set", "--conns", strconv.Itoa(conns), "--depth", "1",
		"--duration", duration.String(), "--warmup", "0s", "--size", strconv.Itoa(size),
		"--keys", "1000000000", "--offset", strconv.Itoa(offset), "--io-timeout", "20s", "--csv", series}})
	started := time.Now()

	// Writes flow: the 300th key reads back.
	reader := dialAny(t, addrs)
	Eventually(t, 20*time.Second, "bench writes acknowledged", func() (bool, string) {
		if exited, code := bench.Exited(); exited {
			t.Fatalf("bench exited %d early\n%s", code, bench.Output())
		}
		_, found, err := reader.Get(offset + 300)
		return err == nil && found, fmt.Sprintf("GET %d: found %v, %v", offset+300, found, err)
	})
	reader.Close()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAfter := time.Since(started)
	if killedAfter > duration-4*time.Second {
		t.Fatalf("the kill came %v into a %v run: too late to see writes after it", killedAfter, duration)
	}
	t.Logf("killed %s (the leader, %s) %v into the run", leader.Name, leader.ClientAddr, killedAfter.Round(time.Millisecond))

	res, code := waitBenchResult(t, bench, duration+60*time.Second)
	t.Logf("bench exit %d: %d acknowledged, %d errors (%d definite, %d indeterminate, %d lost in flight), %d reconnects, gateways %+v, first error %q",
		code, res.Sets, res.Errors, res.DefiniteErrors, res.IndeterminateErrors, res.LostInFlight, res.Reconnects, res.Gateways, res.FirstError)

	dead := res.Gateways[killed]
	if dead.Addr != leader.ClientAddr || dead.Conns != conns/len(addrs) || dead.LostConns != int64(dead.Conns) {
		t.Errorf("killed gateway %+v: want its %d connections lost", dead, conns/len(addrs))
	}
	if res.Reconnects != dead.LostConns || res.ConnsGivenUp != 0 {
		t.Errorf("%d reconnects, %d connections given up; want one reconnect per lost connection (%d)", res.Reconnects, res.ConnsGivenUp, dead.LostConns)
	}
	var movedToSurvivors int64
	for i, g := range res.Gateways {
		if i == killed {
			continue
		}
		movedToSurvivors += g.ReconnectsTo
		if g.Ops == 0 || g.LostConns != 0 {
			t.Errorf("surviving gateway %+v: want requests answered and no lost connection", g)
		}
	}
	if movedToSurvivors != dead.LostConns {
		t.Errorf("%d connections moved to the survivors, want %d", movedToSurvivors, dead.LostConns)
	}
	// Only the requests in flight on the killed gateway's connections
	// failed (at most one each: depth 1); the survivors answered every
	// request, waiting for the new leader.
	if res.Errors != res.LostInFlight || res.LostInFlight > int64(dead.Conns) || res.DefiniteErrors != 0 || res.Mismatches != 0 {
		t.Errorf("%d errors (%d definite), %d lost in flight, %d mismatches: want only lost ones, at most %d",
			res.Errors, res.DefiniteErrors, res.LostInFlight, res.Mismatches, dead.Conns)
	}
	if (code == 0) != (res.Errors == 0) {
		t.Errorf("exit status %d with %d errors", code, res.Errors)
	}
	// Writes were acknowledged in the last two seconds, well after the
	// kill and the election it caused.
	if n := len(res.Series); n < 3 || res.Series[n-1].Ops+res.Series[n-2].Ops == 0 {
		t.Errorf("no write acknowledged at the end of the run: series %+v", res.Series)
	}

	survivors := append(append([]string(nil), addrs[:killed]...), addrs[killed+1:]...)
	checkBenchWritesReadBack(t, survivors, offset, size, res)

	// The client skips the dead gateway and serves from the next one.
	out := StartChild(t, bin, ChildOptions{Args: []string{"client", "--addr", leader.ClientAddr + "," + survivors[0]},
		Stdin: "SET 1 through the survivor\nGET 1\nGET 2\n"})
	if code := out.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("tolerex client --addr dead,alive exited %d\n%s", code, out.Output())
	}
	if got, want := out.Stdout(), "OK\nthrough the survivor\nNOT_FOUND\n"; got != want || out.Stderr() != "" {
		t.Errorf("tolerex client --addr dead,alive: stdout %q, want %q\n%s", got, want, out.Output())
	}
}

// waitBenchResult waits up to limit for a `tolerex bench --json` child to
// exit and returns its result and exit code.
func waitBenchResult(t *testing.T, bench *Child, limit time.Duration) (loadgen.Result, int) {
	t.Helper()
	code := bench.Wait(t, limit)
	var res loadgen.Result
	if err := json.Unmarshal([]byte(bench.Stdout()), &res); err != nil {
		t.Fatalf("bench output (exit %d) is not its JSON result: %v\n%s", code, err, bench.Output())
	}
	return res, code
}

// checkBenchWritesReadBack reads, through the given gateways, the keys a
// set bench run stored from offset on (in order, one key per SET): every
// value found must be the one bench wrote, at least res.Sets keys must be
// found, and below the highest key found only keys bench lists as failed
// may be missing: of unknown outcome (lost in flight, indeterminate
// errors) or refused (definite errors: never run).
func checkBenchWritesReadBack(t *testing.T, addrs []string, offset int64, size int, res loadgen.Result) {
	t.Helper()
	cl := dialAny(t, addrs)
	defer cl.Close()
	// Keys past the last one stored read as NOT_FOUND: read a margin more
	// than were sent (the SETs before the measured phase are not counted).
	count := res.Sets + res.Errors + 1000
	found := make([]bool, count)
	const window = 512
	for start := int64(0); start < count; start += window {
		n := min(window, count-start)
		for i := range n {
			if err := cl.Send([]byte("GET " + strconv.FormatInt(offset+start+i, 10))); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			key := offset + start + i
			reply, err := cl.ReadReply()
			if err != nil {
				t.Fatalf("read back GET %d: %v", key, err)
			}
			switch string(reply) {
			case "NOT_FOUND":
			case string(loadgen.Value(key, size)):
				found[start+i] = true
			default:
				t.Fatalf("GET %d = %q, want what bench wrote or nothing", key, reply)
			}
		}
	}
	highest := int64(-1)
	total := int64(0)
	for i, ok := range found {
		if ok {
			highest = int64(i)
			total++
		}
	}
	if highest == count-1 {
		t.Fatalf("key %d found: bench sent more SETs than the read covers", offset+highest)
	}
	var missing []int64
	for i, ok := range found[:highest+1] {
		if !ok {
			missing = append(missing, offset+int64(i))
		}
	}
	t.Logf("read back keys %d..%d: %d found, missing below the highest found %v; bench's failed SETs: unknown %v, refused %v",
		offset, offset+highest, total, missing, res.UnknownKeys, res.RefusedKeys)
	if total < res.Sets {
		t.Errorf("%d keys found, fewer than the %d writes acknowledged", total, res.Sets)
	}
	if res.FailedKeysTruncated {
		t.Fatalf("bench kept only some of its failed SETs' keys: cannot check the missing ones")
	}
	for _, key := range missing {
		if !slices.Contains(res.UnknownKeys, key) && !slices.Contains(res.RefusedKeys, key) {
			t.Errorf("key %d missing, but bench did not report its SET as failed: an acknowledged write was lost", key)
		}
	}
}

// dialAny connects to the first of addrs that answers.
func dialAny(t *testing.T, addrs []string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &client.Dialer{Addrs: addrs, Options: client.Options{DialTimeout: 5 * time.Second, IOTimeout: 30 * time.Second}}
	cl, _, err := d.DialFrom(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestClientMovesOnFromAGatewayThatCannotServe stops the consensus of one
// gateway of three for good (11 injected crashes): it refuses every request
// at once with the definite "gateway unavailable: ...", and `tolerex
// client --addr it,other` sends its SET and GET to the other gateway;
// `tolerex bench --addr it,other` moves its connections there.
func TestClientMovesOnFromAGatewayThatCannotServe(t *testing.T) {
	c := raftGroup(t, 3, 3, "--fault-injection")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, ok := c.Leader(ctx)
	if !ok {
		t.Fatal("no gateway leads in a healthy group")
	}
	var broken, other *local.Node
	for _, g := range c.Gateways {
		switch {
		case g == leader:
		case broken == nil:
			broken = g
		default:
			other = g
		}
	}
	crashConsensus(t, broken, 11)
	Eventually(t, 10*time.Second, broken.Name+" to refuse requests", func() (bool, string) {
		cl, err := client.Dial(ctx, broken.ClientAddr, client.Options{DialTimeout: time.Second, IOTimeout: 5 * time.Second})
		if err != nil {
			return false, err.Error()
		}
		defer cl.Close()
		reply, _ := cl.Do("GET 1")
		return strings.HasPrefix(reply, "ERROR: gateway unavailable: consensus stopped"), reply
	})
	clientMovesOn(t, broken, other, 1, "consensus stopped")

	// `tolerex bench` leaves it too: connections 0 and 2 start on it, each
	// has its one request refused, then goes to the other gateway and
	// sends it again there: all 400 measured SETs are served by it.
	bench, code := RunChild(t, bin, ChildOptions{Args: []string{"bench", "--json", "--addr", broken.ClientAddr + "," + other.ClientAddr,
		"--op", "set", "--conns", "4", "--ops", "400", "--warmup", "0s", "--offset", "1000"}}, 60*time.Second)
	var res loadgen.Result
	if err := json.Unmarshal([]byte(bench.Stdout()), &res); err != nil {
		t.Fatalf("bench exit %d, output not JSON: %v\n%s", code, err, bench.Output())
	}
	if res.LeftUnavailable != 2 || res.Gateways[0].LeftUnavailable != 2 || res.Gateways[1].ReconnectsTo != 2 ||
		res.Errors != 0 || res.Resent != 2 || res.Gateways[0].Resent != 2 || res.Ops != 400 || res.Gateways[1].Ops != 400 {
		t.Errorf("bench: %+v\nwant its 2 connections on %s to leave it after a refusal each, sent again, and all 400 measured SETs served by %s",
			res, broken.ClientAddr, other.ClientAddr)
	}
	t.Logf("tolerex bench: %d SETs served by %s, %d refused and sent again, %d errors, %d connections left %s",
		res.Gateways[1].Ops, other.ClientAddr, res.Resent, res.Errors, res.LeftUnavailable, broken.ClientAddr)

	// A bulk run of `tolerex client` leaves it at the first refusal and
	// sends the refused ids to the other gateway: all 300 are stored.
	bulk, code := RunChild(t, bin, ChildOptions{Args: []string{"client", "--addr", broken.ClientAddr + "," + other.ClientAddr, "--offset", "200000"},
		Stdin: "300 SET bulk\n"}, 60*time.Second)
	summary := strings.TrimSpace(bulk.Stdout())
	if code != 0 || !strings.HasPrefix(summary, "bulk SET ids 200000..200299: 300 ops") || strings.Contains(summary, "errors") ||
		!strings.Contains(summary, ", left 1 unavailable gateway ("+broken.ClientAddr+" refused ") ||
		!strings.HasSuffix(summary, ", sent again to "+other.ClientAddr+")") {
		t.Fatalf("bulk run exit %d, summary %q: want 300 ids, no error, one move from %s to %s\n%s", code, summary, broken.ClientAddr, other.ClientAddr, bulk.Output())
	}
	reader, err := client.Dial(ctx, other.ClientAddr, client.Options{DialTimeout: time.Second, IOTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v", other.ClientAddr, err)
	}
	defer reader.Close()
	for id := 200000; id < 200300; id++ {
		if reply, err := reader.Do(fmt.Sprintf("GET %d", id)); err != nil || reply != fmt.Sprintf("bulk_%d", id) {
			t.Fatalf("GET %d: %q, %v; want bulk_%d", id, reply, err, id)
		}
	}
	t.Logf("tolerex client bulk run: %s", summary)
}

// clientMovesOn runs `tolerex client --addr broken,other` on a SET and a
// GET of id: broken refuses with "gateway unavailable: <reason>...", so
// both must be served by other, and stderr must say the client moved on.
func clientMovesOn(t *testing.T, broken, other *local.Node, id int64, reason string) {
	t.Helper()
	run, code := RunChild(t, bin, ChildOptions{Args: []string{"client", "--addr", broken.ClientAddr + "," + other.ClientAddr},
		Stdin: fmt.Sprintf("SET %d moved\nGET %d\n", id, id)}, 30*time.Second)
	if code != 0 || run.Stdout() != "OK\nmoved\n" {
		t.Fatalf("tolerex client exit %d, stdout %q, want OK and the value\n%s", code, run.Stdout(), run.Output())
	}
	if want := "gateway " + broken.ClientAddr + " cannot serve (gateway unavailable: " + reason; !strings.Contains(run.Stderr(), want) {
		t.Errorf("stderr %q, want it to say it moved on: %q", run.Stderr(), want)
	}
	t.Logf("tolerex client: %s", strings.TrimSpace(run.Stderr()))
}

// TestGatewayStopDrainsItsClients runs `tolerex bench --addr g1,g2,g3`
// with pipelined SETs and stops a follower, then (after the follower is
// back) the leader, with SIGTERM while it runs. A stopping gateway drains:
// it answers every request it took (the leader after handing its
// leadership over), refuses the later ones with the definite "gateway
// unavailable: this gateway is shutting down ...", and closes each
// connection once quiet. So no connection is lost with requests in
// flight, the connections move on and send the refused SETs again, and
// the client sees no error at all; every acknowledged write reads back.
func TestGatewayStopDrainsItsClients(t *testing.T) {
	c := raftGroup(t, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, ok := c.Leader(ctx)
	if !ok {
		t.Fatal("no gateway leads in a healthy group")
	}
	follower := others(c.Gateways, leader)[0]
	addrs := c.ClientAddrs()
	index := func(g *local.Node) int {
		for i, a := range addrs {
			if a == g.ClientAddr {
				return i
			}
		}
		t.Fatalf("%s is not in %v", g.ClientAddr, addrs)
		return -1
	}

	const (
		offset   = 7_000_000
		size     = 32
		duration = 16 * time.Second
	)
	bench := StartChild(t, bin, ChildOptions{Args: []string{"bench", "--json",
		"--addr", strings.Join(addrs, ","), "--op", "set", "--conns", "6", "--depth", "8",
		"--duration", duration.String(), "--warmup", "0s", "--size", strconv.Itoa(size),
		"--keys", "1000000000", "--offset", strconv.Itoa(offset), "--io-timeout", "20s", "--csv", filepath.Join(t.TempDir(), "series.csv")}})
	started := time.Now()
	reader := dialAny(t, addrs)
	defer reader.Close()
	acknowledged := func(key int64) func() (bool, string) {
		return func() (bool, string) {
			if exited, code := bench.Exited(); exited {
				t.Fatalf("bench exited %d early\n%s", code, bench.Output())
			}
			_, found, err := reader.Get(key)
			return err == nil && found, fmt.Sprintf("GET %d: found %v, %v", key, found, err)
		}
	}
	Eventually(t, 20*time.Second, "bench writes acknowledged", acknowledged(offset+500))

	stopAndCheck := func(g *local.Node) {
		t.Helper()
		if err := g.Stop(15 * time.Second); err != nil {
			t.Fatalf("SIGTERM %s: %v\n%s", g.Name, err, g.LogTail(4000))
		}
		line := grepLines(g.LogTail(200_000), "client connections drained before stopping")
		m := regexp.MustCompile(`"took":([0-9.]+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s did not drain its clients before stopping: %q", g.Name, grepLines(g.LogTail(200_000), "drain"))
		}
		t.Logf("%s stopped with SIGTERM: clients drained in %s ms", g.Name, m[1])
	}
	stopAndCheck(follower)
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	if err := follower.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	stopAndCheck(leader)
	if after := time.Since(started); after > duration-5*time.Second {
		t.Fatalf("the leader stopped %v into a %v run: too late to see writes after it", after, duration)
	}

	res, code := waitBenchResult(t, bench, duration+60*time.Second)
	t.Logf("bench exit %d: %d acknowledged, %d errors (%d lost in flight), %d refused and sent again, %d reconnects (%d after a refusal), gateways %+v, first error %q",
		code, res.Sets, res.Errors, res.LostInFlight, res.Resent, res.Reconnects, res.LeftUnavailable, res.Gateways, res.FirstError)
	if code != 0 || res.Errors != 0 || res.Mismatches != 0 {
		t.Errorf("exit %d, %d errors (%d lost in flight, %d indeterminate), %d mismatches; want none: first error %q",
			code, res.Errors, res.LostInFlight, res.IndeterminateErrors, res.Mismatches, res.FirstError)
	}
	for _, g := range []*local.Node{follower, leader} {
		if seen := res.Gateways[index(g)]; seen.LostConns != 0 || seen.LeftUnavailable == 0 || seen.Resent == 0 {
			t.Errorf("stopped gateway %s: %+v; want its connections to leave it after a refusal, sent again, none lost", g.Name, seen)
		}
	}
	if res.ConnsGivenUp != 0 || res.Reconnects != res.LeftUnavailable {
		t.Errorf("%d reconnects, %d after a refusal, %d connections given up", res.Reconnects, res.LeftUnavailable, res.ConnsGivenUp)
	}
	// Writes were acknowledged in the last two seconds, after both stops.
	if n := len(res.Series); n < 3 || res.Series[n-1].Ops+res.Series[n-2].Ops == 0 {
		t.Errorf("no write acknowledged at the end of the run: series %+v", res.Series)
	}
	checkBenchWritesReadBack(t, clientAddrs(others(c.Gateways, leader)), offset, size, res)
}
