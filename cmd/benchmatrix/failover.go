package main

// The failover benchmark (`benchmatrix --failover`, what `make
// bench-failover` runs): 3 gateways and 3 members as real processes on
// 127.0.0.1 (cluster/local), writers on the gateways that do not
// lead, and the leader killed (SIGKILL) or stopped (SIGTERM) over and
// over, each time measuring how long the writers went without an
// acknowledged write and which errors they saw.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/cluster/local/devcluster"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// Limits of one failover round. Every wait is bounded; a round whose
// writers have not all resumed within recoverLimit is recorded as not
// recovered, and a cluster that is not healthy again within healthyLimit
// ends the run.
const (
	warmFor       = time.Second      // writes before the signal
	warmMinAcks   = 100              // ... and at least this many
	warmLimit     = 30 * time.Second // for both
	recoverLimit  = 30 * time.Second // the gateways answer every write within --request-timeout (10 s)
	tailFor       = time.Second      // writes measured after every writer resumed
	healthyLimit  = 60 * time.Second
	stopLimit     = 15 * time.Second // SIGTERM to exit, then SIGKILL
	electionPoll  = 25 * time.Millisecond
	writerTimeout = 15 * time.Second // per request; above --request-timeout
)

// failoverOptions configure the failover benchmark.
type failoverOptions struct {
	bin            string
	kills          int // rounds per signal
	conns          int
	size           int
	signals        []string
	tick           time.Duration
	electionTicks  int
	jsonOut, mdOut string
	logs           string
}

// FailoverReport is the failover benchmark's JSON file.
type FailoverReport struct {
	Conditions FailoverConditions `json:"conditions"`
	Summaries  []FailoverSummary  `json:"summaries"`
	Rounds     []FailoverRound    `json:"rounds"`
}

// FailoverConditions describe where and how the failover benchmark ran.
type FailoverConditions struct {
	Machine
	Cluster       string `json:"cluster"`
	RaftTick      string `json:"raft_tick"`
	ElectionTicks int    `json:"raft_election_ticks"`
	Load          string `json:"load"`
	Conns         int    `json:"conns"`
	Size          int    `json:"message_bytes"`
	Kills         int    `json:"rounds_per_signal"`
	// LoadAverage is the machine's load averages at the start and the
	// end of the run.
	LoadAverage string `json:"load_average"`
}

// FailoverRound is one leader failure. Times are milliseconds from the
// signal.
type FailoverRound struct {
	Signal string `json:"signal"` // SIGKILL or SIGTERM
	Round  int    `json:"round"`
	// Leader is the gateway signalled, NextLeader the one that led after.
	Leader     string `json:"leader"`
	NextLeader string `json:"next_leader"`
	// BaselineOpsPerSec is the writers' throughput in the second before
	// the signal.
	BaselineOpsPerSec float64 `json:"baseline_ops_per_sec"`
	// FirstAckMs: the first acknowledged write that was sent after the
	// signal.
	FirstAckMs float64 `json:"first_ack_ms"`
	// AllResumedMs: every connection had a write sent after the signal
	// acknowledged (so every write it had in flight at the signal was
	// answered, one way or the other).
	AllResumedMs float64 `json:"all_resumed_ms"`
	// LongestGapMs is the longest time without any acknowledged write,
	// from the signal to the end of the round's tail.
	LongestGapMs float64 `json:"longest_gap_ms"`
	// ElectedMs: a surviving gateway's /api/raft said it leads and is
	// ready (polled every 25 ms); -1 if not seen.
	ElectedMs float64 `json:"elected_ms"`
	// ExitMs: the signalled process was gone.
	ExitMs float64 `json:"exit_ms"`
	// Recovered is false when not every connection resumed within the
	// limit; the times are then the limit.
	Recovered bool `json:"recovered"`
	// Errors the writers saw from the signal to the end of the tail, by
	// codec.ClassifyError (a broken connection or a timeout is
	// indeterminate), with the first text of each class.
	Definite           int    `json:"definite_errors"`
	Indeterminate      int    `json:"indeterminate_errors"`
	FirstDefinite      string `json:"first_definite,omitempty"`
	FirstIndeterminate string `json:"first_indeterminate,omitempty"`
	// ErrorsBefore counts errors before the signal (warm-up).
	ErrorsBefore int `json:"errors_before_signal"`
	// HandedOff and HandoffMs are what a SIGTERMed leader logged:
	// "leadership handed off before stopping" with handed_off and took.
	HandedOff *bool   `json:"handed_off,omitempty"`
	HandoffMs float64 `json:"handoff_ms,omitempty"`
	// HealthyAfterMs is the time from restarting the signalled gateway to
	// a healthy cluster whose gateways applied the same log.
	HealthyAfterMs float64 `json:"healthy_after_restart_ms"`
}

// Distribution is p50, p99 and max of one figure over a signal's rounds
// (nearest rank: with 20 rounds the p99 is the highest).
type Distribution struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// FailoverSummary sums up one signal's rounds.
type FailoverSummary struct {
	Signal        string        `json:"signal"`
	Rounds        int           `json:"rounds"`
	NotRecovered  int           `json:"not_recovered"`
	FirstAck      Distribution  `json:"first_ack_ms"`
	AllResumed    Distribution  `json:"all_resumed_ms"`
	LongestGap    Distribution  `json:"longest_gap_ms"`
	Elected       Distribution  `json:"elected_ms"`
	Definite      Distribution  `json:"definite_errors_per_round"`
	Indeterminate Distribution  `json:"indeterminate_errors_per_round"`
	DefiniteSum   int           `json:"definite_errors"`
	IndetermSum   int           `json:"indeterminate_errors"`
	ErrorsBefore  int           `json:"errors_before_signal"`
	HandedOff     int           `json:"handed_off,omitempty"`
	Handoff       *Distribution `json:"handoff_ms,omitempty"`
}

// runFailover runs the failover benchmark and writes its report.
func runFailover(ctx context.Context, o failoverOptions) error {
	if o.kills < 1 || o.conns < 2 || o.size < 1 {
		return errors.New("--kills must be at least 1, --conns at least 2 and --size at least 1")
	}
	for _, s := range o.signals {
		if s != "kill" && s != "term" {
			return fmt.Errorf("--signals: %q is neither kill nor term", s)
		}
	}
	dir, err := os.MkdirTemp("", "tolerex-failover-")
	if err != nil {
		return fmt.Errorf("create the cluster's dir: %w", err)
	}
	defer os.RemoveAll(dir)
	c, err := local.New(local.Config{
		Binary: o.bin, Dir: dir, Gateways: 3, Members: devMembers, Tolerance: devTolerance, LogLevel: "info",
		GatewayArgs:      []string{"--raft-tick", o.tick.String(), "--raft-election-ticks", strconv.Itoa(o.electionTicks)},
		GatewayGroupArgs: local.RaftGroup,
	})
	if err != nil {
		return fmt.Errorf("prepare the cluster: %w", err)
	}
	defer func() { _ = c.KillAll() }()
	if o.logs != "" {
		defer func() {
			if err := c.CopyLogs(o.logs); err != nil {
				fmt.Fprintln(os.Stderr, "copy logs:", err)
			}
		}()
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	if err := c.WaitHealthy(ctx, healthyLimit); err != nil {
		return err
	}
	report := &FailoverReport{Conditions: failoverConditions(o)}
	startLoad := loadAverage()
	fmt.Printf("cluster of 3 gateways and 3 members ready in %s\n", dir)
	nextID := int64(20_000_000_000)
	for _, sig := range o.signals {
		for round := 1; round <= o.kills; round++ {
			r, err := failoverRound(ctx, c, o, sig, round, nextID)
			nextID += 1_000_000_000
			if err != nil {
				return fmt.Errorf("%s round %d: %w", signalName(sig), round, err)
			}
			report.Rounds = append(report.Rounds, *r)
			fmt.Println(r.line())
		}
	}
	report.Conditions.LoadAverage = fmt.Sprintf("%s at the start, %s at the end", startLoad, loadAverage())
	for _, sig := range o.signals {
		report.Summaries = append(report.Summaries, summarize(signalName(sig), report.Rounds))
	}
	for _, s := range report.Summaries {
		fmt.Println(s.line())
	}
	return writeReport(o.jsonOut, o.mdOut, failoverBegin, failoverEnd, report, failoverMarkdown(report))
}

// signalName is the name of a --signals entry.
func signalName(s string) string {
	if s == "term" {
		return "SIGTERM"
	}
	return "SIGKILL"
}

// failoverRound finds the leader, starts writers on the other gateways,
// signals the leader, measures until every writer resumed and a tail
// after, restarts the leader and waits until the cluster is healthy.
func failoverRound(ctx context.Context, c *local.Cluster, o failoverOptions, sig string, round int, firstID int64) (*FailoverRound, error) {
	leader, err := leadingGateway(ctx, c)
	if err != nil {
		return nil, err
	}
	var survivors []*local.Node
	for _, g := range c.Gateways {
		if g != leader {
			survivors = append(survivors, g)
		}
	}
	r := &FailoverRound{Signal: signalName(sig), Round: round, Leader: leader.Name, ElectedMs: -1}
	w := startWriters(survivors, o.conns, o.size, firstID)
	defer w.finish()
	warmed := time.Now()
	if err := poll.Until(ctx, warmLimit, 20*time.Millisecond, "writes before the signal", func() (bool, error) {
		n := w.acked()
		return time.Since(warmed) >= warmFor && n >= warmMinAcks, fmt.Errorf("%d acknowledged", n)
	}); err != nil {
		return nil, err
	}

	var logOffset int64
	if st, err := os.Stat(leader.LogPath); err == nil {
		logOffset = st.Size()
	}
	at := time.Now()
	elected := watchElection(ctx, survivors, at)
	if sig == "term" {
		err = leader.Stop(stopLimit)
	} else {
		err = leader.Kill()
	}
	if err != nil {
		return nil, err
	}
	r.ExitMs = ms(time.Since(at))
	recoverErr := poll.Until(ctx, recoverLimit, 10*time.Millisecond, "every writer resumed", func() (bool, error) {
		n := w.resumedSince(at)
		return n == len(w.conns), fmt.Errorf("%d of %d writers resumed", n, len(w.conns))
	})
	if recoverErr != nil && ctx.Err() != nil {
		return nil, recoverErr
	}
	r.Recovered = recoverErr == nil
	if r.Recovered { // measure a while longer: errors right after the failover count too
		tail := time.NewTimer(time.Until(at.Add(w.lastResume(at) + tailFor)))
		select {
		case <-tail.C:
		case <-ctx.Done():
			tail.Stop()
			return nil, ctx.Err()
		}
	}
	w.finish()
	end := time.Now()
	w.measure(r, at, end)
	if e, ok := <-elected; ok {
		r.ElectedMs = ms(e)
	}
	if sig == "term" {
		r.HandedOff, r.HandoffMs = handoffFromLog(leader.LogPath, logOffset)
	}
	if next, err := leadingGateway(ctx, c); err == nil {
		r.NextLeader = next.Name
	}

	restarted := time.Now()
	if err := leader.Start(); err != nil {
		return nil, err
	}
	if err := c.WaitHealthy(ctx, healthyLimit); err != nil {
		return nil, err
	}
	if err := waitApplied(ctx, c); err != nil {
		return nil, err
	}
	r.HealthyAfterMs = ms(time.Since(restarted))
	return r, nil
}

// leadingGateway waits until one gateway leads, ready, and every running
// gateway follows it.
func leadingGateway(ctx context.Context, c *local.Cluster) (*local.Node, error) {
	var leader *local.Node
	err := poll.Until(ctx, 30*time.Second, 50*time.Millisecond, "one gateway leads, the others follow", func() (bool, error) {
		leader = nil
		var lead uint64
		for _, g := range c.Gateways {
			if !g.Running() {
				continue
			}
			var st devcluster.RaftView
			if err := g.GetJSON(ctx, "/api/raft", &st); err != nil {
				return false, err
			}
			if st.Lead == 0 || (lead != 0 && st.Lead != lead) {
				return false, fmt.Errorf("%s: %s, lead %d, term %d", g.Name, st.State, st.Lead, st.Term)
			}
			lead = st.Lead
			if st.State == "leader" && st.LeadershipReady {
				leader = g
			}
		}
		if leader == nil {
			return false, fmt.Errorf("gateway %d does not say it leads and is ready", lead)
		}
		return true, nil
	})
	return leader, err
}

// waitApplied waits until every gateway applied the same log index (no
// writes run between rounds).
func waitApplied(ctx context.Context, c *local.Cluster) error {
	return poll.Until(ctx, 30*time.Second, 50*time.Millisecond, "every gateway applied the same log", func() (bool, error) {
		var applied []uint64
		for _, g := range c.Gateways {
			var st struct {
				Applied uint64 `json:"applied"`
			}
			if err := g.GetJSON(ctx, "/api/raft", &st); err != nil {
				return false, err
			}
			applied = append(applied, st.Applied)
		}
		return slices.Min(applied) == slices.Max(applied), fmt.Errorf("applied %v", applied)
	})
}

// watchElection polls the survivors' /api/raft from the signal on and
// sends the time after at when one said it leads and is ready; the
// channel is closed without a value if none did within recoverLimit.
func watchElection(ctx context.Context, survivors []*local.Node, at time.Time) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	go func() {
		defer close(out)
		_ = poll.Until(ctx, recoverLimit, electionPoll, "a survivor leads", func() (bool, error) {
			for _, g := range survivors {
				reqCtx, cancel := context.WithTimeout(ctx, time.Second)
				var st devcluster.RaftView
				err := g.GetJSON(reqCtx, "/api/raft", &st)
				cancel()
				if err == nil && st.State == "leader" && st.LeadershipReady {
					out <- time.Since(at)
					return true, nil
				}
			}
			return false, nil
		})
	}()
	return out
}

// handoffFromLog reads what the stopped gateway logged about its
// leadership transfer, from offset on.
func handoffFromLog(path string, offset int64) (*bool, float64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, 0
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "leadership handed off before stopping"):
			var entry struct {
				HandedOff bool    `json:"handed_off"`
				Took      float64 `json:"took"`
			}
			if json.Unmarshal([]byte(line), &entry) != nil {
				continue
			}
			return &entry.HandedOff, entry.Took
		case strings.Contains(line, "leadership not handed off before stopping"):
			no := false
			return &no, 0
		}
	}
	return nil, 0
}

// writers are lockstep SET connections on some gateways, writing fresh
// ids and recording every outcome.
type writers struct {
	conns []*writer
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// writer is one connection's loop and what it saw.
type writer struct {
	addr string
	// lastSent is when the write acknowledged last was sent (unix nanos).
	lastSent atomic.Int64
	acks     atomic.Int64

	mu       sync.Mutex
	acked    []ack
	failures []failure
}

// ack is one acknowledged write: when it was sent and answered.
type ack struct{ sent, done time.Time }

// failure is one error a writer saw.
type failure struct {
	at    time.Time
	class codec.Outcome
	text  string
}

// startWriters starts n connections spread over the gateways, each
// writing ids from its own range of firstID on.
func startWriters(gateways []*local.Node, n, size int, firstID int64) *writers {
	w := &writers{stop: make(chan struct{})}
	for i := range n {
		wr := &writer{addr: gateways[i%len(gateways)].ClientAddr}
		w.conns = append(w.conns, wr)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			wr.loop(w.stop, firstID+int64(i)*10_000_000, size)
		}()
	}
	return w
}

// finish stops the writers and waits for them (each ends its request in
// flight first, within writerTimeout).
func (w *writers) finish() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// acked is the number of acknowledged writes so far.
func (w *writers) acked() int64 {
	var n int64
	for _, c := range w.conns {
		n += c.acks.Load()
	}
	return n
}

// resumedSince counts the writers that had a write sent after at
// acknowledged.
func (w *writers) resumedSince(at time.Time) int {
	n := 0
	for _, c := range w.conns {
		if c.lastSent.Load() > at.UnixNano() {
			n++
		}
	}
	return n
}

// resumedAfter is when the first write a writer sent after at was
// acknowledged.
func (wr *writer) resumedAfter(at time.Time) (time.Time, bool) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	for _, a := range wr.acked {
		if a.sent.After(at) {
			return a.done, true
		}
	}
	return time.Time{}, false
}

// lastResume is how long after at the last writer to resume did so.
func (w *writers) lastResume(at time.Time) time.Duration {
	var last time.Duration
	for _, c := range w.conns {
		if t, ok := c.resumedAfter(at); ok {
			last = max(last, t.Sub(at))
		}
	}
	return last
}

// measure fills in a round's figures from what the writers saw; at is the
// signal, end when the writers stopped.
func (w *writers) measure(r *FailoverRound, at, end time.Time) {
	first, all := time.Duration(-1), time.Duration(0)
	var dones []time.Time
	for _, c := range w.conns {
		if t, ok := c.resumedAfter(at); ok {
			d := t.Sub(at)
			if first < 0 || d < first {
				first = d
			}
			all = max(all, d)
		}
		c.mu.Lock()
		for _, a := range c.acked {
			dones = append(dones, a.done)
		}
		for _, f := range c.failures {
			if f.at.Before(at) {
				r.ErrorsBefore++
				continue
			}
			if f.class == codec.Definite {
				r.Definite++
				r.FirstDefinite = cmp.Or(r.FirstDefinite, f.text)
			} else {
				r.Indeterminate++
				r.FirstIndeterminate = cmp.Or(r.FirstIndeterminate, f.text)
			}
		}
		c.mu.Unlock()
	}
	if first < 0 {
		first = recoverLimit
	}
	if !r.Recovered {
		all = recoverLimit
	}
	r.FirstAckMs, r.AllResumedMs = ms(first), ms(all)
	slices.SortFunc(dones, func(a, b time.Time) int { return a.Compare(b) })
	prev, gap, baseline := at, time.Duration(0), 0
	for _, d := range dones {
		if d.Before(at) {
			if !d.Before(at.Add(-time.Second)) {
				baseline++
			}
			continue
		}
		gap = max(gap, d.Sub(prev))
		prev = d
	}
	if !r.Recovered {
		gap = max(gap, end.Sub(prev))
	}
	r.LongestGapMs, r.BaselineOpsPerSec = ms(gap), float64(baseline)
}

// loop writes until stop is closed, reconnecting after a broken
// connection.
func (wr *writer) loop(stop <-chan struct{}, id int64, size int) {
	var cl *client.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	msg := make([]byte, 0, size+21)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if cl == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := client.Dial(ctx, wr.addr, client.Options{DialTimeout: time.Second, IOTimeout: writerTimeout})
			cancel()
			if err != nil {
				// Nothing was sent (a definite error); the gateway is not
				// reachable: try again shortly.
				wr.record(time.Now(), time.Time{}, err)
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			cl = c
		}
		msg = loadgen.AppendValue(msg[:0], id, size)
		sent := time.Now()
		err := cl.Set(id, msg)
		wr.record(sent, time.Now(), err)
		var se *client.ServerError
		if err != nil && !errors.As(err, &se) {
			cl.Close()
			cl = nil
		}
		id++
	}
}

// record notes one write's outcome; done is zero when it was never sent.
func (wr *writer) record(sent, done time.Time, err error) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if err == nil {
		wr.acked = append(wr.acked, ack{sent: sent, done: done})
		wr.lastSent.Store(sent.UnixNano())
		wr.acks.Add(1)
		return
	}
	class := codec.Indeterminate
	var se *client.ServerError
	switch {
	case done.IsZero():
		class = codec.Definite
	case errors.As(err, &se):
		class = codec.ClassifyError(se.Error())
	}
	at := cmp.Or(done, sent)
	wr.failures = append(wr.failures, failure{at: at, class: class, text: err.Error()})
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// line is a round's one-line summary for the terminal.
func (r *FailoverRound) line() string {
	s := fmt.Sprintf("%s %2d %s: first ack %7.1f ms, all resumed %7.1f ms, longest gap %7.1f ms, elected %7.1f ms, errors %d definite %d indeterminate, baseline %4.0f ops/s",
		r.Signal, r.Round, r.Leader, r.FirstAckMs, r.AllResumedMs, r.LongestGapMs, r.ElectedMs, r.Definite, r.Indeterminate, r.BaselineOpsPerSec)
	if r.HandedOff != nil {
		s += fmt.Sprintf(", handed off %v in %.1f ms", *r.HandedOff, r.HandoffMs)
	}
	if !r.Recovered {
		s += fmt.Sprintf(" (NOT every writer resumed within %s)", recoverLimit)
	}
	return s
}

// distribution is p50, p99 and max of values (nearest rank).
func distribution(values []float64) Distribution {
	if len(values) == 0 {
		return Distribution{}
	}
	v := slices.Sorted(slices.Values(values))
	rank := func(q float64) float64 { return v[max(0, int(math.Ceil(q*float64(len(v))))-1)] }
	return Distribution{P50: rank(0.50), P99: rank(0.99), Max: v[len(v)-1]}
}

// summarize sums up the rounds of one signal.
func summarize(signal string, rounds []FailoverRound) FailoverSummary {
	s := FailoverSummary{Signal: signal}
	var first, all, gap, elected, def, ind, handoff []float64
	for _, r := range rounds {
		if r.Signal != signal {
			continue
		}
		s.Rounds++
		if !r.Recovered {
			s.NotRecovered++
		}
		first, all, gap = append(first, r.FirstAckMs), append(all, r.AllResumedMs), append(gap, r.LongestGapMs)
		if r.ElectedMs >= 0 {
			elected = append(elected, r.ElectedMs)
		}
		def, ind = append(def, float64(r.Definite)), append(ind, float64(r.Indeterminate))
		s.DefiniteSum += r.Definite
		s.IndetermSum += r.Indeterminate
		s.ErrorsBefore += r.ErrorsBefore
		if r.HandedOff != nil && *r.HandedOff {
			s.HandedOff++
			handoff = append(handoff, r.HandoffMs)
		}
	}
	s.FirstAck, s.AllResumed, s.LongestGap, s.Elected = distribution(first), distribution(all), distribution(gap), distribution(elected)
	s.Definite, s.Indeterminate = distribution(def), distribution(ind)
	if len(handoff) > 0 {
		h := distribution(handoff)
		s.Handoff = &h
	}
	return s
}

// line is a summary's text for the terminal.
func (s FailoverSummary) line() string {
	d := func(x Distribution) string {
		return fmt.Sprintf("p50 %.0f / p99 %.0f / max %.0f ms", x.P50, x.P99, x.Max)
	}
	out := fmt.Sprintf("%s x %d: first ack %s; all resumed %s; longest gap %s; elected %s; errors %d definite, %d indeterminate",
		s.Signal, s.Rounds, d(s.FirstAck), d(s.AllResumed), d(s.LongestGap), d(s.Elected), s.DefiniteSum, s.IndetermSum)
	if s.Handoff != nil {
		out += fmt.Sprintf("; handed off %d of %d, took %s", s.HandedOff, s.Rounds, d(*s.Handoff))
	}
	return out
}

// failoverConditions describes the machine, the cluster and the load.
func failoverConditions(o failoverOptions) FailoverConditions {
	return FailoverConditions{
		Machine: thisMachine(),
		Cluster: "3 gateways (one Raft group) + 3 members as separate processes (cluster/local), tolerance 2, fsync on, mTLS between nodes, " +
			"--no-prompt, --request-timeout 10s, log level info, all on 127.0.0.1",
		RaftTick: o.tick.String(), ElectionTicks: o.electionTicks,
		Load: "lockstep SETs of fresh ids, the connections spread over the two gateways that do not lead, plain TCP; " +
			"the writers run on the same machine as the cluster",
		Conns: o.conns, Size: o.size, Kills: o.kills,
	}
}

// Markers delimit the failover benchmark's generated section.
const (
	failoverBegin = "<!-- failover:begin -->"
	failoverEnd   = "<!-- failover:end -->"
)

// failoverMarkdown renders the failover benchmark's generated section.
func failoverMarkdown(r *FailoverReport) string {
	var b strings.Builder
	c := r.Conditions
	fmt.Fprintf(&b, "Generated by `make bench-failover` on %s at commit `%s`.\n\n", c.Date, c.Commit)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, %s\n", c.CPU, c.Cores, c.Kernel, c.Go)
	fmt.Fprintf(&b, "- Cluster: %s; Raft tick %s, election after %d ticks (randomised up to twice that)\n", c.Cluster, c.RaftTick, c.ElectionTicks)
	fmt.Fprintf(&b, "- Machine load averages (1, 5, 15 min): %s\n", c.LoadAverage)
	fmt.Fprintf(&b, "- Load: %d connections, %s, %d-byte messages\n", c.Conns, c.Load, c.Size)
	fmt.Fprintf(&b, "- Each round: find the leader (/api/raft), write for 1 s, signal it, measure until every connection had a write sent after the signal acknowledged and 1 s more, "+
		"restart it, wait until every node is ready, the leader sees every member live and the gateways applied the same log. %d rounds per signal\n\n", c.Kills)
	b.WriteString("Times in ms from the signal, p50 / p99 / max over the rounds (nearest rank: with fewer than 100 rounds the p99 is the highest).\n\n")
	b.WriteString("| signal | rounds | first write acknowledged | every connection resumed | longest time without an acknowledged write | survivor leads (polled every 25 ms) | errors per round: definite | indeterminate | leadership handed off (gateway's log) |\n")
	b.WriteString("|---|---:|---|---|---|---|---|---|---|\n")
	d := func(x Distribution) string { return fmt.Sprintf("%.0f / %.0f / %.0f", x.P50, x.P99, x.Max) }
	e := func(x Distribution, sum int) string {
		return fmt.Sprintf("%.0f / %.0f / %.0f (%d in all)", x.P50, x.P99, x.Max, sum)
	}
	for _, s := range r.Summaries {
		handoff := ""
		if s.Handoff != nil {
			handoff = fmt.Sprintf("%d of %d; took %.1f / %.1f / %.1f", s.HandedOff, s.Rounds, s.Handoff.P50, s.Handoff.P99, s.Handoff.Max)
		} else if s.Signal == "SIGTERM" {
			handoff = fmt.Sprintf("0 of %d", s.Rounds)
		}
		rounds := strconv.Itoa(s.Rounds)
		if s.NotRecovered > 0 {
			rounds += fmt.Sprintf(" (%d not recovered within %s)", s.NotRecovered, recoverLimit)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Signal, rounds, d(s.FirstAck), d(s.AllResumed), d(s.LongestGap), d(s.Elected),
			e(s.Definite, s.DefiniteSum), e(s.Indeterminate, s.IndetermSum), handoff)
	}
	b.WriteString("\nEvery round:\n\n| signal | round | leader | next | first ack | all resumed | longest gap | survivor leads | definite | indeterminate | handed off, took | baseline ops/s |\n")
	b.WriteString("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, x := range r.Rounds {
		handoff := ""
		if x.HandedOff != nil {
			handoff = fmt.Sprintf("%v, %.1f", *x.HandedOff, x.HandoffMs)
		}
		first := fmt.Sprintf("%.0f", x.FirstAckMs)
		if !x.Recovered {
			first = "> " + first
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.0f | %.0f | %.0f | %d | %d | %s | %.0f |\n", x.Signal, x.Round, x.Leader, x.NextLeader, first,
			x.AllResumedMs, x.LongestGapMs, x.ElectedMs, x.Definite, x.Indeterminate, handoff, x.BaselineOpsPerSec)
	}
	return b.String()
}
