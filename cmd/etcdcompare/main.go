// Command etcdcompare measures what a group of three nodes costs against a
// single node, for Tolerex and for etcd on the same machine in the same
// session, so that Tolerex's 3-gateway figures can be read beside what the
// best-known Raft store loses under the same conditions.
//
// Each round starts, one at a time, a fresh `tolerex dev` cluster with 1
// and with 3 gateways (3 members either way, as `make bench` runs it) and
// a fresh etcd cluster of 1 and of 3 members (peer traffic over mTLS with
// the certificates `tolerex certs` makes, fsync on, each process limited
// to --etcd-procs cores as `tolerex dev` limits its processes), and
// measures SET (put) and GET (linearizable get) at --conns connections,
// one request in flight each, on the leader and, with 3 nodes, spread
// over all three. Rounds alternate their order so that the machine's drift
// falls on every configuration alike. The ratio of each round's 3-node
// figure to the 1-node figure of the same system in the same round is the
// result; the report gives every round's ratio and their median.
//
// It is its own Go module (etcd's server pulls in a newer gRPC than the
// one protoactor needs), so nothing of it enters the tolerex binary. Run it
// with `make bench-etcd`. The same binary runs the etcd servers it starts:
// `etcdcompare etcd-server FLAGS` is etcd's own command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

// etcdServerArg as the first argument makes the binary an etcd server.
const etcdServerArg = "etcd-server"

func main() {
	if len(os.Args) > 1 && os.Args[1] == etcdServerArg {
		etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdcompare:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	tolerex   string
	dir       string
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	conns     int
	size      int
	preload   int64
	ops       []string
	etcdProcs []int
	jsonOut   string
}

func parseFlags() (options, error) {
	var o options
	var ops, procs string
	flag.StringVar(&o.tolerex, "tolerex", "bin/tolerex", "the tolerex binary")
	flag.StringVar(&o.dir, "dir", "data/etcdcompare", "work dir for the etcd clusters' data, each removed after its round (Tolerex's clusters use a temporary dir)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every configuration once")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "load before each run's measuring")
	flag.IntVar(&o.conns, "conns", 64, "connections, one request in flight each")
	flag.IntVar(&o.size, "size", 100, "message (value) bytes")
	flag.Int64Var(&o.preload, "preload", 100_000, "keys stored before the GET runs, read at random")
	flag.StringVar(&ops, "ops", "set,get", "workloads, comma-separated: set, get")
	flag.StringVar(&procs, "etcd-procs", "1,2", "GOMAXPROCS values to run etcd with, comma-separated (tolerex dev runs its processes at 1)")
	flag.StringVar(&o.jsonOut, "json", "", "also write every measurement and the ratios to this file as JSON")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if o.rounds < 1 || o.conns < 1 || o.size < 1 || o.preload < 1 || o.duration <= 0 || o.warmup < 0 {
		return o, errors.New("--rounds, --conns, --size, --preload and --duration must be positive, --warmup not negative")
	}
	for _, op := range strings.Split(ops, ",") {
		if op != opSet && op != opGet {
			return o, fmt.Errorf("--ops: unknown workload %q (want set or get)", op)
		}
		o.ops = append(o.ops, op)
	}
	for _, p := range strings.Split(procs, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return o, fmt.Errorf("--etcd-procs: %q is not a positive number", p)
		}
		o.etcdProcs = append(o.etcdProcs, n)
	}
	if _, err := os.Stat(o.tolerex); err != nil {
		return o, fmt.Errorf("--tolerex: %w (build it with make build)", err)
	}
	return o, nil
}

// config is one system at one size: a cluster to start each round.
type config struct {
	system string // "tolerex" or "etcd-pN"
	nodes  int
	procs  int // etcd's GOMAXPROCS
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	configs := []config{{system: systemTolerex, nodes: 1}, {system: systemTolerex, nodes: 3}}
	for _, p := range o.etcdProcs {
		configs = append(configs, config{system: fmt.Sprintf("etcd-p%d", p), nodes: 1, procs: p}, config{system: fmt.Sprintf("etcd-p%d", p), nodes: 3, procs: p})
	}
	var all []Measurement
	started := time.Now()
	for r := 1; r <= o.rounds; r++ {
		for _, c := range roundOrder(configs, r) {
			ms, err := runConfig(ctx, o, c, r)
			if err != nil {
				return fmt.Errorf("round %d, %s with %d nodes: %w", r, c.system, c.nodes, err)
			}
			for _, m := range ms {
				fmt.Printf("round %d  %-8s %d nodes  %-4s on %-6s %8.0f ops/s  p50 %6.2f ms  p99 %6.2f ms\n",
					m.Round, m.System, m.Nodes, m.Op, m.Clients, m.OpsPerSec, m.P50Ms, m.P99Ms)
			}
			all = append(all, ms...)
		}
	}
	rows := Ratios(all)
	fmt.Println()
	fmt.Print(Markdown(rows, conditions(o, time.Since(started))))
	if o.jsonOut != "" {
		data, err := json.MarshalIndent(map[string]any{"conditions": conditions(o, time.Since(started)), "ratios": rows, "measurements": all}, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the report: %w", err)
		}
		if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
	}
	return nil
}

// roundOrder runs the configurations forwards in odd rounds and backwards
// in even ones.
func roundOrder(configs []config, round int) []config {
	out := append([]config(nil), configs...)
	if round%2 == 0 {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// runConfig starts a fresh cluster of c, measures every workload on the
// leader and, with several nodes, spread over all of them, and stops it.
func runConfig(ctx context.Context, o options, c config, round int) ([]Measurement, error) {
	dir := filepath.Join(o.dir, fmt.Sprintf("%s-%d", c.system, c.nodes))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var cl cluster
	var err error
	if c.system == systemTolerex {
		cl, err = startTolerex(ctx, o.tolerex, c.nodes)
	} else {
		cl, err = startEtcd(ctx, o.tolerex, dir, c.nodes, c.procs)
	}
	if err != nil {
		return nil, err
	}
	ms, err := measure(ctx, o, c, round, cl)
	if stopErr := cl.stop(); err == nil && stopErr != nil {
		err = stopErr
	}
	if err == nil {
		err = os.RemoveAll(dir)
	}
	return ms, err
}

// clientPlace is where a run's clients connect: its name in the report
// and the addresses the connections are spread over.
type clientPlace struct {
	name  string
	addrs []string
}

// measure runs every workload of o on cl: on the leader and, with several
// nodes, spread over all of them.
func measure(ctx context.Context, o options, c config, round int, cl cluster) ([]Measurement, error) {
	leader, err := cl.leader(ctx)
	if err != nil {
		return nil, err
	}
	var out []Measurement
	for _, op := range o.ops {
		if op == opGet {
			if err := cl.preload(ctx, leader, o.preload, o.size); err != nil {
				return nil, fmt.Errorf("preload: %w", err)
			}
		}
		places := []clientPlace{{clientsLeader, []string{leader}}}
		if c.nodes > 1 {
			places = append(places, clientPlace{clientsSpread, cl.clientAddrs()})
		}
		for _, p := range places {
			res, err := cl.load(ctx, p.addrs, loadSpec{op: op, conns: o.conns, size: o.size, keys: o.preload, duration: o.duration, warmup: o.warmup})
			if err != nil {
				return nil, fmt.Errorf("%s on %s: %w", op, p.name, err)
			}
			if res.Errors > 0 || res.Mismatches > 0 {
				return nil, fmt.Errorf("%s on %s: %d errors, %d mismatches", op, p.name, res.Errors, res.Mismatches)
			}
			res.System, res.Nodes, res.Round, res.Clients, res.Op = c.system, c.nodes, round, p.name, op
			out = append(out, res)
		}
	}
	return out, nil
}

// conditions describes the run for the report.
func conditions(o options, took time.Duration) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d rounds in %s on %s (%s); Tolerex at %s (`tolerex dev`: 3 members, tolerance 2, every process at --max-procs 1), etcd %s (peer mTLS, fsync on, GOMAXPROCS as named); %d connections, one request in flight each, %d-byte values, %s measured after %s warm-up; GETs read %d preloaded keys at random, SETs write fresh keys",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rounds, took.Round(time.Second), host, cpuModel(), commit(), etcdVersion(), o.conns, o.size, o.duration, o.warmup, o.preload)
}

// commit names the checkout's commit (git describe --always --dirty), or
// "an unknown commit" outside a git checkout.
func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "an unknown commit"
	}
	return "commit " + strings.TrimSpace(string(out))
}

// cpuModel is the machine's CPU model and core count from /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU unknown"
	}
	model, cores := "", 0
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			model = strings.TrimSpace(v)
		case "processor":
			cores++
		}
	}
	return fmt.Sprintf("%s, %d cores", model, cores)
}
