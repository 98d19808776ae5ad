package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/client"
)

// TestDeadMemberStaysCheap keeps a member of three (tolerance 2) dead for a
// minute under steady client load: no client operation fails or waits for
// a timeout, the gateway neither keeps connecting to the dead address nor
// grows goroutines or heap, and the member takes new copies again once it
// is back.
func TestDeadMemberStaysCheap(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps a member dead for a minute under load")
	}
	const (
		outage         = 60 * time.Second
		afterRestart   = 10 * time.Second
		sampleEvery    = 2 * time.Second
		trendWindow    = 10 * time.Second
		goroutineSlack = 20  // allowed above the largest baseline sample
		goroutineTrend = 10  // allowed growth from the first to the last trendWindow
		heapTrend      = 1.5 // allowed ratio of the last to the first trendWindow's heap, beyond the index's growth
		// indexBytesPerMessage is what each message indexed during the
		// outage may add to the heap.
		indexBytesPerMessage = 200
		// raftEntryBytes is what each Raft log entry held in memory (those
		// since the last snapshot) may add to the heap: the encoded
		// entries of its batch and raft's bookkeeping. They are dropped at
		// the next snapshot (--snapshot-entries).
		raftEntryBytes = 600
		p99Limit       = 100 * time.Millisecond
		// maxLimit is below the 1 s read timeout and the 2 s store
		// timeout: an operation that waited for either is caught.
		maxLimit = 900 * time.Millisecond
	)
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	victim := c.Members[2]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := &pacedLoad{c: c}
	load.start(ctx, t, 4, 4*time.Millisecond)

	time.Sleep(3 * time.Second) // warm up: connections, first snapshots, GC cycles
	var baseline []gatewaySample
	for i := 0; i < 5; i++ {
		baseline = append(baseline, sampleGateway(t, c, time.Time{}))
		time.Sleep(time.Second)
	}

	logAtKill := logSize(t, c.Gateway)
	killedAt := time.Now()
	victim.Kill(t)
	down := waitMemberAlive(t, c, victim.NodeAddr, false, 5*time.Second)
	detected := time.Since(killedAt)
	logAtDetection := logSize(t, c.Gateway)
	t.Logf("gateway saw %s down %s after SIGKILL", down.ID, detected.Round(time.Millisecond))

	var outageSamples []gatewaySample
	for next := killedAt.Add(sampleEvery); next.Before(killedAt.Add(outage)); next = next.Add(sampleEvery) {
		time.Sleep(time.Until(next))
		outageSamples = append(outageSamples, sampleGateway(t, c, killedAt))
	}
	time.Sleep(time.Until(killedAt.Add(outage)))
	logAtRestart := logSize(t, c.Gateway)
	restartedAt := time.Now()
	victim.Start(t)
	victim.WaitReady(t, 20*time.Second)
	back := waitMemberAlive(t, c, victim.NodeAddr, true, 15*time.Second)
	aliveAt := time.Now()
	t.Logf("member %s alive again %s after restart, indexed %d", back.ID, aliveAt.Sub(restartedAt).Round(time.Millisecond), back.Indexed)
	var memberBefore memberInfo
	victim.GetJSON(t, "/api/cluster", &memberBefore)
	time.Sleep(afterRestart)
	afterSample := sampleGateway(t, c, killedAt)
	cancel()
	results := load.wait()

	// Every operation succeeded, and none waited for a timeout.
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("%s %d at +%s failed after %s: %v", r.op, r.id, r.started.Sub(killedAt).Round(time.Millisecond), r.took.Round(time.Millisecond), r.err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d client operations failed", failed, len(results))
	}
	phases := []struct {
		name     string
		from, to time.Time
	}{
		{"before the kill", time.Time{}, killedAt},
		{"kill + 1s", killedAt, killedAt.Add(time.Second)},
		{"member down", killedAt, restartedAt},
		{"after restart", restartedAt, time.Now()},
	}
	for _, ph := range phases {
		lat := latenciesBetween(results, ph.from, ph.to)
		if len(lat) == 0 {
			t.Errorf("no operation started %s", ph.name)
			continue
		}
		p50, p99, worst := durationPercentile(lat, 0.50), durationPercentile(lat, 0.99), lat[len(lat)-1]
		t.Logf("latency %-16s %6d ops  p50 %-8s p99 %-8s max %s", ph.name, len(lat),
			p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), worst.Round(10*time.Microsecond))
		if ph.name == "member down" && p99 > p99Limit {
			t.Errorf("p99 latency while the member is down is %s, want below %s", p99, p99Limit)
		}
		if worst > maxLimit {
			t.Errorf("an operation %s took %s: it waited for a timeout instead of failing over", ph.name, worst)
		}
	}

	// Goroutines and heap stay flat while the member is down.
	t.Logf("gateway samples (goroutines, of them gRPC, heap in use MiB, RSS MiB):")
	baseGoroutines := 0.0
	for _, s := range baseline {
		t.Logf("  baseline       %s", s)
		baseGoroutines = max(baseGoroutines, s.goroutines)
	}
	for _, s := range outageSamples {
		t.Logf("  down    +%-5s %s", s.at.Round(time.Second), s)
		if s.goroutines > baseGoroutines+goroutineSlack {
			t.Errorf("gateway has %.0f goroutines %s after the kill, baseline at most %.0f", s.goroutines, s.at.Round(time.Second), baseGoroutines)
		}
	}
	t.Logf("  restarted +%-3s %s", afterSample.at.Round(time.Second), afterSample)
	first, last := trendWindows(outageSamples, trendWindow, outage)
	if len(first) == 0 || len(last) == 0 {
		t.Fatalf("not enough outage samples for a trend: %d", len(outageSamples))
	}
	firstG, lastG := sampleAverage(first, gatewaySample.goroutineCount), sampleAverage(last, gatewaySample.goroutineCount)
	firstH, lastH := sampleAverage(first, gatewaySample.heapBytes), sampleAverage(last, gatewaySample.heapBytes)
	t.Logf("outage trend: goroutines %.1f -> %.1f; heap in use %.1f MiB -> %.1f MiB (x%.2f)",
		firstG, lastG, firstH/bytesPerMiB, lastH/bytesPerMiB, lastH/firstH)
	if lastG > firstG+goroutineTrend {
		t.Errorf("gateway goroutines grew from %.1f (first %s down) to %.1f (last %s)", firstG, trendWindow, lastG, trendWindow)
	}
	// The index grows with every message written during the outage, and
	// so does the Raft log held in memory until the next snapshot; so does
	// Pebble's memory for that log (on the Go heap in the cgo-less build),
	// its memtables doubling from 256 KiB to their configured size. Only
	// growth beyond that (at a generous 200 bytes a message, the design
	// budget being 150, and raftEntryBytes a log entry) would be a leak.
	firstI, lastI := sampleAverage(first, func(s gatewaySample) float64 { return s.indexed }), sampleAverage(last, func(s gatewaySample) float64 { return s.indexed })
	firstR, lastR := sampleAverage(first, func(s gatewaySample) float64 { return s.raftEntries }), sampleAverage(last, func(s gatewaySample) float64 { return s.raftEntries })
	firstP, lastP := sampleAverage(first, func(s gatewaySample) float64 { return s.raftMemory }), sampleAverage(last, func(s gatewaySample) float64 { return s.raftMemory })
	allowed := firstH*heapTrend + (lastI-firstI)*indexBytesPerMessage + max(0, lastR-firstR)*raftEntryBytes + max(0, lastP-firstP)
	t.Logf("index grew by %.0f messages, the Raft log in memory by %.0f entries, Pebble's memory for it by %.1f MiB: heap allowed up to %.1f MiB",
		lastI-firstI, lastR-firstR, (lastP-firstP)/bytesPerMiB, allowed/bytesPerMiB)
	if lastH > allowed {
		t.Errorf("gateway heap in use grew from %.1f MiB (first %s down) to %.1f MiB (last %s), more than the %.0f messages indexed meanwhile explain",
			firstH/bytesPerMiB, trendWindow, lastH/bytesPerMiB, trendWindow, lastI-firstI)
	}

	// The gateway does not connect to the dead address.
	early := connectAttempts(t, c.Gateway, victim.NodeAddr, logAtKill, logAtDetection)
	steady := connectAttempts(t, c.Gateway, victim.NodeAddr, logAtDetection, logAtRestart)
	t.Logf("connection attempts to %s: %d started, %d failed until the gateway saw it down; %d started, %d failed during the rest of the outage",
		victim.NodeAddr, early.started, early.failed, steady.started, steady.failed)
	if steady.started > 0 || steady.failed > 0 {
		t.Errorf("the gateway tried to connect to the dead member %d times (%d failed) while it was known to be down", steady.started, steady.failed)
	}
	// The count would see attempts: the gateway reconnects once the
	// member is back.
	if again := connectAttempts(t, c.Gateway, victim.NodeAddr, logAtRestart, logSize(t, c.Gateway)); again.started == 0 {
		t.Errorf("no connection attempt to the restarted member in the gateway's log: the count above cannot see any")
	}

	// The member is back and takes new copies.
	var memberAfter memberInfo
	victim.GetJSON(t, "/api/cluster", &memberAfter)
	now := memberAt(t, c, victim.NodeAddr)
	t.Logf("restarted member: indexed %d -> %d, stores %d -> %d versions", back.Indexed, now.Indexed, memberBefore.Messages, memberAfter.Messages)
	if !now.Alive || now.Indexed <= back.Indexed || memberAfter.Messages <= memberBefore.Messages {
		t.Errorf("the restarted member took no new copies: %+v, stored %d -> %d", now, memberBefore.Messages, memberAfter.Messages)
	}
	onVictim, checked := 0, 0
	for _, r := range results {
		if r.op != "SET" || r.err != nil || r.started.Before(aliveAt) || checked >= 200 {
			continue
		}
		checked++
		for _, rep := range location(t, c, r.id).Replicas {
			if rep.NodeAddress == victim.NodeAddr {
				onVictim++
			}
		}
	}
	t.Logf("%d of %d ids written after the restart are stored on the restarted member", onVictim, checked)
	if onVictim == 0 {
		t.Errorf("none of %d ids written after the restart is stored on the restarted member", checked)
	}

	// A sample of everything acknowledged reads back.
	cl := c.Dial(t)
	verifySample(t, cl, load.acknowledged(), 1000)
}

// bytesPerMiB is a mebibyte, for reporting memory.
const bytesPerMiB = 1 << 20

// gatewaySample is one look at the gateway's resources.
type gatewaySample struct {
	at             time.Duration // since the kill (0 before it)
	goroutines     float64
	grpcGoroutines int
	heapInuse      float64
	rss            float64
	indexed        float64 // messages in the gateway's index
	raftEntries    float64 // Raft log entries held in memory
	raftMemory     float64 // bytes Pebble holds for the Raft log (memtables, block cache)
}

func (s gatewaySample) String() string {
	return fmt.Sprintf("goroutines %4.0f  grpc %3d  heap %6.1f  of it Pebble %5.1f  rss %6.1f",
		s.goroutines, s.grpcGoroutines, s.heapInuse/bytesPerMiB, s.raftMemory/bytesPerMiB, s.rss/bytesPerMiB)
}

func (s gatewaySample) goroutineCount() float64 { return s.goroutines }
func (s gatewaySample) heapBytes() float64      { return s.heapInuse }

// sampleGateway reads the gateway's goroutines and memory from /metrics
// and counts the goroutines running gRPC code from its goroutine profile.
// It has the gateway collect garbage first (a heap profile with gc=1), so
// heap in use is the live heap rather than a point on the GC sawtooth.
func sampleGateway(t *testing.T, c *Cluster, since time.Time) gatewaySample {
	t.Helper()
	if body, status := c.Gateway.Get(t, "/debug/pprof/heap?gc=1"); status != 200 {
		t.Fatalf("heap profile: HTTP %d %s", status, body)
	}
	fams := MetricsOf(t, c.Gateway)
	s := gatewaySample{
		goroutines:  gaugeValue(t, fams, "go_goroutines", nil),
		heapInuse:   gaugeValue(t, fams, "go_memstats_heap_inuse_bytes", nil),
		rss:         gaugeValue(t, fams, "process_resident_memory_bytes", nil),
		indexed:     gaugeValue(t, fams, "tolerex_index_messages", nil),
		raftEntries: gaugeValue(t, fams, "tolerex_raft_log_entries", nil),
		raftMemory:  gaugeValue(t, fams, "tolerex_raft_log_memory_bytes", nil),
	}
	if !since.IsZero() {
		s.at = time.Since(since)
	}
	body, status := c.Gateway.Get(t, "/debug/pprof/goroutine?debug=1")
	if status != 200 {
		t.Fatalf("goroutine profile: HTTP %d %s", status, body)
	}
	s.grpcGoroutines = goroutinesIn(body, "google.golang.org/grpc")
	return s
}

// goroutinesIn counts the goroutines of a debug=1 goroutine profile whose
// stack mentions pkg. The profile is blocks of "N @ pcs" followed by the
// stack's frames, separated by blank lines.
func goroutinesIn(profile []byte, pkg string) int {
	total := 0
	for _, block := range bytes.Split(profile, []byte("\n\n")) {
		head, _, _ := bytes.Cut(block, []byte(" @ "))
		n, err := strconv.Atoi(string(bytes.TrimSpace(head)))
		if err != nil || !bytes.Contains(block, []byte(pkg)) {
			continue
		}
		total += n
	}
	return total
}

// trendWindows returns the samples of the first and the last window of an
// outage.
func trendWindows(samples []gatewaySample, window, outage time.Duration) (first, last []gatewaySample) {
	for _, s := range samples {
		if s.at <= window {
			first = append(first, s)
		}
		if s.at >= outage-window {
			last = append(last, s)
		}
	}
	return first, last
}

func sampleAverage(samples []gatewaySample, value func(gatewaySample) float64) float64 {
	sum := 0.0
	for _, s := range samples {
		sum += value(s)
	}
	return sum / float64(len(samples))
}

// logSize is the current length of p's log.
func logSize(t *testing.T, p *Process) int64 {
	t.Helper()
	fi, err := os.Stat(p.LogPath)
	if err != nil {
		t.Fatalf("stat log of %s: %v", p.Name, err)
	}
	return fi.Size()
}

// connectCount counts protoactor's connection attempts to one address.
type connectCount struct{ started, failed int }

// connectAttempts counts the debug lines in p's log between two offsets
// where protoactor starts connecting to addr, and those where connecting
// failed.
func connectAttempts(t *testing.T, p *Process, addr string, from, to int64) connectCount {
	t.Helper()
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatalf("read log of %s: %v", p.Name, err)
	}
	if to > int64(len(data)) {
		to = int64(len(data))
	}
	var n connectCount
	sc := bufio.NewScanner(bytes.NewReader(data[from:to]))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	quotedAddr := strconv.Quote(addr)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, quotedAddr) {
			continue
		}
		switch {
		case strings.Contains(line, "Started EndpointWriter. connecting"):
			n.started++
		case strings.Contains(line, "EndpointWriter failed to connect"):
			n.failed++
		}
	}
	return n
}

// latenciesBetween returns the sorted durations of the operations that
// started in [from, to).
func latenciesBetween(results []opResult, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, r := range results {
		if !r.started.Before(from) && r.started.Before(to) {
			out = append(out, r.took)
		}
	}
	slices.Sort(out)
	return out
}

// durationPercentile returns the q-quantile of sorted durations.
func durationPercentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// pacedLoad runs workers that each start one operation per interval (or
// as soon as the previous one returns, when it is late): SET of a fresh
// id, or, every third operation, GET of an id the worker got acknowledged
// earlier. Every operation's outcome and latency is recorded.
type pacedLoad struct {
	c       *Cluster
	mu      sync.Mutex
	results []opResult
	acked   map[int64]string
	wg      sync.WaitGroup
}

func (g *pacedLoad) start(ctx context.Context, t *testing.T, workers int, interval time.Duration) {
	g.acked = make(map[int64]string)
	for w := 0; w < workers; w++ {
		cl := g.c.Dial(t)
		g.wg.Add(1)
		go func(w int) {
			defer g.wg.Done()
			g.work(ctx, cl, int64(w+1)*10_000_000, interval)
		}(w)
	}
}

func (g *pacedLoad) work(ctx context.Context, cl *client.Client, firstID int64, interval time.Duration) {
	var acked []int64
	nextID := firstID
	next := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		} else {
			next = time.Now()
		}
		next = next.Add(interval)
		start := time.Now()
		if i%3 == 2 && len(acked) > 0 {
			id := acked[rand.IntN(len(acked))]
			v, found, err := cl.Get(id)
			if err == nil && (!found || string(v) != paceValue(id)) {
				err = fmt.Errorf("GET %d = %q found=%v, want %q", id, v, found, paceValue(id))
			}
			g.record(opResult{op: "GET", id: id, err: err, started: start, took: time.Since(start)}, 0)
			if err != nil && !isServerReply(err) {
				return // the connection is broken
			}
			continue
		}
		id := nextID
		nextID++
		err := cl.Set(id, []byte(paceValue(id)))
		r := opResult{op: "SET", id: id, err: err, started: start, took: time.Since(start)}
		if err == nil {
			acked = append(acked, id)
			g.record(r, id)
			continue
		}
		g.record(r, 0)
		if !isServerReply(err) {
			return
		}
	}
}

// record stores r, and ackedID (when not 0) as acknowledged.
func (g *pacedLoad) record(r opResult, ackedID int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.results = append(g.results, r)
	if ackedID != 0 {
		g.acked[ackedID] = paceValue(ackedID)
	}
}

func (g *pacedLoad) wait() []opResult {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.results)
}

func (g *pacedLoad) acknowledged() map[int64]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int64]string, len(g.acked))
	for id, v := range g.acked {
		out[id] = v
	}
	return out
}

// paceValue is the value pacedLoad stores under id.
func paceValue(id int64) string { return "paced-" + strconv.FormatInt(id, 10) }

// isServerReply reports whether err is an "ERROR: " reply, after which
// the connection is still usable.
func isServerReply(err error) bool {
	var se *client.ServerError
	return errors.As(err, &se)
}

// verifySample reads up to n randomly chosen acknowledged ids back.
func verifySample(t *testing.T, cl *client.Client, acked map[int64]string, n int) {
	t.Helper()
	ids := make([]int64, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	bad := 0
	for _, id := range ids[:min(n, len(ids))] {
		got, found, err := cl.Get(id)
		if err != nil || !found || string(got) != acked[id] {
			bad++
			if bad <= 10 {
				t.Errorf("GET %d = %q found=%v err=%v, want %q", id, got, found, err, acked[id])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d sampled acknowledged ids read back wrong", bad, min(n, len(ids)))
	}
}
