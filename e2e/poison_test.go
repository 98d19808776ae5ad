package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/client"
)

// Regression tests for issue 8: two routine faults once made the leader
// log an index entry naming one member twice; the state machine rejected
// it, and on the next gateway restart the leader crashed on it while
// replaying its log, ten times, and was stopped for good: every stored
// message became unreachable. Each test provokes one trigger, SIGKILLs the
// gateway, and checks that it is ready again within seconds, that every
// SET that got OK is readable and that no SET that got an ERROR is.

// readyAgainLimit is how long a restarted gateway may take to serve.
const readyAgainLimit = 10 * time.Second

// Trigger one: two of three members paused (SIGSTOP) while SETs are
// pipelined; both copies of a write time out at once, and both
// replacements used to pick the third member.
func TestTwoPausedMembersThenGatewayKill(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	c.Start(t)

	c.Members[0].Pause(t)
	c.Members[1].Pause(t)
	cl := c.Dial(t)
	const first, count = 1000, 20
	acked, refused := pipelineSetOutcomes(t, cl, first, first+count, "paused-")
	c.Members[0].Resume(t)
	c.Members[1].Resume(t)
	t.Logf("with two members paused: %d SETs acknowledged, %d refused", len(acked), len(refused))
	if len(acked)+len(refused) != count {
		t.Fatalf("%d replies to %d SETs", len(acked)+len(refused), count)
	}
	for id, reply := range refused {
		if !strings.HasPrefix(reply, "ERROR: could not store") && !strings.HasPrefix(reply, "ERROR: not enough live members") {
			t.Errorf("SET %d: %q; want a definite replication error", id, reply)
		}
	}

	restartGatewayAndCheck(t, c, acked, refused)
}

// Trigger two: the gateway paused for 3 s (more than the heartbeat and
// store timeouts) under writes; on SIGCONT it used to time out every
// member at once.
func TestGatewayPausedUnderWritesThenKilled(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	c.Start(t)

	ctx, cancel := context.WithCancel(context.Background())
	gen := &loadGenerator{c: c, led: newLedger()}
	gen.start(ctx, t, 4, 5_000_000)
	waitForAcks(t, gen, 200)
	c.Gateway.Pause(t)
	pause := time.NewTimer(3 * time.Second)
	<-pause.C
	c.Gateway.Resume(t)
	resumed := len(gen.snapshot())
	waitForAcks(t, gen, resumed+200)
	cancel()
	results := gen.wait()

	acked, _ := gen.led.snapshot()
	refused := make(map[int64]string)
	for _, r := range results {
		var se *client.ServerError
		if r.op == "SET" && errors.As(r.err, &se) {
			refused[r.id] = se.Error()
		}
	}
	t.Logf("gateway paused 3 s under load: %d operations, %d SETs acknowledged, %d refused", len(results), len(acked), len(refused))
	if log := c.Gateway.Log(); strings.Contains(log, "missed its heartbeats") {
		t.Errorf("the gateway's own pause made it declare members down:\n%s", grepLines(log, "missed its heartbeats"))
	}

	restartGatewayAndCheck(t, c, acked, refused)
}

// restartGatewayAndCheck SIGKILLs and restarts the gateway, then checks
// that it serves again within readyAgainLimit, that nothing was logged the
// state machine rejects, that every acknowledged SET reads back and that
// no refused SET does.
func restartGatewayAndCheck(t *testing.T, c *Cluster, acked map[int64]string, refused map[int64]string) {
	t.Helper()
	c.Gateway.Kill(t)
	c.Gateway.Start(t)
	restarted := time.Now()
	Eventually(t, readyAgainLimit, "gateway ready after SIGKILL", func() (bool, string) {
		code, body := readyz(c.Gateway)
		return code == 200, fmt.Sprintf("/readyz %d %s", code, body)
	})
	t.Logf("gateway ready %v after its restart", time.Since(restarted).Round(time.Millisecond))
	c.WaitLive(t, len(c.Members), 20*time.Second)

	if rejected := metricSum(t, c.Gateway, "tolerex_meta_rejected_entries_total"); rejected != 0 {
		t.Errorf("tolerex_meta_rejected_entries_total = %v after the restart; want 0", rejected)
	}
	if log := c.Gateway.Log(); strings.Contains(log, "named twice") {
		t.Errorf("an entry naming a member twice reached the log:\n%s", grepLines(log, "named twice"))
	}

	cl := c.Dial(t)
	led := newLedger()
	for id, v := range acked {
		led.set(id, v)
	}
	led.verify(t, cl)
	for id, reply := range refused {
		if got, found, err := cl.Get(id); err != nil || found {
			t.Errorf("SET %d was refused (%s) yet GET = %q found=%v err=%v; want NOT_FOUND", id, reply, got, found, err)
		}
	}
	// And the store still takes writes.
	if err := cl.Set(1, []byte("after")); err != nil {
		t.Fatalf("SET after the restart: %v", err)
	}
}

// pipelineSetOutcomes pipelines SETs of ids [from, to) and returns the
// acknowledged ones with their values and the refused ones with their
// error replies. Any other reply, or no reply, fails the test.
func pipelineSetOutcomes(t *testing.T, cl *client.Client, from, to int64, prefix string) (acked, refused map[int64]string) {
	t.Helper()
	acked, refused = make(map[int64]string), make(map[int64]string)
	for id := from; id < to; id++ {
		if err := cl.Send([]byte("SET " + strconv.FormatInt(id, 10) + " " + prefix + strconv.FormatInt(id, 10))); err != nil {
			t.Fatalf("send SET %d: %v", id, err)
		}
	}
	if err := cl.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for id := from; id < to; id++ {
		reply, err := cl.ReadReply()
		switch {
		case err != nil:
			t.Fatalf("reply to SET %d: %v", id, err)
		case string(reply) == "OK":
			acked[id] = prefix + strconv.FormatInt(id, 10)
		case strings.HasPrefix(string(reply), "ERROR: "):
			refused[id] = string(reply)
		default:
			t.Fatalf("SET %d: unexpected reply %q", id, reply)
		}
	}
	return acked, refused
}

// waitForAcks waits until the load generator has at least n results.
func waitForAcks(t *testing.T, gen *loadGenerator, n int) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%d operations under load", n), func() (bool, string) {
		got := len(gen.snapshot())
		return got >= n, fmt.Sprintf("%d operations", got)
	})
}

// metricSum returns the sum of every series of a counter or gauge family
// on p's /metrics (0 if the family is absent).
func metricSum(t *testing.T, p *Process, family string) float64 {
	t.Helper()
	f, ok := MetricsOf(t, p)[family]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// grepLines returns the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestUnreadableMetadataLogIsNotReady damages the gateway's Raft log on
// disk: the gateway stays up without crashing in a loop, /readyz says why
// it cannot serve, and client requests are refused with that reason at
// once instead of waiting for their deadline.
func TestUnreadableMetadataLogIsNotReady(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	led := newLedger()
	pipelineSet(t, c.Dial(t), led, 1, 200, "v")
	c.Gateway.Stop(t)

	manifests, err := filepath.Glob(filepath.Join(c.Gateway.DataDir, "raft", "MANIFEST-*"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no MANIFEST in the gateway's Raft log: %v", err)
	}
	for _, m := range manifests {
		info, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		flipFileBytes(t, m, 0, int(min(info.Size(), 64)))
	}

	c.Gateway.Start(t)
	var body string
	Eventually(t, 10*time.Second, "gateway to report its unreadable log", func() (bool, string) {
		var code int
		code, body = readyz(c.Gateway)
		return code == 503 && strings.Contains(body, "raft log unusable"), fmt.Sprintf("/readyz %d %s", code, body)
	})
	t.Logf("/readyz: %s", body)
	cl := c.Dial(t)
	asked := time.Now()
	_, _, err = cl.Get(1)
	if took := time.Since(asked); took > 2*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "gateway unavailable") {
		t.Errorf("GET with an unreadable log: %v; want ERROR: gateway unavailable: ...", err)
	}
	if n := strings.Count(c.Gateway.Log(), "crashed"); n != 0 {
		t.Errorf("an actor crashed %d times on an unreadable log; want it to stay up, refusing requests", n)
	}
	if exited, err := c.Gateway.Exited(); exited {
		t.Fatalf("the gateway exited: %v", err)
	}
}
