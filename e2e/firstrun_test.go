package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
)

// eventually polls cond every 50 ms until it holds, and fails the test
// with cond's last explanation if it still does not after limit.
func eventually(t testing.TB, limit time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %s: %s", limit, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLeaderActive waits until the gateway with the given admin address
// serves requests: /readyz is 200, or 503 only for lack of live members
// (a gateway started without members is never ready, but its leader is
// active and answers).
func waitLeaderActive(t testing.TB, c *Child, adminAddr string) {
	t.Helper()
	view := AdminView("gateway", adminAddr)
	eventually(t, 20*time.Second, func() (bool, string) {
		if exited, code := c.Exited(); exited {
			t.Fatalf("gateway exited (code %d) before its leader was active\n%s", code, c.Output())
		}
		status, body := readyz(view)
		return status == 200 || (status == 503 && strings.Contains(body, "live members")),
			"gateway /readyz: " + strings.TrimSpace(body)
	})
}

// TestAPIMessagesShowsReplicaFigures: /api/messages/{id} splits the
// version into its epoch and counter, gives the message's size, and shows
// each replica with the same figures /api/cluster shows for that member
// (it used to show zero messages and bytes).
func TestAPIMessagesShowsReplicaFigures(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 200, "figures-")
	if err := cl.Set(7, []byte("seven")); err != nil {
		t.Fatalf("SET 7: %v", err)
	}

	// Members report their figures in heartbeats; compare once a
	// location and the cluster status read around it agree.
	eventually(t, 10*time.Second, func() (bool, string) {
		loc := location(t, c, 7)
		st := c.Status(t)
		if !loc.Found || len(loc.Replicas) != 2 {
			return false, fmt.Sprintf("location of 7: %+v, want found with 2 replicas", loc)
		}
		if loc.Epoch != st.Epoch || loc.Version != loc.Epoch<<40|loc.Counter || loc.Counter == 0 {
			return false, fmt.Sprintf("version %d epoch %d counter %d, cluster epoch %d: want version = epoch<<40|counter, epoch = the cluster's",
				loc.Version, loc.Epoch, loc.Counter, st.Epoch)
		}
		if loc.Size != uint32(len("seven")) {
			return false, fmt.Sprintf("size %d, want %d", loc.Size, len("seven"))
		}
		for _, r := range loc.Replicas {
			var m *leader.MemberStatus
			for i := range st.Members {
				if st.Members[i].Slot == r.Slot {
					m = &st.Members[i]
				}
			}
			if m == nil {
				return false, fmt.Sprintf("replica slot %d not in /api/cluster", r.Slot)
			}
			if r.Messages == 0 || r.Bytes == 0 || r.Indexed == 0 {
				return false, fmt.Sprintf("replica %s shows messages=%d bytes=%d indexed=%d, want non-zero", r.ID, r.Messages, r.Bytes, r.Indexed)
			}
			if r.ID != m.ID || r.Messages != m.Messages || r.Bytes != m.Bytes || r.Indexed != m.Indexed || r.Alive != m.Alive || r.StorageReady != m.StorageReady {
				return false, fmt.Sprintf("replica %+v differs from /api/cluster's %+v", r, *m)
			}
		}
		return true, ""
	})
}
