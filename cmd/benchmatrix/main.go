// Command benchmatrix runs the standard Tolerex benchmark (what `make
// bench` runs): it starts a fresh local cluster with `tolerex dev`
// (gateway and 3 members, tolerance 2, fsync on), drives it with the load
// generator through a fixed matrix of workloads, and writes the results
// with their conditions to a JSON file and to a generated section of
// docs/benchmarks.md.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tolerex/tolerex/gateway/loadgen"
)

// scenario is one row of the matrix.
type scenario struct {
	Name  string     `json:"name"`
	Op    loadgen.Op `json:"op"`
	Conns int        `json:"conns"`
	Depth int        `json:"depth"`
}

// standardMatrix is the standard set of workloads, in run order: SETs
// first (GETs read what the preload stored).
func standardMatrix() []scenario {
	return []scenario{
		{"SET 1 conn", loadgen.OpSet, 1, 1},
		{"SET 16 conns", loadgen.OpSet, 16, 1},
		{"SET 64 conns", loadgen.OpSet, 64, 1},
		{"SET 8 conns x depth 16", loadgen.OpSet, 8, 16},
		{"GET 1 conn", loadgen.OpGet, 1, 1},
		{"GET 16 conns", loadgen.OpGet, 16, 1},
		{"GET 64 conns", loadgen.OpGet, 64, 1},
		{"GET 8 conns x depth 16", loadgen.OpGet, 8, 16},
	}
}

// Report is the JSON file's content.
type Report struct {
	Conditions Conditions `json:"conditions"`
	Runs       []Run      `json:"runs"`
	Flat       *Flat      `json:"flat_with_size,omitempty"`
}

// Conditions describe where and how the benchmark ran.
type Conditions struct {
	Date       string `json:"date"`
	Commit     string `json:"commit"`
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Cluster    string `json:"cluster"`
	Size       int    `json:"message_bytes"`
	Duration   string `json:"duration_per_run"`
	Warmup     string `json:"warmup_per_run"`
	Preloaded  int64  `json:"keys_preloaded_for_gets"`
	Repeat     int    `json:"runs_per_scenario"`
	LoadOnHost string `json:"load_generator"`
}

// Run is one scenario's result.
type Run struct {
	Scenario scenario `json:"scenario"`
	// Result is the median run by throughput; Repeats are all of them.
	Result  *loadgen.Result   `json:"result"`
	Repeats []*loadgen.Result `json:"repeats"`
}

// Flat compares SET throughput on an empty cluster with a cluster holding
// many messages, and measures the gateway's memory per message.
type Flat struct {
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
		binary    = flag.String("bin", "bin/tolerex", "the tolerex binary")
		duration  = flag.Duration("duration", 5*time.Second, "measured time per run")
		warmup    = flag.Duration("warmup", time.Second, "warm-up per run")
		size      = flag.Int("size", 100, "message bytes")
		preload   = flag.Int64("preload", 100_000, "keys stored before the GET scenarios")
		flatN     = flag.Int64("flat", 1_000_000, "messages stored for the flat-with-size check (0 skips it)")
		jsonOut   = flag.String("json", "docs/benchmarks.json", "JSON results file")
		mdOut     = flag.String("md", "docs/benchmarks.md", "markdown file whose generated section is replaced")
		profile   = flag.String("profile", "", "directory for CPU profiles of the gateway and a member during SET 64 and GET 64 (empty: none)")
		only      = flag.String("only", "", "run only the scenarios whose name contains this")
		devArgs   = flag.String("dev-args", "", "extra flags for `tolerex dev`, space separated (e.g. --protoactor-metrics=false)")
		basePorts = flag.Int("ports", 17000, "first of the ports the cluster uses")
		repeat    = flag.Int("repeat", 3, "runs per scenario; the median is reported")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{
		bin: *binary, duration: *duration, warmup: *warmup, size: *size, preload: *preload, flat: *flatN,
		jsonOut: *jsonOut, mdOut: *mdOut, profile: *profile, only: *only, basePort: *basePorts, devArgs: strings.Fields(*devArgs), repeat: max(1, *repeat),
	}); err != nil {
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

func run(ctx context.Context, o options) error {
	report := &Report{Conditions: conditions(o)}
	if len(o.devArgs) > 0 {
		report.Conditions.Cluster += ", " + strings.Join(o.devArgs, " ")
	}
	cl, err := startCluster(ctx, o, o.basePort)
	if err != nil {
		return err
	}
	defer cl.stop()

	fmt.Printf("cluster ready; client address %s\n", cl.clientAddr)
	preloaded := false
	for _, sc := range standardMatrix() {
		if o.only != "" && !strings.Contains(sc.Name, o.only) {
			continue
		}
		if sc.Op == loadgen.OpGet && !preloaded {
			fmt.Printf("preloading %d keys\n", o.preload)
			if _, err := load(ctx, cl, loadgen.Config{Op: loadgen.OpSet, Conns: 8, Depth: 32, Size: o.size, Ops: o.preload, Keys: o.preload}); err != nil {
				return fmt.Errorf("preload: %w", err)
			}
			preloaded = true
		}
		cfg := loadgen.Config{Op: sc.Op, Conns: sc.Conns, Depth: sc.Depth, Size: o.size, Duration: o.duration, Warmup: o.warmup, Keys: o.preload}
		if sc.Op == loadgen.OpSet {
			cfg.Keys, cfg.Offset = 10_000_000, 1_000_000_000 // fresh ids, never the preloaded ones
		}
		var repeats []*loadgen.Result
		for i := 0; i < o.repeat; i++ {
			var profiling chan error
			if i == 0 && o.profile != "" && (sc.Name == "SET 64 conns" || sc.Name == "GET 64 conns") {
				profiling = cl.profile(o, strings.ReplaceAll(strings.ToLower(sc.Name), " ", "-"))
			}
			if sc.Op == loadgen.OpSet {
				cfg.Offset += 10_000_000 // fresh ids every repeat
			}
			res, err := load(ctx, cl, cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.Name, err)
			}
			if profiling != nil {
				if err := <-profiling; err != nil {
					fmt.Fprintln(os.Stderr, "profile:", err)
				}
			}
			if res.Failed() {
				return fmt.Errorf("%s: %d errors, %d mismatches: %s", sc.Name, res.Errors, res.Mismatches, res.FirstError)
			}
			repeats = append(repeats, res)
		}
		med := median(repeats)
		fmt.Printf("%-24s %9.0f ops/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f ms  (median of %d; ops/s %s)\n",
			sc.Name, med.OpsPerSec, med.Latency.P50, med.Latency.P99, med.Latency.P999, len(repeats), throughputs(repeats))
		report.Runs = append(report.Runs, Run{Scenario: sc, Result: med, Repeats: repeats})
	}
	if o.flat > 0 && o.only == "" {
		cl.stop() // the flat check runs on clusters of its own
		flat, err := flatWithSize(ctx, o)
		if err != nil {
			return fmt.Errorf("flat with size: %w", err)
		}
		report.Flat = flat
	}
	return writeReport(report, o)
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

// load runs one load against the cluster.
func load(ctx context.Context, cl *cluster, cfg loadgen.Config) (*loadgen.Result, error) {
	cfg.Addr = cl.clientAddr
	return loadgen.Run(ctx, cfg)
}

// flatWithSize starts two fresh clusters side by side, stores o.flat
// messages in one (reading the gateway's heap before and after), and then
// measures SET 64 conns on the empty and the full cluster in turns, so that
// the machine's drift over minutes (identical runs differ by up to a third)
// falls on both alike. The empty cluster only gains the messages of its own
// runs (about 70,000 each).
func flatWithSize(ctx context.Context, o options) (*Flat, error) {
	empty, err := startCluster(ctx, o, o.basePort+100)
	if err != nil {
		return nil, err
	}
	defer empty.stop()
	full, err := startCluster(ctx, o, o.basePort+200)
	if err != nil {
		return nil, err
	}
	defer full.stop()

	before, err := full.gatewayHeap()
	if err != nil {
		return nil, err
	}
	fmt.Printf("storing %d messages\n", o.flat)
	pre, err := load(ctx, full, loadgen.Config{Op: loadgen.OpSet, Conns: 8, Depth: 32, Size: o.size, Ops: o.flat, Keys: o.flat, Offset: 5_000_000_000})
	if err != nil {
		return nil, err
	}
	if pre.Failed() {
		return nil, fmt.Errorf("storing: %s", pre.FirstError)
	}
	// The leader forgets answered requests lazily, at their timeout (2 s):
	// wait that out so only what stays is counted.
	time.Sleep(3 * time.Second)
	after, err := full.gatewayHeap()
	if err != nil {
		return nil, err
	}

	set := loadgen.Config{Op: loadgen.OpSet, Conns: 64, Depth: 1, Size: o.size, Duration: o.duration, Warmup: o.warmup,
		Keys: 10_000_000}
	var emptyRuns, fullRuns []*loadgen.Result
	for i := 0; i < o.repeat; i++ {
		set.Offset = 3_000_000_000 + int64(i)*10_000_000
		for _, target := range []struct {
			cl   *cluster
			runs *[]*loadgen.Result
		}{{empty, &emptyRuns}, {full, &fullRuns}} {
			res, err := load(ctx, target.cl, set)
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
		Stored: o.flat, EmptyOpsPerSec: e.OpsPerSec, FullOpsPerSec: fl.OpsPerSec,
		EmptyRuns: opsPerSec(emptyRuns), FullRuns: opsPerSec(fullRuns),
		ChangePercent: 100 * (fl.OpsPerSec - e.OpsPerSec) / e.OpsPerSec,
		HeapBefore:    before, HeapAfter: after, BytesPerMessage: (after - before) / float64(o.flat),
		PreloadOpsPerSec: pre.OpsPerSec,
	}
	fmt.Printf("flat with size: empty %.0f ops/s (%s), with %d messages %.0f ops/s (%s): %+.1f%%; gateway heap %.1f bytes/message\n",
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

// cluster is a running `tolerex dev`.
type cluster struct {
	cmd        *exec.Cmd
	stopped    bool
	dir        string
	clientAddr string
	adminAddrs []string // gateway first
}

// startCluster starts a fresh `tolerex dev` whose client port is basePort
// (node ports from basePort+10, admin ports from basePort+20).
func startCluster(ctx context.Context, o options, basePort int) (*cluster, error) {
	dir, err := os.MkdirTemp("", "tolerex-bench-")
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1"
	cl := &cluster{dir: dir, clientAddr: net.JoinHostPort(host, strconv.Itoa(basePort))}
	nodePort, adminPort := basePort+10, basePort+20
	for i := 0; i <= 3; i++ {
		cl.adminAddrs = append(cl.adminAddrs, net.JoinHostPort(host, strconv.Itoa(adminPort+i)))
	}
	args := append([]string{"dev", "--data-dir", dir, "--members", "3", "--tolerance", "2",
		"--no-prompt", "--fault-injection=false", "--log-level", "warn",
		"--client-addr", cl.clientAddr, "--node-port", strconv.Itoa(nodePort), "--admin-port", strconv.Itoa(adminPort)}, o.devArgs...)
	cl.cmd = exec.CommandContext(ctx, o.bin, args...)
	cl.cmd.Cancel = func() error { return cl.cmd.Process.Signal(os.Interrupt) }
	out, err := cl.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cl.cmd.Stderr = os.Stderr
	if err := cl.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s dev: %w", o.bin, err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "cluster ready") {
				ready <- true
				signalled = true
			}
		}
		if !signalled {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cl.stop()
			return nil, errors.New("the dev cluster exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		cl.stop()
		return nil, errors.New("the dev cluster was not ready within 60s")
	}
	return cl, nil
}

func (cl *cluster) stop() {
	if cl.stopped {
		return
	}
	cl.stopped = true
	if cl.cmd.Process != nil {
		_ = cl.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cl.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cl.cmd.Process.Kill()
		}
	}
	os.RemoveAll(cl.dir)
}

// profile fetches CPU profiles of the gateway and member 1 while a
// scenario runs (starting after its warm-up).
func (cl *cluster) profile(o options, name string) chan error {
	done := make(chan error, 1)
	go func() {
		time.Sleep(o.warmup + time.Second)
		seconds := max(1, int(o.duration/time.Second)-2)
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			done <- err
			return
		}
		errs := make(chan error, 2)
		for i, who := range []string{"gateway", "member"} {
			go func() {
				errs <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", cl.adminAddrs[i], seconds),
					filepath.Join(o.profile, fmt.Sprintf("%s-%s.pprof", name, who)))
			}()
		}
		done <- errors.Join(<-errs, <-errs)
	}()
	return done
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// gatewayHeap forces a GC on the gateway and returns its heap in use.
func (cl *cluster) gatewayHeap() (float64, error) {
	admin := cl.adminAddrs[0]
	if err := fetch("http://"+admin+"/debug/pprof/heap?gc=1", os.DevNull); err != nil {
		return 0, err
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no go_memstats_heap_inuse_bytes in the gateway's metrics")
}

func conditions(o options) Conditions {
	c := Conditions{
		Date:       time.Now().UTC().Format(time.RFC3339),
		Commit:     commit(),
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		Kernel:     kernel(),
		Go:         runtime.Version(),
		Cluster:    "tolerex dev: 1 gateway + 3 members, tolerance 2, fsync on (--sync=true), mTLS, --no-prompt, all on 127.0.0.1",
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

func writeReport(r *Report, o options) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
		return err
	}
	md, err := os.ReadFile(o.mdOut)
	if err != nil {
		return fmt.Errorf("read %s: %w", o.mdOut, err)
	}
	text := string(md)
	begin, end := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s has no %s ... %s section", o.mdOut, beginMarker, endMarker)
	}
	updated := text[:begin+len(beginMarker)] + "\n" + markdown(r) + text[end:]
	if err := os.WriteFile(o.mdOut, []byte(updated), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", o.jsonOut, o.mdOut)
	return nil
}

func markdown(r *Report) string {
	var b strings.Builder
	c := r.Conditions
	fmt.Fprintf(&b, "Generated by `make bench` on %s at commit `%s`.\n\n", c.Date, c.Commit)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, %s\n", c.CPU, c.Cores, c.Kernel, c.Go)
	fmt.Fprintf(&b, "- Cluster: %s\n", c.Cluster)
	fmt.Fprintf(&b, "- Load: closed loop, %d-byte messages, %s measured after %s warm-up per run, %d runs per row (the row shows the median run); %s; GETs read %d preloaded keys at random; SETs write fresh keys\n\n",
		c.Size, c.Duration, c.Warmup, c.Repeat, c.LoadOnHost, c.Preloaded)
	b.WriteString("| scenario | ops/s (median) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | ops/s of each run |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, run := range r.Runs {
		l := run.Result.Latency
		fmt.Fprintf(&b, "| %s | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %d | %s |\n",
			run.Scenario.Name, run.Result.OpsPerSec, l.P50, l.P90, l.P99, l.P999, l.Max, run.Result.Errors+run.Result.Mismatches, throughputs(run.Repeats))
	}
	if f := r.Flat; f != nil {
		fmt.Fprintf(&b, "\nFlat with size (two fresh clusters side by side, runs taken in turns, median of %d each): SET 64 conns on the empty cluster %.0f ops/s (runs: %s); "+
			"on the cluster holding %d messages %.0f ops/s (runs: %s): %+.1f%%. "+
			"Gateway heap in use (after a forced GC) grew from %.1f MiB to %.1f MiB while the %d messages were stored: %.1f bytes per message. They were stored at %.0f ops/s (8 conns x depth 32).\n",
			r.Conditions.Repeat, f.EmptyOpsPerSec, formatRuns(f.EmptyRuns), f.Stored, f.FullOpsPerSec, formatRuns(f.FullRuns), f.ChangePercent,
			f.HeapBefore/(1<<20), f.HeapAfter/(1<<20), f.Stored, f.BytesPerMessage, f.PreloadOpsPerSec)
	}
	return b.String()
}
