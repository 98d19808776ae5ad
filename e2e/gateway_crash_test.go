package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGatewayCrashRestart SIGKILLs the gateway after a mix of SETs,
// overwrites and DELs, restarts it on the same data dir and reads every
// acknowledged result back. A small --snapshot-entries makes the
// restart load a snapshot plus the log entries after it.
func TestGatewayCrashRestart(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, GatewayArgs: []string{"--snapshot-entries", "10"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 3000, "first-")
	pipelineSet(t, cl, led, 1000, 1500, "second-") // overwrites
	for id := int64(2000); id < 2100; id++ {
		found, err := cl.Del(id)
		if err != nil || !found {
			t.Fatalf("DEL %d: found=%v err=%v", id, found, err)
		}
		led.del(id)
	}
	if found, err := cl.Del(99_999); err != nil || found {
		t.Fatalf("DEL of a missing id: found=%v err=%v, want NOT_FOUND", found, err)
	}
	epochBefore := c.Status(t).Epoch

	c.Gateway.Kill(t)
	c.Gateway.Start(t)
	c.Gateway.WaitReady(t, 20*time.Second)
	c.WaitLive(t, 3, 10*time.Second)
	if !strings.Contains(c.Gateway.Log(), "snapshot taken") {
		t.Errorf("no snapshot was taken; the test meant to restart from one")
	}
	st := c.Status(t)
	if st.Epoch <= epochBefore {
		t.Errorf("epoch after restart %d, before %d: versions minted after a restart must exceed older ones", st.Epoch, epochBefore)
	}
	if want := 3000 - 100; st.Messages != want {
		t.Errorf("index holds %d messages after restart, want %d", st.Messages, want)
	}
	cl = c.Dial(t)
	led.verify(t, cl)

	// Writes after the restart overwrite older versions correctly.
	pipelineSet(t, cl, led, 1200, 1300, "third-")
	led.verify(t, cl)
	for id := int64(1200); id < 1300; id += 33 {
		if loc := location(t, c, id); loc.Version>>40 != st.Epoch {
			t.Errorf("id %d has version %d from epoch %d, want epoch %d", id, loc.Version, loc.Version>>40, st.Epoch)
		}
	}
}

// TestGatewayGracefulRestart stops the gateway with SIGTERM (clean
// shutdown) and restarts it twice.
func TestGatewayGracefulRestart(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	led := newLedger()
	for round := 0; round < 2; round++ {
		cl := c.Dial(t)
		base := int64(round * 1000)
		pipelineSet(t, cl, led, base, base+300, fmt.Sprintf("round%d-", round))
		cl.Close()
		c.Gateway.Stop(t)
		c.Gateway.Start(t)
		c.Gateway.WaitReady(t, 20*time.Second)
		c.WaitLive(t, 2, 10*time.Second)
	}
	led.verify(t, c.Dial(t))
}
