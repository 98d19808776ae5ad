package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/local/cputime"
)

// corruptionView is the part of a member's /api/cluster about damage.
type corruptionView struct {
	StorageReady   bool   `json:"storage_ready"`
	StorageCorrupt string `json:"storage_corrupt"`
	CorruptReads   uint64 `json:"corrupt_reads"`
	LastCorruption string `json:"last_corruption"`
}

// TestCorruptSSTableBlockFallsBack flips bytes in the middle of a member's
// largest sstable while it is stopped. Restarted, the member serves its
// undamaged records, refuses the damaged ones (READ_CORRUPT) and reports
// them; the gateway reads those from the other replica, so every message
// reads back exactly. With the other replica of some messages killed, the
// damaged member is their only source: it serves the undamaged ones and
// refuses the rest, and no read ever returns a wrong value.
func TestCorruptSSTableBlockFallsBack(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 2000, "corruption-test-value-")

	victim, other := c.Members[0], c.Members[1]
	victim.Stop(t) // a clean stop flushes the store into sstables
	waitMemberAlive(t, c, victim.NodeAddr, false, 10*time.Second)
	sst, size := largestSSTable(t, filepath.Join(victim.DataDir, "store"))
	flipFileBytes(t, sst, size/2, 16)
	victim.Start(t)
	victim.WaitReady(t, 20*time.Second)
	waitMemberAlive(t, c, victim.NodeAddr, true, 10*time.Second)
	var view corruptionView
	victim.GetJSON(t, "/api/cluster", &view)
	if !view.StorageReady || view.StorageCorrupt != "" || !strings.Contains(view.LastCorruption, "corrupt") {
		t.Fatalf("restarted member's /api/cluster = %+v; want its store open and the damage found at open reported", view)
	}

	// The gateway tries the replicas of a message in random order, so it
	// asks the victim for about half of its damaged records; each is
	// refused and read from the other replica.
	led.verify(t, cl)
	refused := corruptReadsMetric(t, victim)
	if refused == 0 {
		t.Fatal("no corrupt read reported by the damaged member: its damaged records were never read")
	}
	victim.GetJSON(t, "/api/cluster", &view)
	if view.CorruptReads != uint64(refused) {
		t.Errorf("/api/cluster corrupt_reads = %d, /metrics says %v", view.CorruptReads, refused)
	}

	// Now the victim alone holds the messages it shares with other.
	other.Kill(t)
	waitMemberAlive(t, c, other.NodeAddr, false, 10*time.Second)
	values, _ := led.snapshot()
	failed := 0
	for id, want := range values {
		got, found, err := cl.Get(id)
		if err == nil {
			if !found || string(got) != want {
				t.Fatalf("GET %d = %q found=%v, want %q: a wrong value", id, got, found, want)
			}
			continue
		}
		// Only a message whose live copy is the damaged one may fail.
		failed++
		replicas := map[string]bool{}
		for _, r := range location(t, c, id).Replicas {
			replicas[r.NodeAddress] = true
		}
		if len(replicas) != 2 || !replicas[victim.NodeAddr] || !replicas[other.NodeAddr] {
			t.Fatalf("GET %d failed (%v) though a healthy replica is live: %v", id, err, replicas)
		}
	}
	t.Logf("%d damaged records refused before, %d messages unreadable while their healthy replica was down", int(refused), failed)
	if failed == 0 {
		t.Error("no message failed with its healthy replica down: the damaged block held none of the messages shared with the killed member?")
	}
	if after := corruptReadsMetric(t, victim); after <= refused {
		t.Errorf("corrupt reads %v after reading through the damaged member alone, %v before", after, refused)
	}
	assertLowCPU(t, victim, 3*time.Second)

	other.Start(t)
	waitMemberAlive(t, c, other.NodeAddr, true, 20*time.Second)
	led.verify(t, cl)
}

// TestCorruptStoreMemberStaysDown truncates a stopped member's largest
// sstable, so its store cannot be opened. Restarted, the member stays up
// without a store: not ready with a "storage corrupt" reason, one open
// attempt and no restart loop, its storage reported not ready to the
// gateway, which serves every message from the other members.
func TestCorruptStoreMemberStaysDown(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 2000, "corruption-test-value-")

	victim := c.Members[0]
	victim.Stop(t)
	waitMemberAlive(t, c, victim.NodeAddr, false, 10*time.Second)
	sst, size := largestSSTable(t, filepath.Join(victim.DataDir, "store"))
	if err := os.Truncate(sst, size/2); err != nil {
		t.Fatal(err)
	}
	logStart := len(victim.Log())
	victim.Start(t)

	Eventually(t, 20*time.Second, "the damaged member's /readyz to say 503 storage corrupt", func() (bool, string) {
		status, body := readyz(victim)
		return status == http.StatusServiceUnavailable && strings.Contains(body, "storage corrupt: "), fmt.Sprintf("%d %s", status, body)
	})
	// The gateway hears its heartbeats but does not use its storage.
	Eventually(t, 10*time.Second, "the gateway to see the damaged member alive, storage not ready, 2 live members", func() (bool, string) {
		st := c.Status(t)
		seen := false
		for _, m := range st.Members {
			seen = seen || (m.NodeAddress == victim.NodeAddr && m.Alive && !m.StorageReady)
		}
		return seen && st.LiveCount == 2, fmt.Sprintf("gateway view %+v", st)
	})
	var view corruptionView
	victim.GetJSON(t, "/api/cluster", &view)
	if view.StorageReady || !strings.Contains(view.StorageCorrupt, "store is corrupt") {
		t.Fatalf("damaged member's /api/cluster = %+v; want storage not ready and the corruption", view)
	}

	led.verify(t, cl)
	pipelineSet(t, cl, led, 10_000, 10_200, "after-")
	for id := int64(10_000); id < 10_200; id += 41 {
		for _, r := range location(t, c, id).Replicas {
			if r.NodeAddress == victim.NodeAddr {
				t.Fatalf("id %d stored on the member whose store is corrupt", id)
			}
		}
	}
	led.verify(t, cl)

	// No restart loop: one open attempt, no storage actor restart, an idle
	// process that is still running.
	assertLowCPU(t, victim, 3*time.Second)
	if exited, err := victim.Exited(); exited {
		t.Fatalf("damaged member exited: %v", err)
	}
	startLog := victim.Log()[logStart:]
	if n := strings.Count(startLog, "store is corrupt: this member serves no data"); n != 1 {
		t.Errorf("the member logged its corrupt store %d times since it started, want once", n)
	}
	if n := strings.Count(startLog, `"store open"`); n != 0 {
		t.Errorf("the member logged %d successful opens of a corrupt store", n)
	}
	if restarts, found := localStorageRestarts(t, victim); !found || restarts != 0 {
		t.Errorf("member/storage found=%v restarts=%d; want a live actor never restarted", found, restarts)
	}
	if body, status := victim.Get(t, "/readyz"); status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("storage corrupt")) {
		t.Errorf("/readyz after a while: %d %s", status, body)
	}
}

// readyz returns p's /readyz status and body; 0 while it does not answer.
func readyz(p *Process) (int, string) {
	resp, err := httpClient.Get("http://" + p.AdminAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// largestSSTable returns the path and size of the largest .sst file in dir.
func largestSSTable(t *testing.T, dir string) (string, int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	var best string
	var size int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > size {
			best, size = p, st.Size()
		}
	}
	if best == "" {
		t.Fatalf("no sstable in %s after a clean stop", dir)
	}
	return best, size
}

// flipFileBytes inverts n bytes of the file at offset.
func flipFileBytes(t *testing.T, path string, offset int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, offset); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, offset); err != nil {
		t.Fatal(err)
	}
}

// corruptReadsMetric is tolerex_member_corrupt_reads_total on p.
func corruptReadsMetric(t *testing.T, p *Process) float64 {
	t.Helper()
	family := MetricsOf(t, p)["tolerex_member_corrupt_reads_total"]
	if family == nil || len(family.GetMetric()) == 0 {
		t.Fatalf("%s has no tolerex_member_corrupt_reads_total", p.Name)
	}
	return family.GetMetric()[0].GetCounter().GetValue()
}

// localStorageRestarts finds member/storage in p's own /api/tree.
func localStorageRestarts(t *testing.T, p *Process) (restarts uint32, found bool) {
	t.Helper()
	var v tree.ClusterView
	p.GetJSON(t, "/api/tree", &v)
	var walk func([]tree.ActorView)
	walk = func(actors []tree.ActorView) {
		for _, a := range actors {
			if a.ID == "member/storage" {
				restarts, found = a.Restarts, true
			}
			walk(a.Children)
		}
	}
	for _, node := range v.Nodes {
		walk(node.Actors)
	}
	return restarts, found
}

// assertLowCPU fails the test if p uses more than a fifth of a CPU over d:
// nothing should run on an idle member, in particular nothing retrying on
// damaged data.
func assertLowCPU(t *testing.T, p *Process, d time.Duration) {
	t.Helper()
	before := processCPUTime(t, p.Pid())
	time.Sleep(d)
	if used := processCPUTime(t, p.Pid()) - before; used > d/5 {
		t.Fatalf("%s used %v of CPU in %v while idle", p.Name, used, d)
	}
}

// processCPUTime is the user plus system CPU time of process pid.
func processCPUTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	used, err := cputime.Of(pid)
	if err != nil {
		t.Fatal(err)
	}
	return used
}
