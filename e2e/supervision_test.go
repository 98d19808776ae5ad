package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/tree"
)

// storageRestarts finds member/storage of the member with the given node
// address in the gateway's /api/tree.
func storageRestarts(t *testing.T, c *Cluster, nodeAddr string) (restarts uint32, found bool) {
	t.Helper()
	for _, node := range c.Tree(t).Nodes {
		if node.NodeAddress != nodeAddr {
			continue
		}
		var walk func([]tree.ActorView) bool
		walk = func(actors []tree.ActorView) bool {
			for _, a := range actors {
				if a.ID == "member/storage" {
					restarts, found = a.Restarts, true
					return true
				}
				if walk(a.Children) {
					return true
				}
			}
			return false
		}
		walk(node.Actors)
	}
	return restarts, found
}

// TestStorageActorCrash crashes a member's storage actor through fault
// injection: its supervisor restarts it, the restart shows in the live
// tree, and every message is read back. A storage actor that keeps
// crashing is stopped, its member stops taking writes, and the cluster
// goes on with the others.
func TestStorageActorCrash(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, FaultInjection: true,
		MemberArgs: []string{"--storage-max-restarts", "4", "--storage-max-backoff", "200ms"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 500, "v")
	victim := c.Members[0]
	if r, ok := storageRestarts(t, c, victim.NodeAddr); !ok || r != 0 {
		t.Fatalf("before the crash: member/storage restarts=%d found=%v", r, ok)
	}

	if code := victim.Post(t, "/debug/fault/storage-panic"); code != http.StatusOK {
		t.Fatalf("fault injection: HTTP %d", code)
	}
	Eventually(t, 10*time.Second, "the tree to show the storage actor's restart", func() (bool, string) {
		r, _ := storageRestarts(t, c, victim.NodeAddr)
		return r == 1, fmt.Sprintf("%d restarts; member log:\n%s", r, victim.LogTail(3000))
	})
	victim.WaitReady(t, 10*time.Second)
	led.verify(t, cl)
	// Reads served by the victim alone: stop the others' copies from
	// mattering by killing one other member.
	c.Members[1].Kill(t)
	waitMemberAlive(t, c, c.Members[1].NodeAddr, false, 5*time.Second)
	led.verify(t, cl)
	c.Members[1].Start(t)
	waitMemberAlive(t, c, c.Members[1].NodeAddr, true, 10*time.Second)

	// Crash it past the restart limit (4 within a minute here): the
	// supervisor stops it for good and the member reports itself not ready.
	for i := 0; i < 6; i++ {
		victim.Post(t, "/debug/fault/storage-panic")
		time.Sleep(150 * time.Millisecond)
	}
	Eventually(t, 30*time.Second, "the member not ready after its storage actor crashed 7 times", func() (bool, string) {
		return !victim.Ready(), "still ready; member log:\n" + victim.LogTail(3000)
	})
	Eventually(t, 10*time.Second, "the gateway to see the member's storage not ready", func() (bool, string) {
		return !storageReady(t, c, victim.NodeAddr), "still ready"
	})
	if st := c.Status(t); st.LiveCount != 2 {
		t.Fatalf("live members %d, want 2 once the victim's storage stopped", st.LiveCount)
	}
	pipelineSet(t, cl, led, 1000, 1200, "after-")
	for id := int64(1000); id < 1200; id += 50 {
		for _, r := range location(t, c, id).Replicas {
			if r.NodeAddress == victim.NodeAddr {
				t.Fatalf("id %d stored on a member whose storage is stopped", id)
			}
		}
	}
	led.verify(t, cl)
}

func storageReady(t *testing.T, c *Cluster, nodeAddr string) bool {
	for _, m := range c.Status(t).Members {
		if m.NodeAddress == nodeAddr {
			return m.Alive && m.StorageReady
		}
	}
	t.Fatalf("member %s unknown to the gateway", nodeAddr)
	return false
}
