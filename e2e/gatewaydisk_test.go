package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos/diskfault"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// gatewayWatermark is the --min-free-bytes of the gateway on a small
// filesystem in TestGatewayDiskFull.
const gatewayWatermark = 8 << 20

// TestGatewayDiskFull puts a lone gateway's data dir on a 32 MiB tmpfs
// with an 8 MiB watermark, then fills that filesystem with a file until
// less than the watermark is free (as another program's files would).
// Expected: the gateway does not crash; /readyz says "disk full" with the
// figures; a SET gets a definite "ERROR: disk full: ..." and is never
// readable; GETs still work. Once the file is removed, SETs work again.
// Without the guard the Raft log's write fails and the gateway crashes,
// then cannot vote on its full disk ("no Raft leader known").
func TestGatewayDiskFull(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--min-free-bytes", strconv.Itoa(gatewayWatermark)}})
	c.DumpLogsOnFailure(t)
	gw := c.Gateway
	mountTmpfs(t, gw, "32m")
	c.Start(t)
	cl := c.Dial(t)
	for id := int64(0); id < 50; id++ {
		if err := cl.Set(id, []byte(fmt.Sprintf("before %d", id))); err != nil {
			t.Fatalf("SET %d before the disk fills: %v", id, err)
		}
	}
	pid := gw.Pid()

	filler := filepath.Join(gw.DataDir, "filler")
	fill(t, filler, gatewayWatermark/2)
	Eventually(t, 10*time.Second, "the gateway's /readyz to say disk full", func() (bool, string) {
		status, body := readyz(gw)
		return status == http.StatusServiceUnavailable && strings.Contains(body, "disk full: the Raft log's filesystem has "), fmt.Sprintf("%d %s", status, body)
	})
	_, body := readyz(gw)
	t.Logf("/readyz of the full gateway: %s", strings.TrimSpace(body))
	if want := fmt.Sprintf("below the %d-byte watermark", gatewayWatermark); !strings.Contains(body, want) {
		t.Errorf("/readyz %q does not give the watermark (%q)", body, want)
	}
	assertRaftDiskMetrics(t, gw, true)

	// The disk fills further: the reason gives the new figure.
	fill(t, filler+"2", gatewayWatermark/4)
	Eventually(t, 10*time.Second, "/readyz to give the new free space", func() (bool, string) {
		_, body := readyz(gw)
		free, ok := freeInReason(body)
		return ok && free <= gatewayWatermark/4, body
	})

	const refused = 1000
	err := cl.Set(refused, []byte("while full"))
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Reply, "ERROR: disk full: ") || codec.ClassifyError(se.Reply) != codec.Definite {
		t.Fatalf("SET on the full gateway: %v; want a definite ERROR: disk full: ...", err)
	}
	t.Logf("SET on the full gateway: %s", se.Reply)
	for id := int64(0); id < 50; id += 7 {
		v, found, err := cl.Get(id)
		if err != nil || !found || string(v) != fmt.Sprintf("before %d", id) {
			t.Fatalf("GET %d while the disk is full = %q found=%v err=%v", id, v, found, err)
		}
	}
	if gw.Pid() != pid || syscall.Kill(pid, 0) != nil {
		t.Fatalf("the gateway process %d is gone (now %d)", pid, gw.Pid())
	}
	if n := strings.Count(gw.Log(), "disk full: the Raft log takes no new entries"); n != 1 {
		t.Errorf("the gateway logged disk full %d times, want once", n)
	}

	for _, f := range []string{filler, filler + "2"} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 10*time.Second, "the gateway to take writes again", func() (bool, string) {
		err := cl.Set(refused+1, []byte("after"))
		return err == nil, fmt.Sprint(err)
	})
	gw.WaitReady(t, 10*time.Second)
	if _, found, err := cl.Get(refused); err != nil || found {
		t.Errorf("GET %d (refused with disk full) = found %v, err %v; want NOT_FOUND", refused, found, err)
	}
	if v, found, err := cl.Get(refused + 1); err != nil || !found || string(v) != "after" {
		t.Errorf("GET %d after space came back = %q found=%v err=%v", refused+1, v, found, err)
	}
	if gw.Pid() != pid {
		t.Errorf("the gateway restarted (pid %d, now %d)", pid, gw.Pid())
	}
	assertRaftDiskMetrics(t, gw, false)
}

// assertRaftDiskMetrics checks the gateway's disk metrics: the watermark,
// a free figure on the right side of it, and whether it refuses entries.
func assertRaftDiskMetrics(t *testing.T, gw *Process, full bool) {
	t.Helper()
	metrics := MetricsOf(t, gw)
	value := func(name string) float64 {
		f := metrics[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Fatalf("gateway exports no %s", name)
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	free, mark, refused := value("tolerex_raft_disk_free_bytes"), value("tolerex_raft_disk_min_free_bytes"), value("tolerex_raft_writes_refused")
	t.Logf("gateway disk metrics: free %.0f, min free %.0f, writes refused %.0f", free, mark, refused)
	if mark != gatewayWatermark || (refused == 1) != full || (free < gatewayWatermark) != full || free == 0 {
		t.Errorf("gateway disk metrics: free %.0f, min free %.0f, writes refused %.0f; want the disk full = %v", free, mark, refused, full)
	}
}

// freeInReason is the free space a gateway's disk-full reason gives.
func freeInReason(reason string) (uint64, bool) {
	const prefix = "the Raft log's filesystem has "
	_, rest, ok := strings.Cut(reason, prefix)
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, " ")
	free, err := strconv.ParseUint(digits, 10, 64)
	return free, err == nil
}

// fill grows the file at path until its filesystem has leave bytes free.
func fill(t *testing.T, path string, leave uint64) {
	t.Helper()
	if err := diskfault.FillFile(path, int64(leave)); err != nil {
		t.Fatal(err)
	}
}

// TestRaftLeaderDiskFull fills the disk of the leading gateway of three
// (each on a 32 MiB tmpfs, 8 MiB watermark) under writes through every
// gateway. Expected: the full gateway hands its leadership over and stays
// up, not ready with "disk full"; writes through every gateway, the full
// one included, go on; once space is back it is ready again and catches
// up; every acknowledged write reads back and no refused one does.
func TestRaftLeaderDiskFull(t *testing.T) {
	c := newRaftGroup(t, 3, 3, "--min-free-bytes", strconv.Itoa(gatewayWatermark))
	for _, g := range c.Gateways {
		mountTmpfsAt(t, g.DataDir, "32m", func() { _ = g.Kill() })
	}
	startRaftGroup(t, c)
	full := raftLeader(t, c.Gateways, 10*time.Second)
	pid := full.Pid()
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 300)

	filler := filepath.Join(full.DataDir, "filler")
	fill(t, filler, gatewayWatermark/2)
	next := raftLeader(t, others(c.Gateways, full), 10*time.Second)
	t.Logf("%s's disk filled; %s leads now", full.Name, next.Name)
	Eventually(t, 10*time.Second, full.Name+"'s /readyz to say disk full", func() (bool, string) {
		body, status, err := full.Get(context.Background(), "/readyz")
		return err == nil && status == http.StatusServiceUnavailable && strings.Contains(string(body), "disk full: "), fmt.Sprintf("%d %s %v", status, body, err)
	})
	load.waitOKs(t, 300) // through every gateway, the full one forwarding
	if full.Pid() != pid || syscall.Kill(pid, 0) != nil {
		t.Fatalf("%s (pid %d) is gone", full.Name, pid)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 15*time.Second, full.Name+" ready again", func() (bool, string) {
		body, status, err := full.Get(context.Background(), "/readyz")
		return err == nil && status == http.StatusOK, fmt.Sprintf("%d %s %v", status, body, err)
	})
	load.waitOKs(t, 100)
	load.finish()
	waitConverged(t, c.Gateways)
	load.verify(t, c.Gateways)
	if full.Pid() != pid {
		t.Errorf("%s restarted (pid %d, now %d)", full.Name, pid, full.Pid())
	}
}

// TestGatewayDiskFillsPastWatermark turns the gateway's watermark off
// (--min-free-bytes 0), as if something else filled the disk faster than
// the gateway checks it, and drives SETs until the Raft log's write fails
// with ENOSPC. Expected: the process does not die (Pebble's fatal commit
// error is turned into an error; the consensus actor restarts and does not
// reopen the log on the full disk, where Pebble's recovery would hang);
// /readyz says why and that it needs a restart; no write is answered OK
// that is lost. After the file is removed and the gateway restarted, every
// acknowledged write reads back and SETs work.
func TestGatewayDiskFillsPastWatermark(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--min-free-bytes", "0"}})
	c.DumpLogsOnFailure(t)
	gw := c.Gateway
	mountTmpfs(t, gw, "32m")
	c.Start(t)
	cl := c.Dial(t)
	pid := gw.Pid()
	filler := filepath.Join(gw.DataDir, "filler")
	fill(t, filler, 32<<10)

	// Pipelined SETs, 200 at a time, until one is refused.
	led := newLedger()
	value := func(id int64) string { return fmt.Sprintf("%d:%s", id, strings.Repeat("v", 200)) }
	failedAt := int64(-1)
	for from := int64(0); from < 40_000 && failedAt < 0; from += 200 {
		for id := from; id < from+200; id++ {
			if err := cl.Send([]byte("SET " + strconv.FormatInt(id, 10) + " " + value(id))); err != nil {
				t.Fatalf("send SET %d: %v", id, err)
			}
		}
		if err := cl.Flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		for id := from; id < from+200; id++ {
			reply, err := cl.ReadReply()
			if err != nil {
				t.Fatalf("reply to SET %d: %v", id, err)
			}
			switch {
			case string(reply) == "OK":
				led.set(id, value(id))
			case failedAt < 0:
				failedAt = id
				t.Logf("first SET refused: %d: %s", id, reply)
			}
		}
	}
	if failedAt < 0 {
		t.Fatal("40,000 SETs did not fill the gateway's filesystem")
	}
	Eventually(t, 10*time.Second, "the gateway's /readyz to say a write failed for want of space", func() (bool, string) {
		status, body := readyz(gw)
		return status == http.StatusServiceUnavailable && strings.Contains(body, "a Raft log write failed with no space left on device"), fmt.Sprintf("%d %s", status, body)
	})
	_, body := readyz(gw)
	t.Logf("/readyz of the full gateway: %s", strings.TrimSpace(body))
	if exited, err := gw.Exited(); exited || gw.Pid() != pid {
		t.Fatalf("the gateway process %d exited (%v; now %d)\n%s", pid, err, gw.Pid(), gw.LogTail(4000))
	}
	if !strings.Contains(gw.Log(), "pebble: fatal commit error") {
		t.Error("Pebble's fatal commit error is not in the gateway's log")
	}
	// Meanwhile the gateway refuses every request at once, definitely and
	// with the reason, instead of holding it for a leader it cannot learn
	// of until the request's deadline (10 s).
	for _, line := range []string{"SET " + strconv.FormatInt(failedAt, 10) + " refused", "GET 0"} {
		asked := time.Now()
		reply, err := cl.Do(line)
		took := time.Since(asked)
		var refused *client.ServerError
		if !errors.As(err, &refused) || !strings.HasPrefix(reply, "ERROR: gateway unavailable: disk full: a Raft log write failed") ||
			codec.ClassifyError(reply) != codec.Definite {
			t.Fatalf("%s while the gateway waits for space: %q, %v (after %v); want a definite gateway unavailable error", line, reply, err, took)
		}
		t.Logf("%s while the gateway waits for space, answered in %v: %s", line, took.Round(time.Microsecond), reply)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	gw.Stop(t)
	gw.Start(t)
	gw.WaitReady(t, 20*time.Second)
	after := c.Dial(t)
	values, _ := led.snapshot()
	for id, want := range values {
		got, found, err := after.Get(id)
		if err != nil || !found || string(got) != want {
			t.Fatalf("GET %d after the restart = %.30q found=%v err=%v", id, got, found, err)
		}
	}
	t.Logf("%d acknowledged SETs read back after the restart", len(values))
	if err := after.Set(failedAt, []byte("after")); err != nil {
		t.Fatalf("SET after the restart: %v", err)
	}
}
