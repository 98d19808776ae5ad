package e2e

import (
	"context"
	"sort"
	"testing"
	"time"
)

// TestMemberCrashUnderLoad SIGKILLs one of three members (tolerance 2)
// while clients write and read: no client sees an error, nothing
// acknowledged is lost, requests in flight to the dead member fail over
// at once instead of waiting for a timeout, and the member comes back
// with its data.
func TestMemberCrashUnderLoad(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	led := newLedger()
	cl := c.Dial(t)
	pipelineSet(t, cl, led, 0, 600, "before-")

	victim := c.Members[0]
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	gen := &loadGenerator{c: c, led: led}
	gen.start(ctx, t, 4, 10_000)
	waitForAcks(t, gen, 200) // the load runs before the kill
	killedAt := time.Now()
	victim.Kill(t)
	down := waitMemberAlive(t, c, victim.NodeAddr, false, 5*time.Second)
	t.Logf("gateway saw %s down %s after SIGKILL", down.ID, time.Since(killedAt).Round(time.Millisecond))
	results := gen.wait()

	var errs int
	var during []time.Duration
	for _, r := range results {
		if r.err != nil {
			errs++
			if errs <= 5 {
				t.Errorf("%s %d failed: %v", r.op, r.id, r.err)
			}
		}
		if r.started.Before(killedAt.Add(time.Second)) && r.started.Add(r.took).After(killedAt) {
			during = append(during, r.took)
		}
	}
	if errs > 0 {
		t.Fatalf("%d of %d operations failed around the member crash", errs, len(results))
	}
	sort.Slice(during, func(i, j int) bool { return during[i] < during[j] })
	if len(during) == 0 {
		t.Fatalf("no operation overlapped the crash: %d results", len(results))
	}
	slowest := during[len(during)-1]
	t.Logf("%d operations, %d overlapping the crash, slowest of those %s", len(results), len(during), slowest)
	// The store timeout is 2 s: an operation that waited for it instead of
	// failing over on the broken connection takes at least that long.
	if slowest >= time.Second {
		t.Errorf("an operation in flight during the crash took %s: it waited for a timeout instead of failing over", slowest)
	}
	led.verify(t, cl)

	// New writes keep landing on two live members.
	pipelineSet(t, cl, led, 100_000, 100_200, "degraded-")
	for id := int64(100_000); id < 100_200; id += 37 {
		loc := location(t, c, id)
		if len(loc.Replicas) != 2 {
			t.Fatalf("id %d on %d replicas, want 2: %+v", id, len(loc.Replicas), loc)
		}
		for _, r := range loc.Replicas {
			if r.NodeAddress == victim.NodeAddr {
				t.Fatalf("id %d stored on the dead member: %+v", id, loc)
			}
		}
	}

	// The member restarts on its data dir and rejoins with its data.
	var before memberInfo
	victim.Start(t)
	victim.WaitReady(t, 20*time.Second)
	waitMemberAlive(t, c, victim.NodeAddr, true, 10*time.Second)
	victim.GetJSON(t, "/api/cluster", &before)
	if before.Messages == 0 {
		t.Fatalf("restarted member reports no stored messages: %+v", before)
	}
	// Kill another member: messages whose copies were on it and on the
	// restarted member are now served by the restarted member alone.
	c.Members[1].Kill(t)
	waitMemberAlive(t, c, c.Members[1].NodeAddr, false, 5*time.Second)
	led.verify(t, cl)
	pipelineSet(t, cl, led, 200_000, 200_100, "after-restart-")
	led.verify(t, cl)
}

// memberInfo is a member's own /api/cluster.
type memberInfo struct {
	MemberID     string `json:"member_id"`
	Registered   bool   `json:"registered"`
	StorageReady bool   `json:"storage_ready"`
	Messages     uint64 `json:"messages"`
	Bytes        uint64 `json:"bytes"`
}
