package main

// The soak run (`benchmatrix --soak DURATION`, what `make soak` runs):
// does a node grow (memory, goroutines, open files) when it runs for long
// under load while its peers keep dying? 3 gateways and 3 members as real
// processes on 127.0.0.1 (cluster/local, with `tolerex dev`'s per-process
// defaults), a mixed load over all three gateways for the whole run, and
// at a fixed interval one fault in turn on gateway-3 and member-3
// (SIGKILL, then restarted after a second; or SIGSTOP for a few seconds).
// Gateway-1 and -2 and member-1 and -2 are never touched: what they show
// is what a node shows that keeps watching its peers die. The load's
// connections stay open (one that loses its gateway moves to the next
// and stays there), so a churning client beside it opens a short
// connection every soakChurnEvery, to each gateway in turn: a SET and a
// GET of its own key, then QUIT or a plain close. Every node is
// sampled at a fixed interval (resident memory and open files from /proc,
// goroutines and heap in use from its /metrics). At the end every key the
// load wrote is read back through the gateways.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/cluster/local/cputime"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// Defaults and limits of the soak run.
const (
	soakRestartAfter = time.Second      // a killed node is started again this long after
	soakPauseFor     = 5 * time.Second  // a SIGSTOPped node is continued this long after
	soakSettle       = 5 * time.Minute  // samples from here on count as settled
	soakIOTimeout    = 10 * time.Second // the load's and the read-back's wait per reply
	soakChurnEvery   = 200 * time.Millisecond
	// soakChurnKeys is the first key of the churning client, far above the
	// load's keys.
	soakChurnKeys = int64(1) << 40
)

// soakOptions configure the soak run.
type soakOptions struct {
	bin            string
	duration       time.Duration
	faultEvery     time.Duration
	sampleEvery    time.Duration
	conns          int
	keys           int64
	ratio          float64
	size           int
	jsonOut, mdOut string
}

// SoakReport is the soak run's JSON file.
type SoakReport struct {
	Conditions SoakConditions    `json:"conditions"`
	Load       *loadgen.Result   `json:"load"`
	Faults     []SoakFault       `json:"faults"`
	ReadBack   ReadBack          `json:"read_back"`
	Churn      Churn             `json:"churn"`
	Nodes      []SoakNodeSummary `json:"nodes"`
	// Tenths are the load's requests a second and where the CPU went in
	// each tenth of the run.
	Tenths         []SoakTenth         `json:"tenths"`
	Samples        []SoakSample        `json:"samples"`
	MachineSamples []SoakMachineSample `json:"machine_samples"`
}

// SoakConditions describe where and how the soak ran.
type SoakConditions struct {
	Machine
	Cluster     string  `json:"cluster"`
	Duration    string  `json:"duration"`
	FaultEvery  string  `json:"fault_every"`
	SampleEvery string  `json:"sample_every"`
	Settle      string  `json:"settled_after"`
	Conns       int     `json:"conns"`
	Keys        int64   `json:"keys"`
	Ratio       float64 `json:"get_ratio"`
	Size        int     `json:"message_bytes"`
	LoadAverage string  `json:"load_average"`
}

// SoakFault is one fault of the run.
type SoakFault struct {
	AtSec  float64 `json:"at_s"`
	Kind   string  `json:"kind"` // SIGKILL or SIGSTOP
	Node   string  `json:"node"`
	Failed string  `json:"failed,omitempty"` // why it could not be made or undone
}

// soakFaultPlan is the faults in the order they are made, over and over.
var soakFaultPlan = []SoakFault{
	{Kind: "SIGKILL", Node: "gateway-3"}, {Kind: "SIGKILL", Node: "member-3"},
	{Kind: "SIGSTOP", Node: "gateway-3"}, {Kind: "SIGSTOP", Node: "member-3"},
}

// soakFaultAt is the i-th fault (from 0) of the run.
func soakFaultAt(i int) SoakFault { return soakFaultPlan[i%len(soakFaultPlan)] }

// soakTouched reports whether the run makes faults on the named node.
func soakTouched(node string) bool {
	for _, f := range soakFaultPlan {
		if f.Node == node {
			return true
		}
	}
	return false
}

// SoakSample is one node at one moment. -1 means not measured (the node
// was down or paused, or did not answer; CPU is measured while paused).
type SoakSample struct {
	AtSec float64 `json:"at_s"`
	Node  string  `json:"node"`
	Pid   int     `json:"pid"`
	// CPUSec is the CPU time the process has used since it started.
	CPUSec         float64 `json:"cpu_s"`
	RSSBytes       int64   `json:"rss_bytes"`
	OpenFiles      int64   `json:"open_files"`
	Goroutines     int64   `json:"goroutines"`
	HeapInuseBytes int64   `json:"heap_inuse_bytes"`
}

// SoakRange is the lowest and highest value of a measure over samples;
// N is how many samples measured it.
type SoakRange struct {
	Min, Max int64
	N        int
}

func (r *SoakRange) add(v int64) {
	if v < 0 {
		return
	}
	if r.N == 0 || v < r.Min {
		r.Min = v
	}
	if r.N == 0 || v > r.Max {
		r.Max = v
	}
	r.N++
}

// SoakWindow is every measure's range over one part of the run.
type SoakWindow struct {
	RSS, OpenFiles, Goroutines, HeapInuse SoakRange
}

func (w *SoakWindow) add(s SoakSample) {
	w.RSS.add(s.RSSBytes)
	w.OpenFiles.add(s.OpenFiles)
	w.Goroutines.add(s.Goroutines)
	w.HeapInuse.add(s.HeapInuseBytes)
}

// SoakNodeSummary is one node over the run: its first sample, the first
// settled one, the ranges over the settled part and over each of its
// halves, and its last sample.
type SoakNodeSummary struct {
	Node    string `json:"node"`
	Touched bool   `json:"faulted"`
	// Starts counts the processes sampled (more than 1 if it was killed
	// and restarted).
	Starts       int        `json:"processes"`
	First        SoakSample `json:"first"`
	FirstSettled SoakSample `json:"first_settled"`
	Settled      SoakWindow `json:"settled"`
	FirstHalf    SoakWindow `json:"settled_first_half"`
	SecondHalf   SoakWindow `json:"settled_second_half"`
	Last         SoakSample `json:"last"`
	// RSSGrowth is the highest resident memory of the second half over
	// that of the first (0 when either has no sample).
	RSSGrowth float64 `json:"rss_growth"`
	// DiskBytes is the size of its data dir at the end.
	DiskBytes int64 `json:"disk_bytes"`
}

// summarizeSamples sums the samples up by node, in the order the nodes
// first appear. Samples at or after settle are settled; the settled part
// is split in two halves at its middle up to end.
func summarizeSamples(samples []SoakSample, settle, end time.Duration) []SoakNodeSummary {
	middle := (settle + (end-settle)/2).Seconds()
	var order []string
	byNode := map[string]*SoakNodeSummary{}
	pids := map[string]map[int]bool{}
	for _, s := range samples {
		sum, ok := byNode[s.Node]
		if !ok {
			sum = &SoakNodeSummary{Node: s.Node, Touched: soakTouched(s.Node), First: s, FirstSettled: SoakSample{AtSec: -1}}
			byNode[s.Node], pids[s.Node] = sum, map[int]bool{}
			order = append(order, s.Node)
		}
		if s.Pid > 0 {
			pids[s.Node][s.Pid] = true
		}
		sum.Last = s
		if s.AtSec < settle.Seconds() {
			continue
		}
		if sum.FirstSettled.AtSec < 0 {
			sum.FirstSettled = s
		}
		sum.Settled.add(s)
		if s.AtSec < middle {
			sum.FirstHalf.add(s)
		} else {
			sum.SecondHalf.add(s)
		}
	}
	out := make([]SoakNodeSummary, 0, len(order))
	for _, node := range order {
		sum := byNode[node]
		sum.Starts = len(pids[node])
		if sum.FirstHalf.RSS.N > 0 && sum.SecondHalf.RSS.N > 0 && sum.FirstHalf.RSS.Max > 0 {
			sum.RSSGrowth = float64(sum.SecondHalf.RSS.Max) / float64(sum.FirstHalf.RSS.Max)
		}
		out = append(out, *sum)
	}
	return out
}

// throughputByTenth is the requests a second in each tenth of a run's
// per-second series.
func throughputByTenth(series []loadgen.Second) []float64 {
	if len(series) == 0 {
		return nil
	}
	tenths := make([]float64, 10)
	counts := make([]int, 10)
	for i, s := range series {
		t := i * 10 / len(series)
		tenths[t] += float64(s.Ops)
		counts[t]++
	}
	for t := range tenths {
		if counts[t] > 0 {
			tenths[t] /= float64(counts[t])
		}
	}
	return tenths
}

func runSoak(ctx context.Context, o soakOptions) error {
	switch {
	case o.duration < time.Minute:
		return fmt.Errorf("--soak must be at least 1m, got %s", o.duration)
	case o.faultEvery < 2*soakPauseFor || o.sampleEvery < time.Second:
		return fmt.Errorf("--fault-every must be at least %s and --sample-every at least 1s", 2*soakPauseFor)
	case o.conns < 1 || o.keys < 1 || o.size < 1 || o.ratio < 0 || o.ratio > 1:
		return errors.New("--conns, --keys and --size must be at least 1, --ratio between 0 and 1")
	}
	dir, err := os.MkdirTemp("", "tolerex-soak-")
	if err != nil {
		return fmt.Errorf("create the cluster's dir: %w", err)
	}
	defer os.RemoveAll(dir)
	perProcess := []string{"--max-procs", "1"} // as `tolerex dev` on 2 cores
	c, err := local.New(local.Config{
		Binary: o.bin, Dir: dir, Gateways: 3, Members: devMembers, Tolerance: devTolerance, LogLevel: "info",
		GatewayArgs: append([]string{"--no-prompt"}, perProcess...), MemberArgs: perProcess,
		GatewayGroupArgs: local.RaftGroup,
	})
	if err != nil {
		return fmt.Errorf("prepare the cluster: %w", err)
	}
	defer func() { _ = c.KillAll() }()
	if err := c.Start(); err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	if err := c.WaitHealthy(ctx, healthyLimit); err != nil {
		return err
	}
	settle := min(soakSettle, o.duration/6)
	report := &SoakReport{Conditions: SoakConditions{
		Machine: thisMachine(),
		Cluster: "3 gateways (one Raft group) + 3 members as separate processes (cluster/local), tolerance 2, fsync on, mTLS between nodes, " +
			"--max-procs 1 each (as `tolerex dev` on 2 cores), log level info, all on 127.0.0.1",
		Duration: o.duration.String(), FaultEvery: o.faultEvery.String(), SampleEvery: o.sampleEvery.String(), Settle: settle.String(),
		Conns: o.conns, Keys: o.keys, Ratio: o.ratio, Size: o.size,
	}}
	startLoad := loadAverage()
	fmt.Printf("cluster of 3 gateways and 3 members ready in %s; soaking for %s\n", dir, o.duration)

	type loadOutcome struct {
		res *loadgen.Result
		err error
	}
	churnDone := make(chan Churn, 1)
	loadDone := make(chan loadOutcome, 1)
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	go func() {
		res, err := loadgen.Run(loadCtx, loadgen.Config{
			Addrs: c.ClientAddrs(), IOTimeout: soakIOTimeout, Conns: o.conns, Depth: 1, Op: loadgen.OpMix, Ratio: o.ratio,
			Size: o.size, Duration: o.duration, Keys: o.keys, Series: true,
		})
		loadDone <- loadOutcome{res, err}
	}()
	go func() { churnDone <- churn(loadCtx, c.ClientAddrs(), o.size) }()

	start := time.Now()
	sampleTick := time.NewTicker(o.sampleEvery)
	defer sampleTick.Stop()
	faultTick := time.NewTicker(o.faultEvery)
	defer faultTick.Stop()
	// A sample when the load's measured time ends, so that the last
	// interval ends with it (the load then waits for its requests in
	// flight before it returns).
	loadEnd := time.NewTimer(o.duration)
	defer loadEnd.Stop()
	sample := func() {
		report.Samples = append(report.Samples, sampleNodes(ctx, c, start)...)
		report.MachineSamples = append(report.MachineSamples, sampleMachine(start))
	}
	sample()
	// The fault in place, if any, is undone when undoAt fires, in the
	// loop, so that samples stay on time while a node is down or paused
	// (--fault-every is at least twice the longest fault, so one fault is
	// undone before the next is made).
	var (
		undo   func() error
		undoAt <-chan time.Time
	)
	undoFault := func() {
		if undo == nil {
			return
		}
		if err := undo(); err != nil {
			f := &report.Faults[len(report.Faults)-1]
			f.Failed = "undo: " + err.Error()
			fmt.Printf("%6.0fs undo %s %s: %v\n", time.Since(start).Seconds(), f.Kind, f.Node, err)
		}
		undo, undoAt = nil, nil
	}
	var load loadOutcome
	for running := true; running; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case load = <-loadDone:
			running = false
		case <-sampleTick.C:
			sample()
		case <-loadEnd.C:
			sample()
		case <-faultTick.C:
			f := soakFaultAt(len(report.Faults))
			f.AtSec = time.Since(start).Seconds()
			u, after, err := makeFault(c, f)
			if err != nil {
				f.Failed = err.Error()
				fmt.Printf("%6.0fs %s %s: %v\n", f.AtSec, f.Kind, f.Node, err)
			} else {
				fmt.Printf("%6.0fs %s %s\n", f.AtSec, f.Kind, f.Node)
				undo, undoAt = u, time.After(after)
			}
			report.Faults = append(report.Faults, f)
		case <-undoAt:
			undoFault()
		}
	}
	undoFault()  // a fault made just before the load ended
	cancelLoad() // stops the churning client
	report.Churn = <-churnDone
	if load.err != nil {
		return fmt.Errorf("the load: %w", load.err)
	}
	report.Load = load.res
	if report.Tenths, err = soakTenths(report.Samples, report.MachineSamples, load.res.Series, o.duration); err != nil {
		return err
	}
	report.Load.Series = nil // kept as tenths: an hour is 3,600 entries
	if err := c.WaitHealthy(ctx, healthyLimit); err != nil {
		return fmt.Errorf("after the load: %w", err)
	}
	sample()
	written := min(o.keys, load.res.Sets) // SETs go through the keys in order
	fmt.Printf("%6.0fs load done (%d requests, %d errors, %d mismatches); reading back %d keys\n",
		time.Since(start).Seconds(), load.res.Ops, load.res.Errors, load.res.Mismatches, written)
	report.ReadBack, err = readBack(ctx, c.ClientAddrs(), written, o.size)
	if err != nil {
		return err
	}
	report.Conditions.LoadAverage = fmt.Sprintf("%s at the start, %s at the end", startLoad, loadAverage())
	report.Nodes = summarizeSamples(report.Samples, settle, time.Since(start))
	for i := range report.Nodes {
		if n, ok := c.Node(report.Nodes[i].Node); ok {
			report.Nodes[i].DiskBytes = dirBytes(n.DataDir)
		}
	}
	fmt.Print(soakMarkdown(report))
	if err := writeReport(o.jsonOut, o.mdOut, soakBegin, soakEnd, report, soakMarkdown(report)); err != nil {
		return err
	}
	rb, ch := report.ReadBack, report.Churn
	if load.res.Mismatches > 0 || rb.Mismatches > 0 || rb.Misses > 0 || rb.Errors > 0 || ch.Mismatches > 0 {
		return fmt.Errorf("data check failed: %d mismatches in the load, %d in the churning client (first: %s); read-back of %d keys: %d mismatches, %d misses, %d errors (first: %s)",
			load.res.Mismatches, ch.Mismatches, ch.First, rb.Keys, rb.Mismatches, rb.Misses, rb.Errors, rb.First)
	}
	return nil
}

// Churn is what the churning client did.
type Churn struct {
	// Connections counts the connections that did their SET and GET.
	Connections int64 `json:"connections"`
	// Failed counts the connections that could not connect or whose SET
	// or GET failed (their gateway was down or paused, say).
	Failed int64 `json:"failed"`
	// Mismatches counts GETs that did not return what the SET before them
	// on the same connection stored, after it was acknowledged.
	Mismatches int64  `json:"mismatches"`
	First      string `json:"first_problem,omitempty"`
}

// churn opens a short connection every soakChurnEvery until ctx ends,
// to each gateway in turn: SET of a key of its own, GET of it, then
// QUIT (every other connection) or a plain close.
func churn(ctx context.Context, addrs []string, size int) Churn {
	var ch Churn
	note := func(what string) {
		if ch.First == "" {
			ch.First = what
		}
	}
	tick := time.NewTicker(soakChurnEvery)
	defer tick.Stop()
	for i := int64(0); ; i++ {
		select {
		case <-ctx.Done():
			return ch
		case <-tick.C:
		}
		addr, key := addrs[i%int64(len(addrs))], soakChurnKeys+i
		cl, err := client.Dial(ctx, addr, client.Options{DialTimeout: soakIOTimeout, IOTimeout: soakIOTimeout})
		if err != nil {
			ch.Failed++
			continue
		}
		want := loadgen.Value(key, size)
		err = cl.Set(key, want)
		var got []byte
		var found bool
		if err == nil {
			got, found, err = cl.Get(key)
		}
		switch {
		case err != nil:
			ch.Failed++
		case !found || !bytes.Equal(got, want):
			ch.Mismatches++
			note(fmt.Sprintf("GET %d through %s after its SET was acknowledged: found %v, %q", key, addr, found, clip(got)))
		default:
			ch.Connections++
		}
		if i%2 == 0 && err == nil {
			_, _ = cl.Do("QUIT")
		}
		_ = cl.Close()
	}
}

// makeFault makes fault f on its node and returns what undoes it (start
// the killed node again on its data dir, continue the paused one) and
// when to.
func makeFault(c *local.Cluster, f SoakFault) (undo func() error, after time.Duration, err error) {
	n, ok := c.Node(f.Node)
	if !ok {
		return nil, 0, fmt.Errorf("no node %s", f.Node)
	}
	switch f.Kind {
	case "SIGKILL":
		if err := n.Kill(); err != nil {
			return nil, 0, err
		}
		return n.Start, soakRestartAfter, nil
	case "SIGSTOP":
		if err := n.Pause(); err != nil {
			return nil, 0, err
		}
		return n.Resume, soakPauseFor, nil
	default:
		return nil, 0, fmt.Errorf("unknown fault %s", f.Kind)
	}
}

// sampleNodes measures every node that runs and is not paused.
func sampleNodes(ctx context.Context, c *local.Cluster, start time.Time) []SoakSample {
	at := time.Since(start).Seconds()
	var out []SoakSample
	for _, n := range c.Nodes() {
		s := SoakSample{AtSec: at, Node: n.Name, CPUSec: -1, RSSBytes: -1, OpenFiles: -1, Goroutines: -1, HeapInuseBytes: -1}
		pid := n.Pid()
		if pid <= 0 || !n.Running() {
			out = append(out, s)
			continue
		}
		s.Pid = pid
		if used, err := cputime.Of(pid); err == nil {
			s.CPUSec = used.Seconds()
		}
		if !n.Paused() {
			s.RSSBytes = processRSS(pid)
			s.OpenFiles = openFiles(pid)
			if body, status, err := n.Get(ctx, "/metrics"); err == nil && status == 200 {
				s.Goroutines = metricValue(body, "go_goroutines")
				s.HeapInuseBytes = metricValue(body, "go_memstats_heap_inuse_bytes")
			}
		}
		out = append(out, s)
	}
	return out
}

// processRSS is a process's resident memory in bytes, -1 if unknown.
func processRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	return statusRSS(data)
}

// statusRSS reads VmRSS (in kB) from the text of /proc/PID/status.
func statusRSS(status []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "VmRSS:" && fields[2] == "kB" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb * 1024
			}
		}
	}
	return -1
}

// openFiles counts a process's open file descriptors, -1 if unknown.
func openFiles(pid int) int64 {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return int64(len(entries))
}

// metricValue is the value of an unlabelled metric in Prometheus text
// exposition, -1 if it is not there.
func metricValue(exposition []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		value, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return -1
		}
		return int64(v)
	}
	return -1
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	return total
}

// ReadBack is what reading every written key back found.
type ReadBack struct {
	Keys       int64   `json:"keys"`
	Mismatches int64   `json:"mismatches"`
	Misses     int64   `json:"misses"`
	Errors     int64   `json:"errors"`
	First      string  `json:"first_problem,omitempty"`
	Seconds    float64 `json:"seconds"`
}

// readBack reads keys 0..keys-1 once each, key k through gateway k mod
// len(addrs), and checks every message against the one the load wrote.
func readBack(ctx context.Context, addrs []string, keys int64, size int) (ReadBack, error) {
	began := time.Now()
	rb := ReadBack{Keys: keys}
	var mu sync.Mutex
	problem := func(mismatch, miss, failed bool, what string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case mismatch:
			rb.Mismatches++
		case miss:
			rb.Misses++
		case failed:
			rb.Errors++
		}
		if rb.First == "" {
			rb.First = what
		}
	}
	var wg sync.WaitGroup
	dialErrs := make([]error, len(addrs))
	for g, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := client.Dial(ctx, addr, client.Options{DialTimeout: soakIOTimeout, IOTimeout: soakIOTimeout})
			if err != nil {
				dialErrs[g] = fmt.Errorf("read back through %s: %w", addr, err)
				return
			}
			defer func() { _ = cl.Close() }()
			for key := int64(g); key < keys; key += int64(len(addrs)) {
				msg, found, err := cl.Get(key)
				switch {
				case err != nil:
					problem(false, false, true, fmt.Sprintf("GET %d through %s: %v", key, addr, err))
					if client.Lost(err) {
						return
					}
				case !found:
					problem(false, true, false, fmt.Sprintf("GET %d through %s: not found", key, addr))
				case !bytes.Equal(msg, loadgen.Value(key, size)):
					problem(true, false, false, fmt.Sprintf("GET %d through %s: %q, not what was written", key, addr, clip(msg)))
				}
			}
		}()
	}
	wg.Wait()
	rb.Seconds = time.Since(began).Seconds()
	return rb, errors.Join(dialErrs...)
}

// clip shortens a message for an error.
func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// Markers delimit the soak run's generated section.
const (
	soakBegin = "<!-- soak:begin -->"
	soakEnd   = "<!-- soak:end -->"
)

// soakMarkdown renders the soak run's generated section.
func soakMarkdown(r *SoakReport) string {
	var b strings.Builder
	c, l := r.Conditions, r.Load
	fmt.Fprintf(&b, "Generated by `make soak` on %s at commit `%s`.\n\n", c.Date, c.Commit)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, %s; load averages (1, 5, 15 min) %s\n", c.CPU, c.Cores, c.Kernel, c.Go, c.LoadAverage)
	fmt.Fprintf(&b, "- Cluster: %s\n", c.Cluster)
	fmt.Fprintf(&b, "- Load: %s of `mix` (%.0f%% GETs of random keys, SETs through %d keys in order), %d connections spread over the 3 gateways, %d-byte messages, reply timeout %s\n",
		c.Duration, c.Ratio*100, c.Keys, c.Conns, c.Size, soakIOTimeout)
	kinds := map[string]int{}
	failed := 0
	for _, f := range r.Faults {
		kinds[f.Kind+" "+f.Node]++
		if f.Failed != "" {
			failed++
		}
	}
	fmt.Fprintf(&b, "- Faults: every %s one in turn, %d in all (%d SIGKILL gateway-3, %d SIGKILL member-3, %d SIGSTOP gateway-3 for %s, %d SIGSTOP member-3; a killed node restarted after %s); %d could not be made\n",
		c.FaultEvery, len(r.Faults), kinds["SIGKILL gateway-3"], kinds["SIGKILL member-3"], kinds["SIGSTOP gateway-3"], soakPauseFor,
		kinds["SIGSTOP member-3"], soakRestartAfter, failed)
	fmt.Fprintf(&b, "- Requests: %d (%d SETs) at %.0f a second, latency p50 %.1f ms, p99 %.1f ms, max %.0f ms; errors %d (%d definite, %d indeterminate; %d lost in flight); **%d mismatches**\n",
		l.Ops, l.Sets, l.OpsPerSec, l.Latency.P50, l.Latency.P99, l.Latency.Max, l.Errors, l.DefiniteErrors, l.IndeterminateErrors, l.LostInFlight, l.Mismatches)
	fmt.Fprintf(&b, "- Churning client beside the load: a connection every %s to each gateway in turn (SET and GET of its own key, then QUIT or a plain close): %d connections, %d failed (their gateway down or paused), **%d mismatches**\n",
		soakChurnEvery, r.Churn.Connections, r.Churn.Failed, r.Churn.Mismatches)
	rb := r.ReadBack
	fmt.Fprintf(&b, "- Read back afterwards, every key once through the 3 gateways: %d keys in %.1f s, **%d mismatches, %d misses**, %d errors\n\n",
		rb.Keys, rb.Seconds, rb.Mismatches, rb.Misses, rb.Errors)
	b.WriteString("Each tenth of the run: the load's requests a second; the CPU time of the cluster's six processes (their own counts, as cores kept busy and per request), of the load generator (this process, the churning client included), and the machine's busy and stolen share of its cores (`/proc/stat`, which counts whole clock ticks).\n\n")
	b.WriteString("| tenth | requests/s | cluster, cores | cluster, µs per request | load generator, cores | machine busy | steal |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, t := range r.Tenths {
		fmt.Fprintf(&b, "| %d | %.0f | %s | %s | %s | %s | %s |\n", i+1, t.RequestsPerSec, known(t.ClusterCores, "%.2f"),
			known(t.ClusterCPUPerRequest, "%.0f"), known(t.LoadGenCores, "%.2f"), known(100*t.MachineBusy, "%.0f%%"), known(100*t.Steal, "%.1f%%"))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Each node every %s: resident memory (MB), goroutines, open files; heap in use (MB) as a range. Settled: from %s on, in two halves.\n\n", c.SampleEvery, c.Settle)
	b.WriteString("| node | processes | at the start | first settled | settled, first half | settled, second half | heap in use, settled | highest memory, second half over first | at the end | data dir at the end |\n")
	b.WriteString("|---|---:|---|---|---|---|---|---:|---|---:|\n")
	for _, n := range r.Nodes {
		name := n.Node
		if n.Touched {
			name += " (faulted)"
		}
		growth := "-"
		if n.RSSGrowth > 0 {
			growth = fmt.Sprintf("%.2fx", n.RSSGrowth)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.0f MB |\n", name, n.Starts, point(n.First), point(n.FirstSettled),
			window(n.FirstHalf), window(n.SecondHalf), mbRange(n.Settled.HeapInuse), growth, point(n.Last), float64(n.DiskBytes)/1e6)
	}
	return b.String()
}

// known formats v, or "-" when it is negative (not measured).
func known(v float64, format string) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// point renders one sample as "RSS MB, goroutines, open files".
func point(s SoakSample) string {
	if s.AtSec < 0 || s.RSSBytes < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MB, %s, %s", float64(s.RSSBytes)/1e6, count(s.Goroutines), count(s.OpenFiles))
}

func count(v int64) string {
	if v < 0 {
		return "?"
	}
	return strconv.FormatInt(v, 10)
}

// window renders a window's ranges as "RSS MB, goroutines, open files".
func window(w SoakWindow) string {
	if w.RSS.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%s, %s, %s", mbRange(w.RSS), countRange(w.Goroutines), countRange(w.OpenFiles))
}

func mbRange(r SoakRange) string {
	if r.N == 0 {
		return "-"
	}
	lo, hi := float64(r.Min)/1e6, float64(r.Max)/1e6
	if math.Round(lo) == math.Round(hi) {
		return fmt.Sprintf("%.0f MB", lo)
	}
	return fmt.Sprintf("%.0f-%.0f MB", lo, hi)
}

func countRange(r SoakRange) string {
	switch {
	case r.N == 0:
		return "?"
	case r.Min == r.Max:
		return strconv.FormatInt(r.Min, 10)
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}
