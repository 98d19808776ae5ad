package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/gateway/client"
)

// Sizes for TestMemberDiskFull. Pebble preallocates its first write-ahead
// log at 110% of the 16 MiB memtable, so a fresh store on a 24 MiB
// filesystem starts with about 6 MiB free; the watermark sits under that.
const (
	smallFS       = "24m"
	biggerFS      = "64m"
	diskWatermark = 4 << 20
	// maxDiskSets bounds the SETs driven to fill the small filesystem.
	maxDiskSets = 20_000
)

// memberDiskView is the part of a member's /api/cluster about its disk.
type memberDiskView struct {
	StorageReady  bool   `json:"storage_ready"`
	WritesRefused string `json:"writes_refused"`
	ReadOnly      bool   `json:"read_only"`
	DiskFreeBytes uint64 `json:"disk_free_bytes"`
	MinFreeBytes  uint64 `json:"min_free_bytes"`
}

// TestMemberDiskFull puts one member's data dir on a 24 MiB tmpfs and
// drives 1 KB SETs until that member refuses writes. Expected: every SET
// gets OK (the other members take the copies), the member stays up,
// says "disk full" once in its log, on /readyz, in the gateway's
// /api/cluster and its metrics, is no longer chosen for new copies, and
// still serves reads: checked with the other members stopped, before and
// after a SIGKILL and restart on the full filesystem. Once the filesystem
// is made bigger it takes writes again.
func TestMemberDiskFull(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	full, others := c.Members[0], c.Members[1:]
	mountTmpfs(t, full, smallFS)
	full.Args = append(full.Args, "--min-free-bytes", strconv.Itoa(diskWatermark))
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()

	// Fill until the gateway hears that the member refuses writes.
	var sets int64
	for ; sets < maxDiskSets; sets += 200 {
		setKilobytes(t, cl, led, sets, sets+200)
		if refusing(t, c, full) != "" {
			break
		}
	}
	var view memberDiskView
	full.GetJSON(t, "/api/cluster", &view)
	t.Logf("member refuses writes after %d SETs of 1 KB: %s (free %d bytes)", sets+200, view.WritesRefused, view.DiskFreeBytes)
	if view.WritesRefused == "" {
		t.Fatalf("after %d SETs the member on the %s filesystem still takes writes: %+v", sets+200, smallFS, view)
	}
	assertAlive(t, full)
	assertDiskFullReported(t, full)
	if reason := refusing(t, c, full); !strings.HasPrefix(reason, "disk full: ") {
		t.Errorf("gateway's /api/cluster says the member refuses writes because %q", reason)
	}
	if !view.StorageReady || view.MinFreeBytes != diskWatermark {
		t.Errorf("member's /api/cluster = %+v", view)
	}
	metrics := MetricsOf(t, full)
	if f := metrics["tolerex_member_disk_free_bytes"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() >= diskWatermark*5/4 {
		t.Errorf("tolerex_member_disk_free_bytes = %v, want a value under the resume mark", f)
	}
	if f := metrics["tolerex_member_writes_refused"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("tolerex_member_writes_refused = %v, want 1", f)
	}

	// New copies go to the other members, with no error for the client.
	after := sets + 200
	setKilobytes(t, cl, led, after, after+400)
	for id := after; id < after+400; id += 7 {
		if onMember(location(t, c, id), full) {
			t.Fatalf("id %d stored on the member that refuses writes", id)
		}
	}
	if n := strings.Count(full.Log(), "disk full: refusing writes"); n != 1 {
		t.Errorf("the member logged disk full %d times, want once", n)
	}

	// Reads: with the other members stopped, the full member alone serves
	// its copies.
	for _, m := range others {
		m.Kill(t)
	}
	c.WaitOnlyLive(t, 10*time.Second, full)
	served := readFrom(t, c, cl, led, full)
	t.Logf("%d messages read from the full member alone", served)

	// A SIGKILL and restart on the full filesystem: it opens its store
	// read-only and serves the same messages.
	full.Kill(t)
	restartLog := len(full.Log())
	full.Start(t)
	Eventually(t, 20*time.Second, "the restarted member to serve reads", func() (bool, string) {
		// Its own admin server first: until the gateway notices the
		// kill, its status still shows the previous process.
		if resp, err := httpClient.Get("http://" + full.AdminAddr + "/healthz"); err != nil {
			return false, err.Error()
		} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
			return false, "healthz: " + resp.Status
		}
		st := c.Status(t)
		for _, m := range st.Members {
			if m.NodeAddress == full.NodeAddr {
				return m.Alive && m.StorageReady && m.WritesRefused != "", fmt.Sprintf("%+v", m)
			}
		}
		return false, "not listed"
	})
	assertAlive(t, full)
	assertDiskFullReported(t, full)
	full.GetJSON(t, "/api/cluster", &view)
	if !view.ReadOnly {
		t.Errorf("restarted member's store is not read-only: %+v", view)
	}
	if again := readFrom(t, c, cl, led, full); again != served {
		t.Errorf("the restarted member served %d messages, %d before", again, served)
	}
	restarted := full.Log()[restartLog:]
	if !strings.Contains(restarted, "store opened read-only") {
		t.Error("the restarted member did not say it opened its store read-only")
	}
	if n := strings.Count(restarted, "background error"); n > 3 {
		t.Errorf("the restarted member logged %d background errors", n)
	}

	// Free space: the member reopens its store read-write and takes writes.
	if out, err := exec.Command("mount", "-o", "remount,size="+biggerFS, full.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s with size=%s: %v %s", full.DataDir, biggerFS, err, out)
	}
	full.WaitReady(t, 20*time.Second)
	if n := strings.Count(full.Log()[restartLog:], "disk has room again: taking writes"); n != 1 {
		t.Errorf("the member logged %d times that it takes writes again, want once", n)
	}
	for _, m := range others {
		m.Start(t)
	}
	c.WaitLive(t, 3, 20*time.Second)
	Eventually(t, 10*time.Second, "the gateway to hear that the member takes writes", func() (bool, string) {
		reason := refusing(t, c, full)
		return reason == "", reason
	})
	first := after + 1000
	setKilobytes(t, cl, led, first, first+300)
	landed := 0
	for id := first; id < first+300; id++ {
		if onMember(location(t, c, id), full) {
			landed++
		}
	}
	if landed == 0 {
		t.Fatal("no new copy stored on the member after its disk got room again")
	}
	t.Logf("%d of 300 new messages stored on the member after the remount", landed)
	assertAlive(t, full)
	led.verify(t, cl)
}

// mountTmpfs mounts a tmpfs of size on p's data dir, or skips the test if
// this process may not mount. It is unmounted when the test ends, after p
// is killed.
func mountTmpfs(t *testing.T, p *Process, size string) {
	t.Helper()
	mountTmpfsAt(t, p.DataDir, size, func() { p.Kill(t) })
}

// mountTmpfsAt mounts a tmpfs of size on dir, or skips the test if this
// process may not mount. When the test ends it calls kill (which must stop
// whatever uses dir) and unmounts it.
func mountTmpfsAt(t *testing.T, dir, size string, kill func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs (needs root or CAP_SYS_ADMIN): %v %s", size, err, out)
	}
	t.Cleanup(func() {
		kill()
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// kilobyte is the 1 KB message stored as id: random hex, so it compresses
// about as well as real data.
func kilobyte(id int64) string {
	r := rand.New(rand.NewPCG(uint64(id), 0x5eed))
	var b strings.Builder
	b.Grow(1024)
	fmt.Fprintf(&b, "kb-%d-", id)
	for b.Len() < 1024 {
		fmt.Fprintf(&b, "%016x", r.Uint64())
	}
	return b.String()[:1024]
}

// setKilobytes pipelines SETs of ids [from, to) with 1 KB messages; every
// one must get OK.
func setKilobytes(t *testing.T, cl *client.Client, led *ledger, from, to int64) {
	t.Helper()
	for id := from; id < to; id++ {
		if err := cl.Send([]byte("SET " + strconv.FormatInt(id, 10) + " " + kilobyte(id))); err != nil {
			t.Fatalf("send SET %d: %v", id, err)
		}
	}
	if err := cl.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for id := from; id < to; id++ {
		reply, err := cl.ReadReply()
		if err != nil {
			t.Fatalf("reply to SET %d: %v", id, err)
		}
		if string(reply) != "OK" {
			t.Fatalf("SET %d: %q", id, reply)
		}
		led.set(id, kilobyte(id))
	}
}

// refusing is why the gateway says member p refuses writes, or "".
func refusing(t *testing.T, c *Cluster, p *Process) string {
	t.Helper()
	for _, m := range c.Status(t).Members {
		if m.NodeAddress == p.NodeAddr {
			return m.WritesRefused
		}
	}
	return ""
}

// assertAlive fails the test if p has exited.
func assertAlive(t *testing.T, p *Process) {
	t.Helper()
	if exited, err := p.Exited(); exited {
		t.Fatalf("%s exited: %v\n%s", p.Name, err, p.LogTail(4000))
	}
	if _, status := p.Get(t, "/healthz"); status != http.StatusOK {
		t.Fatalf("%s /healthz: %d", p.Name, status)
	}
}

// assertDiskFullReported checks that p's /readyz and the gateway's
// /api/cluster say that p's disk is full.
func assertDiskFullReported(t *testing.T, p *Process) {
	t.Helper()
	status, body := readyz(p)
	want := fmt.Sprintf("below the %d-byte watermark; refusing writes, serving reads", diskWatermark)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: disk full: ") || !strings.Contains(body, want) {
		t.Errorf("/readyz of the full member: %d %q; want 503 disk full", status, body)
	}
	t.Logf("/readyz of the full member: %d %s", status, strings.TrimSpace(body))
}

// onMember says whether p is one of loc's replicas.
func onMember(loc leader.Location, p *Process) bool {
	for _, r := range loc.Replicas {
		if r.NodeAddress == p.NodeAddr {
			return true
		}
	}
	return false
}

// readFrom reads back every acknowledged message stored on p (which must
// be the only live member) and returns how many there were.
func readFrom(t *testing.T, c *Cluster, cl *client.Client, led *ledger, p *Process) int {
	t.Helper()
	values, _ := led.snapshot()
	served := 0
	for id, want := range values {
		if !onMember(location(t, c, id), p) {
			continue
		}
		got, found, err := cl.Get(id)
		if err != nil || !found || string(got) != want {
			t.Fatalf("GET %d from %s alone = %.40q found=%v err=%v", id, p.Name, got, found, err)
		}
		served++
	}
	if served == 0 {
		t.Fatalf("no acknowledged message is stored on %s", p.Name)
	}
	return served
}

// TestMemberDiskFillsPastWatermark turns the watermark off
// (--min-free-bytes 0), as if something else filled the disk faster than
// the member checks it: Pebble's write-ahead-log write fails with ENOSPC.
// The member must not die: its store closes itself, reopens read-only and
// serves its copies, and the member says it is out of space.
func TestMemberDiskFillsPastWatermark(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	full, others := c.Members[0], c.Members[1:]
	mountTmpfs(t, full, smallFS)
	full.Args = append(full.Args, "--min-free-bytes", "0")
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()

	var sets int64
	for ; sets < maxDiskSets && refusing(t, c, full) == ""; sets += 200 {
		setKilobytes(t, cl, led, sets, sets+200)
		assertAlive(t, full)
	}
	reason := refusing(t, c, full)
	t.Logf("after %d SETs: %s", sets, reason)
	if !strings.Contains(reason, "no space left on device") {
		t.Fatalf("after %d SETs the member on the %s filesystem does not report ENOSPC: %q", sets, smallFS, reason)
	}
	if !strings.Contains(full.Log(), "fatal commit error") {
		t.Error("Pebble's fatal commit error is not in the member's log")
	}
	// The member says it refuses writes as soon as the write fails, then
	// closes its store and reopens it read-only: wait for the reopening
	// (seen once in a fresh-clone run: refusing, store not yet open).
	Eventually(t, 10*time.Second, "the member's store open read-only after ENOSPC", func() (bool, string) {
		var view memberDiskView
		full.GetJSON(t, "/api/cluster", &view)
		return view.ReadOnly && view.StorageReady, fmt.Sprintf("member's /api/cluster = %+v", view)
	})
	for _, m := range others {
		m.Kill(t)
	}
	c.WaitOnlyLive(t, 10*time.Second, full)
	t.Logf("%d messages read from the member alone after ENOSPC", readFrom(t, c, cl, led, full))
	assertAlive(t, full)
}
