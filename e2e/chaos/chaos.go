// Package chaos runs Tolerex's fault suite: it starts a cluster of real
// processes, drives concurrent clients against every gateway, applies a
// seeded plan of faults (kills, pauses, partitions, whole-cluster kills,
// full disks), heals, kills and restarts the whole cluster, reads every id
// a last time, and checks the recorded history for linearizability with
// porcupine. A run passes only if the history is linearizable, no node
// exited on its own, the cluster recovered, and the run kept a minimum
// throughput.
//
// Run is the entry point of `tolerex chaos` and of the e2e tests; it does
// not import testing. Its parts are in subpackages, one purpose each:
// history (recording), model (porcupine), workload (clients), nemesis
// (faults), cluster (processes), netfault and diskfault (partitions and
// small disks), summary, and poll (waiting).
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/e2e/chaos/diskfault"
	"github.com/tolerex/tolerex/e2e/chaos/history"
	"github.com/tolerex/tolerex/e2e/chaos/model"
	"github.com/tolerex/tolerex/e2e/chaos/nemesis"
	"github.com/tolerex/tolerex/e2e/chaos/netfault"
	"github.com/tolerex/tolerex/e2e/chaos/summary"
	"github.com/tolerex/tolerex/e2e/chaos/workload"
)

// Config configures a run. Zero fields take the defaults of Defaults.
type Config struct {
	// Binary is the tolerex binary the nodes run.
	Binary string
	// OutDir receives the history, the plan, the summary and, on failure,
	// the nodes' logs (and the visualization of a violation).
	OutDir string
	// Gateways, Members and Tolerance shape the cluster.
	Gateways, Members, Tolerance int
	// Clients run concurrently on Keys ids, at most Rate operations a
	// second over all of them.
	Clients, Keys int
	Rate          float64
	// SetPercent and DelPercent are the shares of SET and DEL.
	SetPercent, DelPercent int
	// Duration is how long the clients run under faults.
	Duration time.Duration
	// Faults is the fault mix, as nemesis.ParseFaults reads it.
	Faults string
	// Seed draws the fault plan and the clients' choices.
	Seed uint64
	// Interval, MinHold, MaxHold and Concurrency shape the plan (see
	// nemesis.PlanConfig).
	Interval, MinHold, MaxHold time.Duration
	Concurrency                int
	// OpTimeout bounds one client operation; DialTimeout one connection.
	OpTimeout, DialTimeout time.Duration
	// StartTimeout bounds the cluster's start; RecoveryTimeout its
	// recovery after the faults and the final whole-cluster restart, and
	// the final reads.
	StartTimeout, RecoveryTimeout time.Duration
	// NoFinalKill skips the whole-cluster SIGKILL and restart before the
	// final reads.
	NoFinalKill bool
	// CheckTimeout bounds the linearizability check.
	CheckTimeout time.Duration
	// MinThroughput is the definite answers per second a run must keep
	// to count.
	MinThroughput float64
	// DiskSize is the size of each member's small disk, used when the
	// faults include disk-full. DiskWatermark is the free space below
	// which a member stops taking writes (its --min-free-bytes), when the
	// binary's members take that flag; a full disk then keeps half of it
	// free, and without the flag none.
	DiskSize, DiskWatermark int64
	// LogLevel is the nodes' log level.
	LogLevel string
	// KeepData keeps the cluster's data dirs (in the run dir, which the
	// log names) instead of removing them.
	KeepData bool
	// GatewayArgs and MemberArgs are appended to the nodes' flags.
	GatewayArgs, MemberArgs []string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Defaults returns the default configuration (no binary, no output dir).
func Defaults() Config {
	return Config{
		Gateways: 3, Members: 3, Tolerance: 2,
		Clients: 8, Keys: 16, Rate: 200, SetPercent: 45, DelPercent: 10,
		Duration: 30 * time.Second, Faults: "mixed",
		Interval: 2 * time.Second, MinHold: time.Second, MaxHold: 4 * time.Second, Concurrency: 1,
		OpTimeout: 5 * time.Second, DialTimeout: 2 * time.Second,
		StartTimeout: 60 * time.Second, RecoveryTimeout: 60 * time.Second,
		CheckTimeout: 5 * time.Minute, MinThroughput: 20,
		DiskSize: 64 << 20, DiskWatermark: 4 << 20, LogLevel: "info",
	}
}

// fill sets zero fields to their defaults.
func (c *Config) fill() {
	d := Defaults()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.Gateways, d.Gateways)
	setInt(&c.Members, d.Members)
	setInt(&c.Tolerance, d.Tolerance)
	setInt(&c.Clients, d.Clients)
	setInt(&c.Keys, d.Keys)
	setInt(&c.Concurrency, d.Concurrency)
	if c.SetPercent == 0 && c.DelPercent == 0 {
		c.SetPercent, c.DelPercent = d.SetPercent, d.DelPercent
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.MinThroughput == 0 {
		c.MinThroughput = d.MinThroughput
	}
	if c.Faults == "" {
		c.Faults = d.Faults
	}
	for _, p := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.Duration, d.Duration}, {&c.Interval, d.Interval}, {&c.MinHold, d.MinHold}, {&c.MaxHold, d.MaxHold},
		{&c.OpTimeout, d.OpTimeout}, {&c.DialTimeout, d.DialTimeout}, {&c.StartTimeout, d.StartTimeout},
		{&c.RecoveryTimeout, d.RecoveryTimeout}, {&c.CheckTimeout, d.CheckTimeout},
	} {
		setDur(p.v, p.def)
	}
	if c.DiskSize == 0 {
		c.DiskSize = d.DiskSize
	}
	if c.DiskWatermark == 0 {
		c.DiskWatermark = d.DiskWatermark
	}
	if c.LogLevel == "" {
		c.LogLevel = d.LogLevel
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// run is the state of one run, for its steps and its teardown.
type run struct {
	cfg     Config
	faults  []nemesis.Fault
	runDir  string
	cluster *local.Cluster
	net     *netfault.Partitioner
	disks   map[string]*diskfault.Disk
	// diskLeave is what a full disk keeps free.
	diskLeave int64
	rec       *history.Recorder
	sum       *summary.Summary
	logMu     sync.Mutex
}

func (r *run) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.cfg.Log, "chaos: "+format+"\n", args...)
}

// Run runs the fault suite once. It returns an error only when the run
// could not be carried out (a bad configuration, a cluster that would not
// start, no iptables for partitions); a run that found something wrong
// returns a summary with Passed false and Failures saying what. Every
// process, partition and mount it made is removed before it returns,
// whether it passed, failed, panicked or was interrupted (SIGINT or
// SIGTERM end the run early and still tear down).
func Run(ctx context.Context, cfg Config) (sum summary.Summary, err error) {
	cfg.fill()
	if cfg.Binary == "" || cfg.OutDir == "" {
		return sum, errors.New("chaos: a binary and an output dir are needed")
	}
	faults, err := nemesis.ParseFaults(cfg.Faults)
	if err != nil {
		return sum, err
	}
	if cfg.Concurrency < 1 || cfg.Rate < 0 || cfg.Duration < 0 {
		return sum, errors.New("chaos: concurrency, rate and duration must be positive")
	}
	if cfg.Gateways < 1 || cfg.Members < 1 {
		return sum, fmt.Errorf("chaos: cluster needs at least one gateway and one member, got %d and %d", cfg.Gateways, cfg.Members)
	}
	if cfg.Tolerance < 1 || cfg.Tolerance > cfg.Members {
		return sum, fmt.Errorf("chaos: tolerance %d needs 1..%d (the number of members)", cfg.Tolerance, cfg.Members)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &run{cfg: cfg, faults: faults, disks: make(map[string]*diskfault.Disk)}
	r.sum = &summary.Summary{
		Seed: cfg.Seed, FaultSpec: cfg.Faults, Duration: cfg.Duration.Seconds(), Clients: cfg.Clients, Keys: cfg.Keys,
		Gateways: cfg.Gateways, Members: cfg.Members, Tolerance: cfg.Tolerance, Binary: cfg.Binary,
		MinThroughput: cfg.MinThroughput, OutputDir: cfg.OutDir, FaultsByKind: make(map[string]int),
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return sum, fmt.Errorf("chaos: create output dir: %w", err)
	}
	defer func() {
		if terr := r.teardown(); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	if err := r.setUp(ctx); err != nil {
		return *r.sum, err
	}
	r.exercise(ctx)
	r.finish()
	return *r.sum, nil
}

// uses reports whether the fault mix has a fault of kind.
func (r *run) uses(kind nemesis.Kind) bool {
	return slices.ContainsFunc(r.faults, func(f nemesis.Fault) bool { return f.Kind == kind })
}

// setUp removes what crashed runs left, prepares partitions and disks,
// and starts the cluster.
func (r *run) setUp(ctx context.Context) error {
	cfg := r.cfg
	root := os.Geteuid() == 0
	if root {
		if removed, err := netfault.CleanStale(); err != nil {
			r.logf("removing stale partition chains: %v", err)
		} else if len(removed) > 0 {
			r.logf("removed partition chains left by crashed runs: %v", removed)
		}
		if removed, err := diskfault.CleanStale(); err != nil {
			r.logf("removing stale mounts: %v", err)
		} else if len(removed) > 0 {
			r.logf("unmounted disks left by crashed runs: %v", removed)
		}
	}
	if r.uses(nemesis.Partition) {
		if err := netfault.Available(); err != nil {
			return fmt.Errorf("chaos: the faults include partitions: %w", err)
		}
	}
	// The run dir's name lets diskfault.CleanStale find mounts of a run
	// that died.
	runDir, err := os.MkdirTemp("", diskfault.MountPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return fmt.Errorf("chaos: create run dir: %w", err)
	}
	r.runDir = runDir
	// The gateways answer a request before its client gives up on it, so
	// the history holds their answers (a definite "no leader: ..." among
	// them, which the checker then holds to) rather than client timeouts,
	// which are indeterminate. The caller's own flags come after, and win.
	gatewayArgs := append([]string{"--request-timeout", (cfg.OpTimeout * 3 / 5).String()}, cfg.GatewayArgs...)
	ccfg := local.Config{
		Binary: cfg.Binary, Dir: filepath.Join(runDir, "cluster"), Gateways: cfg.Gateways, Members: cfg.Members,
		Tolerance: cfg.Tolerance, LogLevel: cfg.LogLevel, GatewayArgs: gatewayArgs, MemberArgs: cfg.MemberArgs,
		NoPrompt: true, GatewayGroupArgs: local.RaftGroup, RestartMarker: "tolerex chaos",
	}
	if root {
		// Group ids of their own per run: 100000 + 16 per pid slot.
		ccfg.GIDBase = uint32(100000 + (os.Getpid()%200000)*16)
	}
	if r.uses(nemesis.DiskFull) {
		if err := r.prepareDisks(&ccfg); err != nil {
			return err
		}
	}
	c, err := local.New(ccfg)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	r.cluster = c
	if r.uses(nemesis.Partition) {
		var eps []netfault.Endpoint
		for _, n := range c.Nodes() {
			eps = append(eps, netfault.Endpoint{Name: n.Name, GID: n.GID, Ports: n.Ports()})
		}
		if r.net, err = netfault.New(eps); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	}
	r.logf("seed %d; faults %q; %s of %d clients on %d ids; %d gateway(s) + %d members, tolerance %d; run dir %s",
		cfg.Seed, cfg.Faults, cfg.Duration, cfg.Clients, cfg.Keys, cfg.Gateways, cfg.Members, cfg.Tolerance, runDir)
	if err := c.Start(); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := c.WaitHealthy(ctx, cfg.StartTimeout); err != nil {
		return fmt.Errorf("chaos: cluster did not start: %w", err)
	}
	return nil
}

// prepareDisks mounts a small disk for the data dir of every node a
// disk-full fault may aim at (members, gateways or both) and, if the node
// takes a free-space watermark, sets it.
func (r *run) prepareDisks(ccfg *local.Config) error {
	if err := diskfault.Available(); err != nil {
		return fmt.Errorf("chaos: the faults include disk-full: %w", err)
	}
	ccfg.DataDirs = make(map[string]string)
	r.diskLeave = r.cfg.DiskWatermark / 2
	for _, role := range []local.Role{local.Member, local.Gateway} {
		if !slices.ContainsFunc(r.faults, func(f nemesis.Fault) bool { return f.Kind == nemesis.DiskFull && aimsAt(f.Target, role) }) {
			continue
		}
		count := r.cfg.Members
		if role == local.Gateway {
			count = r.cfg.Gateways
		}
		for i := range count {
			name := fmt.Sprintf("%s-%d", role, i+1)
			dir := filepath.Join(r.runDir, "disks", name)
			d, err := diskfault.Mount(dir, r.cfg.DiskSize)
			if err != nil {
				return fmt.Errorf("chaos: %w", err)
			}
			r.disks[name] = d
			ccfg.DataDirs[name] = dir
		}
		watermark := []string{"--min-free-bytes", strconv.FormatInt(r.cfg.DiskWatermark, 10)}
		if !hasFlag(r.cfg.Binary, string(role), "--min-free-bytes") {
			r.logf("this tolerex %s has no --min-free-bytes: a full disk is filled to the last byte", role)
			continue
		}
		if role == local.Gateway {
			ccfg.GatewayArgs = append(ccfg.GatewayArgs, watermark...)
		} else {
			ccfg.MemberArgs = append(ccfg.MemberArgs, watermark...)
		}
		r.logf("%ss stop taking writes below %d free bytes (--min-free-bytes); a full disk keeps %d", role, r.cfg.DiskWatermark, r.diskLeave)
	}
	return nil
}

// aimsAt reports whether a fault aimed at target can hit a node of role.
func aimsAt(target nemesis.Target, role local.Role) bool {
	if role == local.Member {
		return target == nemesis.Member
	}
	return target == nemesis.Gateway || target == nemesis.Leader
}

// hasFlag reports whether `tolerex <command> --help` lists flag.
func hasFlag(bin, command, flag string) bool {
	out, err := exec.Command(bin, command, "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), flag+" ")
}

// exercise runs the workload under the fault plan, heals, restarts the
// whole cluster, reads every id and checks the history.
func (r *run) exercise(ctx context.Context) {
	cfg, c, sum := r.cfg, r.cluster, r.sum
	var gateways, members []string
	for _, g := range c.Gateways {
		gateways = append(gateways, g.Name)
	}
	for _, m := range c.Members {
		members = append(members, m.Name)
	}
	plan, err := nemesis.NewPlan(nemesis.PlanConfig{
		Seed: cfg.Seed, Duration: cfg.Duration, Interval: cfg.Interval, MinHold: cfg.MinHold, MaxHold: cfg.MaxHold,
		Concurrency: cfg.Concurrency, Faults: r.faults, Gateways: gateways, Members: members,
	})
	if err != nil {
		sum.Fail("plan: %v", err)
		return
	}
	r.logf("%s", strings.TrimSuffix(plan.String(), "\n"))
	if err := writeText(filepath.Join(cfg.OutDir, "plan.txt"), plan.String()); err != nil {
		r.logf("%v", err)
	}
	r.rec = history.NewRecorder()
	sum.Started = r.rec.Start().Format(time.RFC3339)
	w, err := workload.New(workload.Config{
		Addrs: c.ClientAddrs(), Clients: cfg.Clients, Keys: cfg.Keys, Rate: cfg.Rate,
		SetPercent: cfg.SetPercent, DelPercent: cfg.DelPercent, OpTimeout: cfg.OpTimeout, DialTimeout: cfg.DialTimeout,
		Seed: cfg.Seed, Recorder: r.rec,
	})
	if err != nil {
		sum.Fail("workload: %v", err)
		return
	}
	nem := nemesis.New(nemesis.Config{
		Cluster: c, Net: r.net, Disks: r.disks, DiskLeave: r.diskLeave, Clock: r.rec.Now,
		Log: logWriter{r},
	})
	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Run(wctx)
	}()
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		nem.Run(wctx, plan)
	}()
	<-wctx.Done()
	workloadEnd := min(r.rec.Now(), cfg.Duration)
	cancel()
	// A fault still being applied (a graceful stop takes up to seconds)
	// must be on record before everything is healed, or its node stays
	// down.
	<-nemDone
	if err := nem.HealAll(); err != nil {
		sum.Fail("healing the faults: %v", err)
	}
	wg.Wait()
	r.logf("workload done after %s; faults healed", workloadEnd.Round(time.Millisecond))

	if ctx.Err() != nil {
		sum.Fail("interrupted: %v", context.Cause(ctx))
	} else if r.recover(ctx) {
		if err := w.FinalRead(ctx, cfg.RecoveryTimeout); err != nil {
			sum.Fail("%v", err)
		}
	}

	for _, a := range nem.Applied() {
		f := summary.Fault{N: a.N, Kind: string(a.Kind), Target: string(a.Target), Nodes: a.Nodes,
			Start: a.Started.Seconds(), Healed: a.Healed.Seconds(), Skipped: a.Skipped, Error: a.Error}
		sum.Faults = append(sum.Faults, f)
		if a.Skipped == "" && a.Error == "" {
			sum.FaultsByKind[f.Kind]++
		}
		if a.Error != "" {
			sum.Fail("fault #%d %s %v: %s", a.N, a.Kind, a.Nodes, a.Error)
		}
	}
	ops := r.rec.Ops()
	sum.Ops = summary.CountOps(ops, workloadEnd)
	sum.DialErrors = w.Stats().DialFailures
	if err := history.WriteFile(filepath.Join(cfg.OutDir, "history.jsonl"), ops); err != nil {
		r.logf("%v", err)
	}
	r.logf("checking %d operations for linearizability", len(ops))
	res := model.Check(ops, cfg.CheckTimeout)
	sum.Verdict, sum.BadIDs, sum.CheckTook = string(res.Verdict), res.BadIDs, res.Took.Seconds()
	sum.Linearizable = res.Verdict == model.Linearizable
	switch res.Verdict {
	case model.NotLinearizable:
		sum.Fail("the history is not linearizable (ids %v)", res.BadIDs)
	case model.Inconclusive:
		sum.Fail("the linearizability check did not finish within %s (ids %v)", cfg.CheckTimeout, res.BadIDs)
	}
	if !sum.Linearizable {
		path := filepath.Join(cfg.OutDir, "history.html")
		if err := res.Visualize(path); err != nil {
			r.logf("%v", err)
		} else {
			sum.Visualization = path
		}
	}
	if sum.Ops.Throughput < cfg.MinThroughput {
		sum.Fail("throughput %.1f ops/s is below the minimum of %.1f: the run proves too little to count", sum.Ops.Throughput, cfg.MinThroughput)
	}
}

// recover waits until the healed cluster is healthy, then (unless
// NoFinalKill) SIGKILLs every node, restarts them all and waits again: every
// acknowledged write must survive that. It reports whether the cluster
// recovered.
func (r *run) recover(ctx context.Context) bool {
	c, cfg := r.cluster, r.cfg
	if err := c.WaitHealthy(ctx, cfg.RecoveryTimeout); err != nil {
		r.sum.Fail("the cluster did not recover after the faults healed: %v", err)
		return false
	}
	if cfg.NoFinalKill {
		return true
	}
	r.logf("final whole-cluster SIGKILL and restart")
	if err := c.KillAll(); err != nil {
		r.sum.Fail("final kill: %v", err)
		return false
	}
	if err := c.Start(); err != nil {
		r.sum.Fail("final restart: %v", err)
		return false
	}
	if err := c.WaitHealthy(ctx, cfg.RecoveryTimeout); err != nil {
		r.sum.Fail("the cluster did not recover after the final whole-cluster restart: %v", err)
		return false
	}
	return true
}

// finish records crashes, decides the verdict and writes the summary.
func (r *run) finish() {
	sum := r.sum
	if r.cluster != nil {
		for _, e := range r.cluster.Exits() {
			sum.Crashes = append(sum.Crashes, summary.Crash{Node: e.Node, At: e.At.Format(time.RFC3339Nano), Error: e.Err, LogTail: e.LogTail})
			sum.Fail("%s exited on its own (%s)", e.Node, e.Err)
		}
	}
	sum.Finish()
	var b strings.Builder
	if err := sum.WriteJSON(&b); err == nil {
		if err := writeText(filepath.Join(r.cfg.OutDir, "summary.json"), b.String()); err != nil {
			r.logf("%v", err)
		}
	}
	if err := writeText(filepath.Join(r.cfg.OutDir, "summary.txt"), sum.Text()); err != nil {
		r.logf("%v", err)
	}
}

// teardown stops every process and removes every partition, mount and
// (unless kept) data dir; on failure it first copies the nodes' logs to
// the output dir.
func (r *run) teardown() error {
	var errs []error
	if r.cluster != nil {
		if !r.sum.Passed {
			if err := r.cluster.CopyLogs(filepath.Join(r.cfg.OutDir, "logs")); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, r.cluster.KillAll())
	}
	if r.net != nil {
		errs = append(errs, r.net.Close())
	}
	for _, d := range r.disks {
		errs = append(errs, d.Unmount())
	}
	switch {
	case r.runDir == "":
	case r.cfg.KeepData:
		r.logf("the cluster's data dirs are kept in %s", filepath.Join(r.runDir, "cluster"))
	default:
		if err := os.RemoveAll(r.runDir); err != nil {
			errs = append(errs, fmt.Errorf("remove run dir: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("chaos: teardown: %w", err)
	}
	return nil
}

func writeText(path, text string) error {
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// logWriter passes the nemesis's lines to the run's log.
type logWriter struct{ r *run }

func (l logWriter) Write(p []byte) (int, error) {
	l.r.logMu.Lock()
	defer l.r.logMu.Unlock()
	return l.r.cfg.Log.Write(p)
}
