package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/client"
)

// TestFailedSetsAreNeverVisible checks that the reply to a SET is honest:
// a SET answered with an error is never readable, and one answered OK
// always is, also when a member is SIGKILLed while writes are in flight.
// Clients pipeline first writes of fresh ids, overwrites of those ids
// (queued right behind the first write, or sent after its reply) and
// overwrites of ids acknowledged before the run, each followed by a GET.
// Every reply is checked against the replies before it and against reads
// after the run, with the member still down, after its restart, and (with
// two members) with the restarted member serving alone.
func TestFailedSetsAreNeverVisible(t *testing.T) {
	cases := []struct {
		name    string
		members int
		kills   int
		// writesFail: with two members and tolerance 2, writes fail while
		// one is down; with three they go on.
		writesFail bool
	}{
		{"two members, one killed", 2, 1, true},
		{"three members, one killed", 3, 1, false},
		{"two members, one killed and restarted three times", 2, 3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testHonestSets(t, tc.members, tc.kills, tc.writesFail)
		})
	}
}

// Shape of the honesty workload.
const (
	honestyWorkers       = 4
	honestyFreshPerBatch = 16 // fresh ids first written in each batch
	honestySeedsPerBatch = 4  // acknowledged ids overwritten in each batch
	honestySeeds         = 64 // acknowledged ids per worker
	honestyPhase         = 700 * time.Millisecond
)

func testHonestSets(t *testing.T, members, kills int, writesFail bool) {
	c := NewCluster(t, bin, Options{Members: members, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	victim := c.Members[0]

	seeds := make([][]int64, honestyWorkers)
	seedClient := c.Dial(t)
	led := newLedger()
	for w := range seeds {
		from := honestySeedBase(w)
		pipelineSet(t, seedClient, led, from, from+honestySeeds, "seed-")
		for id := from; id < from+honestySeeds; id++ {
			seeds[w] = append(seeds[w], id)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := make([]honestyRun, honestyWorkers)
	var wg sync.WaitGroup
	for w := range runs {
		cl := c.Dial(t)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runs[w] = honestyWorker(ctx, cl, w, seeds[w])
		}(w)
	}

	var killedAt []time.Time // when each SIGKILL was sent
	var revived []time.Time
	time.Sleep(time.Second)
	memberDownStores := func() float64 {
		return counterValue(MetricsOf(t, c.Gateway), "tolerex_replica_store_failures_total", map[string]string{"reason": "member_down"})
	}
	// A kill between two pipelined batches hits no store in flight; such
	// a kill does not count, up to a few extra tries.
	for i, retries := 0, 0; i < kills; i++ {
		hitBefore := memberDownStores()
		killedAt = append(killedAt, time.Now())
		victim.Kill(t)
		waitMemberAlive(t, c, victim.NodeAddr, false, 5*time.Second)
		time.Sleep(honestyPhase)
		missed := memberDownStores() == hitBefore
		if missed && retries < 5 {
			retries++
			i--
			t.Logf("kill %d hit no store in flight; trying again", len(killedAt))
		} else if i == kills-1 {
			break
		}
		victim.Start(t)
		victim.WaitReady(t, 20*time.Second)
		waitMemberAlive(t, c, victim.NodeAddr, true, 15*time.Second)
		revived = append(revived, time.Now())
		time.Sleep(honestyPhase)
	}
	cancel()
	wg.Wait()

	// Replay every connection's replies in order: each GET must show what
	// the replies before it said.
	check := newHonestyCheck()
	for w := range runs {
		if runs[w].err != nil {
			t.Errorf("worker %d: %v", w, runs[w].err)
		}
		for _, id := range seeds[w] {
			check.acknowledge(id, "seed-"+strconv.FormatInt(id, 10))
		}
		for _, op := range runs[w].ops {
			check.replay(t, op)
		}
	}
	t.Logf("%s", check.counts)
	if check.counts.firstOK+check.counts.overwriteOK == 0 {
		t.Fatalf("no SET succeeded during the run")
	}
	failed := check.counts.firstFailed + check.counts.overwriteFailed
	// Whether a failed write had one copy stored before its other member
	// died is luck of timing; that it failed after its copies were sent
	// is what the kill-and-retry loop above makes sure of.
	if writesFail && check.counts.failedMidWrite == 0 {
		t.Errorf("no SET failed after its copies were sent: the kills missed the writes in flight")
	}
	// Stores in flight to the member when it died failed over (three
	// members) or failed their write (two).
	inFlight := counterValue(MetricsOf(t, c.Gateway), "tolerex_replica_store_failures_total", map[string]string{"reason": "member_down"})
	t.Logf("stores in flight to the killed member: %.0f", inFlight)
	if inFlight == 0 {
		t.Errorf("no store was in flight to the member when it was killed: the kills missed the stream")
	}
	if !writesFail && failed > 0 {
		t.Errorf("%d SETs failed although two of three members were alive", failed)
	}
	if check.counts.readsWrong > 0 {
		t.Errorf("%d GETs during the run read something other than the replies before them said", check.counts.readsWrong)
	}
	if check.counts.readErrors > 0 {
		t.Errorf("%d GETs during the run failed although a member holding every committed copy was alive", check.counts.readErrors)
	}
	for i, killed := range killedAt {
		t.Logf("kill %d: %d SET replies in the 200ms after it", i+1, countReplies(runs, killed, killed.Add(200*time.Millisecond)))
	}
	if n := countReplies(runs, killedAt[0].Add(-200*time.Millisecond), killedAt[0]); n == 0 {
		t.Errorf("no SET was answered in the 200ms before the first kill: the stream was not running")
	}
	for i, at := range revived {
		ok := 0
		for w := range runs {
			for _, op := range runs[w].ops {
				if op.set && op.reply == "OK" && op.at.After(at) && op.at.Before(killedAt[i+1]) {
					ok++
				}
			}
		}
		t.Logf("restart %d: %d SETs acknowledged before the next kill", i+1, ok)
		if ok == 0 {
			t.Errorf("no SET succeeded between restart %d and the next kill", i+1)
		}
	}

	reader := c.Dial(t)
	check.verify(t, reader, "member still down")
	victim.Start(t)
	victim.WaitReady(t, 20*time.Second)
	waitMemberAlive(t, c, victim.NodeAddr, true, 15*time.Second)
	check.verify(t, reader, "member restarted")
	if members == 2 {
		// Every committed id is on both members: with the other one dead,
		// the restarted member serves every read, and must serve the
		// committed versions, not the copies of writes that failed.
		other := c.Members[1]
		other.Kill(t)
		waitMemberAlive(t, c, other.NodeAddr, false, 5*time.Second)
		check.verify(t, reader, "restarted member alone")
	}
}

func honestySeedBase(worker int) int64 { return 50_000_000 + int64(worker)*1_000 }

// honestyOp is one pipelined request and its reply.
type honestyOp struct {
	set   bool // SET id value, or GET id
	id    int64
	value string
	reply string
	at    time.Time // when the reply arrived
}

func (op honestyOp) line() string {
	if op.set {
		return "SET " + strconv.FormatInt(op.id, 10) + " " + op.value
	}
	return "GET " + strconv.FormatInt(op.id, 10)
}

// honestyRun is what one connection sent and got back.
type honestyRun struct {
	ops []honestyOp
	err error
}

// honestyWorker pipelines batches until ctx ends. A batch first-writes
// honestyFreshPerBatch fresh ids, overwrites half of them at once (the
// overwrite waits behind the first write in the leader) and the other
// half in the next batch, and overwrites honestySeedsPerBatch acknowledged
// ids; every overwrite is followed by a GET of its id.
func honestyWorker(ctx context.Context, cl *client.Client, worker int, seeds []int64) honestyRun {
	var run honestyRun
	base := int64(worker+1) * 1_000_000
	var overwriteNext []int64
	for batch := 0; ctx.Err() == nil; batch++ {
		var ops []honestyOp
		overwrite := func(id int64, value string) {
			ops = append(ops, honestyOp{set: true, id: id, value: value}, honestyOp{id: id})
		}
		var later []int64
		for k := 0; k < honestyFreshPerBatch; k++ {
			id := base + int64(batch*honestyFreshPerBatch+k)
			ops = append(ops, honestyOp{set: true, id: id, value: "first-" + strconv.FormatInt(id, 10)})
			if k%2 == 0 {
				overwrite(id, "second-"+strconv.FormatInt(id, 10))
			} else {
				later = append(later, id)
			}
		}
		for _, id := range overwriteNext {
			overwrite(id, "second-"+strconv.FormatInt(id, 10))
		}
		overwriteNext = later
		for j := 0; j < honestySeedsPerBatch; j++ {
			id := seeds[(batch*honestySeedsPerBatch+j)%len(seeds)]
			overwrite(id, fmt.Sprintf("overwrite-%d-%d", batch, id))
		}
		for _, op := range ops {
			if err := cl.Send([]byte(op.line())); err != nil {
				run.err = fmt.Errorf("batch %d: %w", batch, err)
				return run
			}
		}
		if err := cl.Flush(); err != nil {
			run.err = fmt.Errorf("batch %d: %w", batch, err)
			return run
		}
		for i := range ops {
			reply, err := cl.ReadReply()
			if err != nil {
				run.err = fmt.Errorf("batch %d, reply to %q: %w", batch, ops[i].line(), err)
				return run
			}
			ops[i].reply, ops[i].at = string(reply), time.Now()
		}
		run.ops = append(run.ops, ops...)
	}
	return run
}

// countReplies counts the SET replies that arrived in [from, to).
func countReplies(runs []honestyRun, from, to time.Time) int {
	n := 0
	for _, r := range runs {
		for _, op := range r.ops {
			if op.set && !op.at.Before(from) && op.at.Before(to) {
				n++
			}
		}
	}
	return n
}

// honestyCounts summarises the replies of a run.
type honestyCounts struct {
	firstOK, firstFailed         int
	overwriteOK, overwriteFailed int
	// failedMidWrite counts the failed SETs that had started storing
	// copies (every failure but "not enough live members").
	failedMidWrite int
	// failedWithCopy counts the failed SETs whose reply says a copy was
	// stored ("have 1, need 2"): a member holds the failed value.
	failedWithCopy                int
	reads, readErrors, readsWrong int
}

func (c honestyCounts) String() string {
	return fmt.Sprintf("first writes: %d OK, %d failed; overwrites: %d OK, %d failed; %d failures after copies were sent, %d of them with a copy stored; GETs during the run: %d, %d errors",
		c.firstOK, c.firstFailed, c.overwriteOK, c.overwriteFailed, c.failedMidWrite, c.failedWithCopy, c.reads, c.readErrors)
}

// honestyCheck holds what every id must read as, given the replies so far,
// and the values of the SETs that failed.
type honestyCheck struct {
	value  map[int64]string // last acknowledged value; absent: NOT_FOUND
	failed map[int64]map[string]bool
	ids    []int64
	counts honestyCounts
}

func newHonestyCheck() *honestyCheck {
	return &honestyCheck{value: make(map[int64]string), failed: make(map[int64]map[string]bool)}
}

func (h *honestyCheck) track(id int64) {
	if _, seen := h.failed[id]; !seen {
		h.failed[id] = make(map[string]bool)
		h.ids = append(h.ids, id)
	}
}

func (h *honestyCheck) acknowledge(id int64, value string) {
	h.track(id)
	h.value[id] = value
}

// replay applies one reply, in the order its connection got it.
func (h *honestyCheck) replay(t *testing.T, op honestyOp) {
	t.Helper()
	h.track(op.id)
	if !op.set {
		h.counts.reads++
		if strings.HasPrefix(op.reply, "ERROR: ") {
			h.counts.readErrors++
			if h.counts.readErrors <= 5 {
				t.Logf("GET %d during the run: %s", op.id, op.reply)
			}
			return
		}
		if problem := h.judge(op.id, op.reply); problem != "" {
			h.counts.readsWrong++
			if h.counts.readsWrong <= 10 {
				t.Errorf("GET %d right after the SET before it: %s", op.id, problem)
			}
		}
		return
	}
	_, existed := h.value[op.id]
	switch {
	case op.reply == "OK":
		h.value[op.id] = op.value
		if existed {
			h.counts.overwriteOK++
		} else {
			h.counts.firstOK++
		}
	case strings.HasPrefix(op.reply, "ERROR: "):
		h.failed[op.id][op.value] = true
		if !strings.HasPrefix(op.reply, "ERROR: not enough live members") {
			h.counts.failedMidWrite++
		}
		if strings.HasPrefix(op.reply, "ERROR: could not store") && !strings.Contains(op.reply, "have 0,") {
			h.counts.failedWithCopy++
		}
		if existed {
			h.counts.overwriteFailed++
		} else {
			h.counts.firstFailed++
		}
	default:
		t.Errorf("SET %d %s: unexpected reply %q", op.id, op.value, op.reply)
	}
}

// judge returns what is wrong with reading reply for id ("" if nothing).
func (h *honestyCheck) judge(id int64, reply string) string {
	want, found := h.value[id]
	switch {
	case h.failed[id][reply]:
		return fmt.Sprintf("read %q, the value of a SET that failed (want %s)", reply, describeWant(want, found))
	case found && reply == want, !found && reply == "NOT_FOUND":
		return ""
	}
	return fmt.Sprintf("read %q, want %s", reply, describeWant(want, found))
}

func describeWant(value string, found bool) string {
	if !found {
		return "NOT_FOUND"
	}
	return strconv.Quote(value)
}

// verify reads every id back (pipelined) and checks it against the
// replies of the run. Every id must be readable: each committed id has a
// live replica in every phase verify is called in.
func (h *honestyCheck) verify(t *testing.T, cl *client.Client, phase string) {
	t.Helper()
	const window = 256
	bad, errs, failedVisible := 0, 0, 0
	for start := 0; start < len(h.ids); start += window {
		ids := h.ids[start:min(start+window, len(h.ids))]
		for _, id := range ids {
			if err := cl.Send([]byte("GET " + strconv.FormatInt(id, 10))); err != nil {
				t.Fatalf("%s: send GET %d: %v", phase, id, err)
			}
		}
		if err := cl.Flush(); err != nil {
			t.Fatalf("%s: flush: %v", phase, err)
		}
		for _, id := range ids {
			raw, err := cl.ReadReply()
			if err != nil {
				t.Fatalf("%s: reply to GET %d: %v", phase, id, err)
			}
			reply := string(raw)
			if strings.HasPrefix(reply, "ERROR: ") {
				errs++
				if errs <= 5 {
					t.Errorf("%s: GET %d: %s", phase, id, reply)
				}
				continue
			}
			if h.failed[id][reply] {
				failedVisible++
			}
			if problem := h.judge(id, reply); problem != "" {
				bad++
				if bad <= 10 {
					t.Errorf("%s: GET %d %s", phase, id, problem)
				}
			}
		}
	}
	t.Logf("%s: read %d ids back: %d wrong (%d showing a failed SET), %d errors", phase, len(h.ids), bad, failedVisible, errs)
	if bad > 0 || errs > 0 {
		t.Errorf("%s: %d of %d ids read back wrong, %d with an error", phase, bad, len(h.ids), errs)
	}
}
