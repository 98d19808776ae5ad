// Command benchmatrix runs the standard Tolerex benchmarks.
//
// Without --failover (what `make bench` runs) it starts a fresh local
// cluster with `tolerex dev --gateways 1` (a gateway and 3 members,
// tolerance 2, fsync on), drives it with the load generator through a
// fixed matrix of workloads, measures SET and GET at 64 connections on a
// 3-gateway cluster beside it in turns with the 1-gateway runs, and writes
// the results with their conditions to a JSON file and to a generated
// section of docs/benchmarks.md.
//
// With --failover (what `make bench-failover` runs) it measures how long
// clients wait when the gateway that leads is killed or stopped (see
// failover.go).
//
// With --soak DURATION (what `make soak` runs) it runs a 3-gateway
// cluster under load and faults for that long and samples every node's
// memory, goroutines and open files (see soak.go).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tolerex/tolerex/gateway/loadgen"
)

// Where a row's connections go.
const (
	// clientsOnLeader: every connection to the gateway that leads (with
	// one gateway, that gateway).
	clientsOnLeader = "leader"
	// clientsOnEvery: the connections spread evenly over every gateway;
	// the ones on followers are forwarded to the leader.
	clientsOnEvery = "every gateway"
)

// scenario is one row of the matrix.
type scenario struct {
	Name  string     `json:"name"`
	Op    loadgen.Op `json:"op"`
	Conns int        `json:"conns"`
	Depth int        `json:"depth"`
	// Gateways is the size of the cluster's Raft group of gateways.
	Gateways int `json:"gateways"`
	// Clients is clientsOnLeader or clientsOnEvery.
	Clients string `json:"clients"`
}

// standardMatrix is the standard set of workloads on one gateway, in run
// order: SETs first (GETs read what the preload stored).
func standardMatrix() []scenario {
	one := func(name string, op loadgen.Op, conns, depth int) scenario {
		return scenario{Name: name, Op: op, Conns: conns, Depth: depth, Gateways: 1, Clients: clientsOnLeader}
	}
	return []scenario{
		one("SET 1 conn", loadgen.OpSet, 1, 1),
		one("SET 16 conns", loadgen.OpSet, 16, 1),
		one("SET 64 conns", loadgen.OpSet, 64, 1),
		one("SET 8 conns x depth 16", loadgen.OpSet, 8, 16),
		one("GET 1 conn", loadgen.OpGet, 1, 1),
		one("GET 16 conns", loadgen.OpGet, 16, 1),
		one("GET 64 conns", loadgen.OpGet, 64, 1),
		one("GET 8 conns x depth 16", loadgen.OpGet, 8, 16),
	}
}

// threeGatewayRows are the rows measured on the 3-gateway cluster in turns
// with a 1-gateway row: SET and GET at 64 connections, with the clients
// on the leader and spread over every gateway.
func threeGatewayRows(sc scenario) []scenario {
	if sc.Conns != 64 || sc.Depth != 1 {
		return nil
	}
	onLeader, onEvery := sc, sc
	onLeader.Gateways, onEvery.Gateways = 3, 3
	onLeader.Clients, onEvery.Clients = clientsOnLeader, clientsOnEvery
	onLeader.Name = sc.Name + ", 3 gateways, clients on the leader"
	onEvery.Name = sc.Name + ", 3 gateways, clients on all 3"
	return []scenario{onLeader, onEvery}
}

// Report is the JSON file's content.
type Report struct {
	Conditions Conditions `json:"conditions"`
	Runs       []Run      `json:"runs"`
	Flat       *Flat      `json:"flat_with_size,omitempty"`
}

// Machine says when, at which commit and on what a run was made; the
// reports embed it, so its fields sit at the top level of their
// conditions in JSON.
type Machine struct {
	Date   string `json:"date"`
	Commit string `json:"commit"`
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// thisMachine is this machine, now, at the checked-out commit.
func thisMachine() Machine {
	return Machine{Date: time.Now().UTC().Format(time.RFC3339), Commit: commit(), CPU: cpuModel(), Cores: runtime.NumCPU(),
		Kernel: kernel(), Go: runtime.Version()}
}

// Conditions describe where and how the benchmark ran.
type Conditions struct {
	Machine
	Cluster    string `json:"cluster"`
	Gateways3  string `json:"three_gateway_rows"`
	Size       int    `json:"message_bytes"`
	Duration   string `json:"duration_per_run"`
	Warmup     string `json:"warmup_per_run"`
	Preloaded  int64  `json:"keys_preloaded_for_gets"`
	Repeat     int    `json:"runs_per_scenario"`
	LoadOnHost string `json:"load_generator"`
	// LoadAverage is the machine's 1-, 5- and 15-minute load averages
	// at the start and at the end of the run (other work shows there).
	LoadAverage string `json:"load_average"`
}

// Run is one scenario's result.
type Run struct {
	Scenario scenario `json:"scenario"`
	// Result is the median run by throughput; Repeats are all of them.
	Result  *loadgen.Result   `json:"result"`
	Repeats []*loadgen.Result `json:"repeats"`
	// RatioTo1Gateway, on a 3-gateway row, is its median throughput over
	// the median of the 1-gateway row it was measured in turns with.
	RatioTo1Gateway float64 `json:"ratio_to_1_gateway,omitempty"`
	// CPU is where the CPU time of the median run went (nil if it could
	// not be measured).
	CPU *CPUUse `json:"cpu,omitempty"`
}

// Flat compares SET throughput on an empty cluster with a cluster holding
// many messages, and measures the leading gateway's memory per message.
type Flat struct {
	Gateways         int       `json:"gateways"`
	Stored           int64     `json:"stored"`
	EmptyOpsPerSec   float64   `json:"empty_ops_per_sec"`
	FullOpsPerSec    float64   `json:"full_ops_per_sec"`
	EmptyRuns        []float64 `json:"empty_runs"`
	FullRuns         []float64 `json:"full_runs"`
	ChangePercent    float64   `json:"change_percent"`
	HeapBefore       float64   `json:"gateway_heap_before_bytes"`
	HeapAfter        float64   `json:"gateway_heap_after_bytes"`
	BytesPerMessage  float64   `json:"gateway_heap_bytes_per_message"`
	PreloadOpsPerSec float64   `json:"preload_ops_per_sec"`
}

func main() {
	var (
		binary     = flag.String("bin", "bin/tolerex", "the tolerex binary")
		duration   = flag.Duration("duration", 5*time.Second, "measured time per run")
		warmup     = flag.Duration("warmup", time.Second, "warm-up per run")
		size       = flag.Int("size", 100, "message bytes")
		preload    = flag.Int64("preload", 100_000, "keys stored before the GET scenarios")
		flatN      = flag.Int64("flat", 1_000_000, "messages stored for the flat-with-size check (0 skips it)")
		jsonOut    = flag.String("json", "", "JSON results file (default docs/benchmarks.json, with --failover docs/failover.json, with --soak docs/soak.json)")
		mdOut      = flag.String("md", "docs/benchmarks.md", "markdown file whose generated section is replaced (empty: none)")
		profile    = flag.String("profile", "", "directory for CPU profiles of the leading gateway and a member during SET 64 and GET 64 (empty: none)")
		only       = flag.String("only", "", "run only the scenarios whose name contains this")
		devArgs    = flag.String("dev-args", "", "extra flags for `tolerex dev`, space separated (e.g. --protoactor-metrics=false)")
		basePorts  = flag.Int("ports", 17000, fmt.Sprintf("first of the ports the clusters use (each cluster a block of %d)", portBlock))
		repeat     = flag.Int("repeat", 3, "runs per scenario; the median is reported")
		failover   = flag.Bool("failover", false, "run the failover benchmark instead of the matrix")
		kills      = flag.Int("kills", 20, "with --failover: leader failures per signal (SIGKILL, then SIGTERM)")
		foConns    = flag.Int("conns", 16, "with --failover: writing connections, spread over the gateways that do not lead; with --soak: connections, spread over all gateways")
		foSignals  = flag.String("signals", "kill,term", "with --failover: the signals to measure, in order (kill, term)")
		foTick     = flag.Duration("raft-tick", 50*time.Millisecond, "with --failover: the gateways' --raft-tick")
		foElection = flag.Int("raft-election-ticks", 10, "with --failover: the gateways' --raft-election-ticks")
		foLogs     = flag.String("logs", "", "with --failover: copy every node's log into this directory at the end")
		soak       = flag.Duration("soak", 0, "run the soak instead of the matrix, for this long (at least 1m)")
		soakFaults = flag.Duration("fault-every", 90*time.Second, "with --soak: one fault in turn this often")
		soakSample = flag.Duration("sample-every", 30*time.Second, "with --soak: sample every node this often")
		soakKeys   = flag.Int64("keys", 20_000, "with --soak: the load's key space")
		soakRatio  = flag.Float64("ratio", 0.5, "with --soak: the load's share of GETs")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *soak != 0:
		err = runSoak(ctx, soakOptions{
			bin: *binary, duration: *soak, faultEvery: *soakFaults, sampleEvery: *soakSample, conns: *foConns,
			keys: *soakKeys, ratio: *soakRatio, size: *size, jsonOut: cmp.Or(*jsonOut, "docs/soak.json"), mdOut: *mdOut,
		})
	case *failover:
		out := cmp.Or(*jsonOut, "docs/failover.json")
		err = runFailover(ctx, failoverOptions{
			bin: *binary, kills: *kills, conns: *foConns, size: *size, signals: strings.Split(*foSignals, ","),
			tick: *foTick, electionTicks: *foElection, jsonOut: out, mdOut: *mdOut, logs: *foLogs,
		})
	default:
		err = run(ctx, options{
			bin: *binary, duration: *duration, warmup: *warmup, size: *size, preload: *preload, flat: *flatN,
			jsonOut: cmp.Or(*jsonOut, "docs/benchmarks.json"), mdOut: *mdOut, profile: *profile, only: *only, basePort: *basePorts,
			devArgs: strings.Fields(*devArgs), repeat: max(1, *repeat),
		})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmatrix:", err)
		os.Exit(1)
	}
}

type options struct {
	bin              string
	duration, warmup time.Duration
	size             int
	preload, flat    int64
	jsonOut, mdOut   string
	profile, only    string
	basePort         int
	devArgs          []string
	repeat           int
}

// matrixClusters are the clusters of the matrix: the 1-gateway one, and
// the 3-gateway one, started when the first row needs it.
type matrixClusters struct {
	o         options
	one       *devCluster
	three     *devCluster
	preloaded map[*devCluster]bool
}

// of returns the cluster a row runs on, starting it if need be.
func (m *matrixClusters) of(ctx context.Context, sc scenario) (*devCluster, error) {
	if sc.Gateways == 1 {
		return m.one, nil
	}
	if m.three == nil {
		fmt.Println("starting the 3-gateway cluster")
		three, err := startCluster(ctx, m.o, m.o.basePort+portBlock, 3)
		if err != nil {
			return nil, fmt.Errorf("3-gateway cluster: %w", err)
		}
		m.three = three
	}
	return m.three, nil
}

func (m *matrixClusters) stop() {
	for _, cl := range []*devCluster{m.three, m.one} {
		if cl != nil {
			cl.Stop()
		}
	}
}

func run(ctx context.Context, o options) error {
	report := &Report{Conditions: conditions(o)}
	startLoad := loadAverage()
	if len(o.devArgs) > 0 {
		extra := ", " + strings.Join(o.devArgs, " ")
		report.Conditions.Cluster += extra
		report.Conditions.Gateways3 += extra
	}
	one, err := startCluster(ctx, o, o.basePort, 1)
	if err != nil {
		return err
	}
	clusters := &matrixClusters{o: o, one: one, preloaded: map[*devCluster]bool{}}
	defer clusters.stop()

	fmt.Printf("cluster ready; client address %s\n", one.ClientAddrs[0])
	offset := int64(1_000_000_000) // fresh ids for every SET run, never the preloaded ones
	for _, sc := range standardMatrix() {
		if o.only != "" && !strings.Contains(sc.Name, o.only) {
			continue
		}
		rows := append([]scenario{sc}, threeGatewayRows(sc)...)
		// Every cluster of the group up and preloaded before its first run,
		// so that every run of the group sees the same machine.
		for _, row := range rows {
			cl, err := clusters.of(ctx, row)
			if err != nil {
				return err
			}
			if row.Op == loadgen.OpGet && !clusters.preloaded[cl] {
				fmt.Printf("preloading %d keys on the %d-gateway cluster\n", o.preload, row.Gateways)
				pre, err := loadRow(ctx, cl, scenario{Clients: clientsOnLeader}, loadgen.Config{Op: loadgen.OpSet, Conns: 8, Depth: 32, Size: o.size, Ops: o.preload, Keys: o.preload})
				if err != nil {
					return fmt.Errorf("preload: %w", err)
				}
				if pre.Failed() {
					return fmt.Errorf("preload: %d errors: %s", pre.Errors, pre.FirstError)
				}
				clusters.preloaded[cl] = true
			}
		}
		repeats := make([][]*loadgen.Result, len(rows))
		uses := make(map[*loadgen.Result]*CPUUse)
		for i := 0; i < o.repeat; i++ {
			for j, row := range rows { // in turns: the machine's drift falls on every row alike
				cl, err := clusters.of(ctx, row)
				if err != nil {
					return err
				}
				cfg := loadgen.Config{Op: row.Op, Conns: row.Conns, Depth: row.Depth, Size: o.size, Duration: o.duration, Warmup: o.warmup, Keys: o.preload}
				if row.Op == loadgen.OpSet {
					cfg.Keys, cfg.Offset = 10_000_000, offset
					offset += 10_000_000
				}
				var profiling chan error
				if i == 0 && o.profile != "" && row.Conns == 64 && row.Depth == 1 && row.Clients == clientsOnLeader {
					name, label := profileName(row)
					profiling = profileCluster(ctx, cl, o, name, label)
				}
				res, use, err := measuredRow(ctx, cl, row, cfg)
				if err != nil {
					return fmt.Errorf("%s: %w", row.Name, err)
				}
				uses[res] = use
				if profiling != nil {
					if err := <-profiling; err != nil {
						fmt.Fprintln(os.Stderr, "profile:", err)
					}
				}
				if res.Failed() {
					return fmt.Errorf("%s: %d errors, %d mismatches: %s", row.Name, res.Errors, res.Mismatches, res.FirstError)
				}
				repeats[j] = append(repeats[j], res)
			}
		}
		base := median(repeats[0])
		for j, row := range rows {
			med := median(repeats[j])
			r := Run{Scenario: row, Result: med, Repeats: repeats[j], CPU: uses[med]}
			ratio := ""
			if j > 0 {
				r.RatioTo1Gateway = med.OpsPerSec / base.OpsPerSec
				ratio = fmt.Sprintf("  %.2fx 1 gateway", r.RatioTo1Gateway)
			}
			fmt.Printf("%-24s %9.0f ops/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f ms  (median of %d; ops/s %s)%s  CPU us/op %s\n",
				row.Name, med.OpsPerSec, med.Latency.P50, med.Latency.P99, med.Latency.P999, len(repeats[j]), throughputs(repeats[j]), ratio, uses[med])
			report.Runs = append(report.Runs, r)
		}
	}
	if o.flat > 0 && o.only == "" {
		clusters.stop() // the flat check runs on clusters of its own
		flat, err := flatWithSize(ctx, o)
		if err != nil {
			return fmt.Errorf("flat with size: %w", err)
		}
		report.Flat = flat
	}
	report.Conditions.LoadAverage = fmt.Sprintf("%s at the start, %s at the end", startLoad, loadAverage())
	return writeReport(o.jsonOut, o.mdOut, beginMarker, endMarker, report, markdown(report))
}

// profileName names a row's CPU profiles: the 1-gateway rows keep the
// names they had before there were 3-gateway rows.
func profileName(sc scenario) (name, leaderLabel string) {
	name = fmt.Sprintf("%s-%d-conns", strings.ToLower(string(sc.Op)), sc.Conns)
	if sc.Gateways == 1 {
		return name, "gateway"
	}
	return fmt.Sprintf("%s-%d-gateways", name, sc.Gateways), "leader"
}

// median returns the run with the median throughput.
func median(runs []*loadgen.Result) *loadgen.Result {
	sorted := append([]*loadgen.Result(nil), runs...)
	slices.SortFunc(sorted, func(a, b *loadgen.Result) int { return cmp.Compare(a.OpsPerSec, b.OpsPerSec) })
	return sorted[len(sorted)/2]
}

// throughputs lists the runs' ops/s, space separated.
func throughputs(runs []*loadgen.Result) string {
	return formatRuns(opsPerSec(runs))
}

// loadRow runs one load against the cluster: every connection on the
// gateway that leads, or spread over every gateway (one load generator,
// whose connection i starts on gateway i mod 3), like the 1-gateway rows'
// single load generator.
func loadRow(ctx context.Context, cl *devCluster, sc scenario, cfg loadgen.Config) (*loadgen.Result, error) {
	if sc.Clients == clientsOnEvery && len(cl.ClientAddrs) > 1 {
		cfg.Addrs = cl.ClientAddrs
		return loadgen.Run(ctx, cfg)
	}
	g, err := cl.Leader(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Addr = cl.ClientAddrs[g]
	return loadgen.Run(ctx, cfg)
}

// measuredRow runs loadRow and measures where the CPU time of its
// measured part went: from the load generator's first progress tick (the
// measuring has begun) to its return, over the operations done between
// them. A run whose CPU use cannot be read (say, a process restarted) is
// reported without it.
func measuredRow(ctx context.Context, cl *devCluster, sc scenario, cfg loadgen.Config) (*loadgen.Result, *CPUUse, error) {
	g, err := cl.Leader(ctx)
	var procs []clusterProcess
	if err == nil {
		procs, err = clusterProcesses(cl.Dir, cl.GatewayAdmins[g])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "CPU use not measured:", err)
		res, err := loadRow(ctx, cl, sc, cfg)
		return res, nil, err
	}
	var (
		first               cpuSample
		firstDone, lastDone int64
		ticks               int
		sampleErr           error
	)
	cfg.Tick = func(done int64, _ time.Duration) {
		if ticks == 0 {
			first, sampleErr = sampleCPU(procs)
			firstDone = done
		}
		ticks++
		lastDone = done
	}
	res, err := loadRow(ctx, cl, sc, cfg)
	if err != nil {
		return nil, nil, err
	}
	var last cpuSample
	if sampleErr == nil {
		last, sampleErr = sampleCPU(procs)
	}
	// The last tick comes after the load stopped; one more is needed.
	if sampleErr != nil || ticks < 2 {
		fmt.Fprintf(os.Stderr, "CPU use not measured: %d ticks, %v\n", ticks, sampleErr)
		return res, nil, nil
	}
	return res, cpuUse(procs, first, last, float64(lastDone-firstDone)), nil
}

// flatWithSize starts two fresh 3-gateway clusters side by side, stores
// o.flat messages in one (reading the leading gateway's heap before and
// after), and then measures SET 64 conns (on the leader) on the empty and
// the full cluster in turns, so that the machine's drift over minutes
// (identical runs differ by up to a third) falls on both alike. The empty
// cluster only gains the messages of its own runs (about 70,000 each).
func flatWithSize(ctx context.Context, o options) (*Flat, error) {
	const gateways = 3
	empty, err := startCluster(ctx, o, o.basePort+2*portBlock, gateways)
	if err != nil {
		return nil, err
	}
	defer empty.Stop()
	full, err := startCluster(ctx, o, o.basePort+3*portBlock, gateways)
	if err != nil {
		return nil, err
	}
	defer full.Stop()

	before, err := leaderHeap(ctx, full)
	if err != nil {
		return nil, err
	}
	onLeader := scenario{Clients: clientsOnLeader}
	fmt.Printf("storing %d messages\n", o.flat)
	pre, err := loadRow(ctx, full, onLeader, loadgen.Config{Op: loadgen.OpSet, Conns: 8, Depth: 32, Size: o.size, Ops: o.flat, Keys: o.flat, Offset: 5_000_000_000})
	if err != nil {
		return nil, err
	}
	if pre.Failed() {
		return nil, fmt.Errorf("storing: %s", pre.FirstError)
	}
	// The leader forgets answered requests lazily, at their timeout (2 s):
	// wait that out so only what stays is counted.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := leaderHeap(ctx, full)
	if err != nil {
		return nil, err
	}

	set := loadgen.Config{Op: loadgen.OpSet, Conns: 64, Depth: 1, Size: o.size, Duration: o.duration, Warmup: o.warmup,
		Keys: 10_000_000}
	var emptyRuns, fullRuns []*loadgen.Result
	for i := 0; i < o.repeat; i++ {
		set.Offset = 3_000_000_000 + int64(i)*10_000_000
		for _, target := range []struct {
			cl   *devCluster
			runs *[]*loadgen.Result
		}{{empty, &emptyRuns}, {full, &fullRuns}} {
			res, err := loadRow(ctx, target.cl, onLeader, set)
			if err != nil {
				return nil, err
			}
			if res.Failed() {
				return nil, fmt.Errorf("SET 64 conns: %d errors: %s", res.Errors, res.FirstError)
			}
			*target.runs = append(*target.runs, res)
		}
	}
	e, fl := median(emptyRuns), median(fullRuns)
	f := &Flat{
		Gateways: gateways, Stored: o.flat, EmptyOpsPerSec: e.OpsPerSec, FullOpsPerSec: fl.OpsPerSec,
		EmptyRuns: opsPerSec(emptyRuns), FullRuns: opsPerSec(fullRuns),
		ChangePercent: 100 * (fl.OpsPerSec - e.OpsPerSec) / e.OpsPerSec,
		HeapBefore:    before, HeapAfter: after, BytesPerMessage: (after - before) / float64(o.flat),
		PreloadOpsPerSec: pre.OpsPerSec,
	}
	fmt.Printf("flat with size: empty %.0f ops/s (%s), with %d messages %.0f ops/s (%s): %+.1f%%; leading gateway's heap %.1f bytes/message\n",
		f.EmptyOpsPerSec, throughputs(emptyRuns), o.flat, f.FullOpsPerSec, throughputs(fullRuns), f.ChangePercent, f.BytesPerMessage)
	return f, nil
}

// formatRuns lists ops/s figures, space separated.
func formatRuns(runs []float64) string {
	parts := make([]string, len(runs))
	for i, r := range runs {
		parts[i] = strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}

// opsPerSec returns each run's throughput.
func opsPerSec(runs []*loadgen.Result) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = r.OpsPerSec
	}
	return out
}

// conditions describes the machine and the clusters of the matrix.
func conditions(o options) Conditions {
	c := Conditions{
		Machine: thisMachine(),
		Cluster: fmt.Sprintf("tolerex dev --gateways 1: 1 gateway (a Raft group of one) + 3 members, tolerance 2, fsync on (--sync=true), mTLS, --no-prompt, "+
			"every process at --max-procs %d (dev's default, half the cores, unless the flags below say otherwise), all on 127.0.0.1", max(1, runtime.NumCPU()/2)),
		Gateways3: "tolerex dev --gateways 3: 3 gateways (one Raft group, tick 50 ms, election 10 ticks) + 3 members, otherwise the same, running beside the 1-gateway cluster " +
			"from the first 3-gateway row on; each 3-gateway row's runs are taken in turns with its 1-gateway row's. The flat-with-size check runs on two 3-gateway clusters",
		Size:       o.size,
		Duration:   o.duration.String(),
		Warmup:     o.warmup.String(),
		Preloaded:  o.preload,
		Repeat:     o.repeat,
		LoadOnHost: "the load generator runs on the same machine as the cluster",
	}
	return c
}

func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(status) > 0 {
		c += "-dirty"
	}
	return c
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

// loadAverage is the machine's load averages (/proc/loadavg's first three
// fields), or "unknown".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

func kernel() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(data))
}

// Markers delimit the generated section of the markdown file.
const (
	beginMarker = "<!-- benchmatrix:begin -->"
	endMarker   = "<!-- benchmatrix:end -->"
)

// writeReport writes report to the JSON file jsonOut and section, between
// the begin and end markers, to the markdown file mdOut (none if mdOut
// is empty).
func writeReport(jsonOut, mdOut, begin, end string, report any, section string) error {
	if err := writeJSON(jsonOut, report); err != nil {
		return err
	}
	if mdOut == "" {
		fmt.Printf("wrote %s (no markdown: --md is empty)\n", jsonOut)
		return nil
	}
	if err := replaceSection(mdOut, begin, end, section); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", jsonOut, mdOut)
	return nil
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replaceSection replaces what lies between the begin and end markers of
// the markdown file at path with content.
func replaceSection(path, beginMark, endMark, content string) error {
	md, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	text := string(md)
	begin, end := strings.Index(text, beginMark), strings.Index(text, endMark)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s has no %s ... %s section", path, beginMark, endMark)
	}
	updated := text[:begin+len(beginMark)] + "\n" + content + text[end:]
	if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// markdown renders the matrix's generated section.
func markdown(r *Report) string {
	var b strings.Builder
	c := r.Conditions
	fmt.Fprintf(&b, "Generated by `make bench` on %s at commit `%s`.\n\n", c.Date, c.Commit)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, %s\n", c.CPU, c.Cores, c.Kernel, c.Go)
	fmt.Fprintf(&b, "- Cluster: %s\n", c.Cluster)
	if c.Gateways3 != "" {
		fmt.Fprintf(&b, "- 3-gateway rows: %s\n", c.Gateways3)
	}
	if c.LoadAverage != "" {
		fmt.Fprintf(&b, "- Machine load averages (1, 5, 15 min): %s\n", c.LoadAverage)
	}
	fmt.Fprintf(&b, "- Load: closed loop, %d-byte messages, %s measured after %s warm-up per run, %d runs per row (the row shows the median run); %s; GETs read %d preloaded keys at random; SETs write fresh keys\n\n",
		c.Size, c.Duration, c.Warmup, c.Repeat, c.LoadOnHost, c.Preloaded)
	b.WriteString("| scenario | ops/s (median) | vs 1 gateway | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | ops/s of each run | CPU µs/op: all (leader + other gateways + members + load generator), cores busy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	spread := false
	for _, run := range r.Runs {
		l := run.Result.Latency
		ratio := ""
		if run.RatioTo1Gateway > 0 {
			ratio = fmt.Sprintf("%.2fx", run.RatioTo1Gateway)
		}
		spread = spread || (run.Scenario.Clients == clientsOnEvery && run.Scenario.Gateways > 1)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %d | %s | %s |\n",
			run.Scenario.Name, run.Result.OpsPerSec, ratio, l.P50, l.P90, l.P99, l.P999, l.Max,
			run.Result.Errors+run.Result.Mismatches, throughputs(run.Repeats), run.CPU)
	}
	if spread {
		b.WriteString("\nRows with clients on all 3 gateways run one load generator, as the 1-gateway rows do, whose connections start round robin on the three gateways (22, 21 and 21). " +
			"The ratio is the row's median throughput over its 1-gateway row's.\n")
	}
	if f := r.Flat; f != nil {
		fmt.Fprintf(&b, "\nFlat with size (two fresh %d-gateway clusters side by side, clients on the leader, runs taken in turns, median of %d each): SET 64 conns on the empty cluster %.0f ops/s (runs: %s); "+
			"on the cluster holding %d messages %.0f ops/s (runs: %s): %+.1f%%. "+
			"The leading gateway's heap in use (after a forced GC) grew from %.1f MiB to %.1f MiB while the %d messages were stored: %.1f bytes per message. They were stored at %.0f ops/s (8 conns x depth 32).\n",
			f.Gateways, r.Conditions.Repeat, f.EmptyOpsPerSec, formatRuns(f.EmptyRuns), f.Stored, f.FullOpsPerSec, formatRuns(f.FullRuns), f.ChangePercent,
			f.HeapBefore/(1<<20), f.HeapAfter/(1<<20), f.Stored, f.BytesPerMessage, f.PreloadOpsPerSec)
	}
	return b.String()
}
