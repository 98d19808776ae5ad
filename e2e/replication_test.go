package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/gateway/client"
)

// TestReplicationTolerance checks that every message lands on exactly
// tolerance distinct live members, for tolerance 1, 2 and 3 over four
// members, and that least_loaded spreads the copies evenly.
func TestReplicationTolerance(t *testing.T) {
	for _, tolerance := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("tolerance=%d", tolerance), func(t *testing.T) {
			c := NewCluster(t, bin, Options{Members: 4, Tolerance: tolerance})
			c.DumpLogsOnFailure(t)
			c.Start(t)
			cl := c.Dial(t)
			led := newLedger()
			const n = 400
			pipelineSet(t, cl, led, 0, n, "v")
			for id := int64(0); id < n; id++ {
				loc := location(t, c, id)
				seen := map[string]bool{}
				for _, r := range loc.Replicas {
					if !r.Alive {
						t.Fatalf("id %d on a member that is not alive: %+v", id, loc)
					}
					seen[r.ID] = true
				}
				if len(loc.Replicas) != tolerance || len(seen) != tolerance {
					t.Fatalf("id %d stored on %d replicas (%d distinct), want %d: %+v", id, len(loc.Replicas), len(seen), tolerance, loc)
				}
			}
			st := c.Status(t)
			var lo, hi int64 = 1 << 62, 0
			for _, m := range st.Members {
				lo, hi = min(lo, m.Indexed), max(hi, m.Indexed)
			}
			t.Logf("copies per member: %+v", indexedCounts(st.Members))
			want := int64(n * tolerance / 4)
			if hi-lo > 2 || lo < want-2 {
				t.Errorf("least_loaded spread copies unevenly: min %d, max %d, ideal %d", lo, hi, want)
			}
			led.verify(t, cl)
		})
	}
}

// TestBalancerP2C runs the power-of-two-choices balancer.
func TestBalancerP2C(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 4, Tolerance: 2, GatewayArgs: []string{"--balancer", "p2c"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	const n = 2000
	pipelineSet(t, cl, led, 0, n, "p2c-")
	st := c.Status(t)
	if st.Balancer != "p2c" {
		t.Fatalf("balancer %q, want p2c", st.Balancer)
	}
	ideal := float64(n * 2 / 4)
	for _, m := range st.Members {
		if dev := float64(m.Indexed)/ideal - 1; dev > 0.15 || dev < -0.15 {
			t.Errorf("member %s holds %d copies, ideal %.0f: p2c spread is off by %.0f%%", m.ID, m.Indexed, ideal, 100*dev)
		}
	}
	t.Logf("copies per member: %+v", indexedCounts(st.Members))
	led.verify(t, cl)
}

func indexedCounts(members []leader.MemberStatus) map[string]int64 {
	out := map[string]int64{}
	for _, m := range members {
		out[m.ID] = m.Indexed
	}
	return out
}

// TestNotEnoughMembers checks the have/need error and that a failed SET
// never becomes visible, neither as a new id nor as an overwrite.
func TestNotEnoughMembers(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	if err := cl.Set(1, []byte("original")); err != nil {
		t.Fatalf("SET 1: %v", err)
	}
	c.Members[1].Kill(t)
	waitMemberAlive(t, c, c.Members[1].NodeAddr, false, 5*time.Second)

	err := cl.Set(2, []byte("never stored"))
	var se *client.ServerError
	if !errors.As(err, &se) || se.Reply != "ERROR: not enough live members: have 1, need 2" {
		t.Fatalf("SET with one of two members alive: %v, want the have/need error", err)
	}
	if _, found, err := cl.Get(2); err != nil || found {
		t.Fatalf("GET of a failed SET: found=%v err=%v, want NOT_FOUND", found, err)
	}
	if err := cl.Set(1, []byte("overwrite that fails")); !errors.As(err, &se) {
		t.Fatalf("overwrite with too few members: %v, want an error", err)
	}
	if got, found, err := cl.Get(1); err != nil || !found || string(got) != "original" {
		t.Fatalf("GET 1 after a failed overwrite = %q found=%v err=%v, want the original", got, found, err)
	}

	// Back to two members: writes succeed again.
	c.Members[1].Start(t)
	waitMemberAlive(t, c, c.Members[1].NodeAddr, true, 10*time.Second)
	if err := cl.Set(2, []byte("stored now")); err != nil {
		t.Fatalf("SET after the member returned: %v", err)
	}
	if got, _, err := cl.Get(2); err != nil || string(got) != "stored now" {
		t.Fatalf("GET 2 = %q %v", got, err)
	}
}

// TestToleranceAboveMembers asks for more copies than there are members:
// the gateway says so on /readyz (it can serve no write), and a SET fails.
func TestToleranceAboveMembers(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 3})
	c.DumpLogsOnFailure(t)
	c.Gateway.Start(t)
	for _, m := range c.Members {
		m.Start(t)
		m.WaitReady(t, 20*time.Second)
	}
	c.WaitLive(t, 2, 20*time.Second)
	Eventually(t, 10*time.Second, "gateway not ready for lack of members", func() (bool, string) {
		status, body := readyz(c.Gateway)
		return status == 503 && strings.Contains(body, "2 live members, tolerance 3"),
			fmt.Sprintf("gateway /readyz %d %q, want 503 naming 2 live members and tolerance 3", status, body)
	})
	cl := c.Dial(t)
	err := cl.Set(1, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "have 2, need 3") {
		t.Fatalf("SET with tolerance 3 and 2 members: %v, want have 2, need 3", err)
	}
}
