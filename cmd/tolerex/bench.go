package main

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

type benchFlags struct {
	addr      string // one address or a comma-separated list
	ioTimeout time.Duration
	conns     int
	depth     int
	op        string
	ratio     float64
	size      int
	ops       int64
	duration  time.Duration
	warmup    time.Duration
	keys      int64
	offset    int64
	json      bool
	csvPath   string
	tlsCA     string
}

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Closed-loop HaToKuSe load generator with latency percentiles",
		Long: `Drive a gateway with --conns connections, each keeping up to --depth requests
in flight (pipelining), and report throughput and latency percentiles (HDR
histogram: p50, p90, p99, p99.9, max).

--addr takes one gateway or a comma-separated list of the gateways of one
group. With a list, connection i starts on gateway i mod N (round robin;
if that one does not answer, on the next that does). When a connection is
lost (the gateway closed or reset it, or sent no reply within
--io-timeout), the requests in flight on it count as errors, "lost in
flight", and are not sent again; the connection reconnects to the next
gateway of the list, wrapping around (the whole list up to 5 times,
pausing 0.2, 0.4, 0.8 and 1.6 s between passes; with one address, to that
one), and goes on. A connection that finds no gateway sends nothing more
("given up"). With a list, a gateway that answers "ERROR: gateway
unavailable: ..." (it runs no Raft: its disk is full or its consensus
stopped; or it is shutting down) is left the same way once the requests
in flight on it are answered. Such a refusal had no effect, so the
refused requests are sent again on the next gateway first and are no
errors; a request refused by every gateway of the list counts as a
definite error. After a whole pass of the list without a request served
the connection pauses 0.2 s before moving on. The summary (and --json)
adds, per gateway, the connections that started on it, the requests it
answered, its errors, its lost connections, the connections that left it
as unavailable, the requests it refused that were sent again, and the
reconnects to it.

Workloads (--op): set stores keys offset..offset+keys-1 in order, cycling;
get reads random keys of that range; setget stores a key and reads it back;
mix reads random keys (share --ratio) and stores in order. Every key's
message is the same bytes whoever writes it (its id, a colon and a pattern,
--size bytes), so every GET is checked; a wrong value is a mismatch, and a
key never stored is a miss. Run set before get, with the same --keys,
--offset and --size.

Errors are split by what they tell about the request's effect (see
docs/protocol.md, "Which errors are definite"): definite, it had none;
indeterminate, it may have. A SET lost in flight is indeterminate, a GET
lost in flight definite (a read has no effect). The summary names the keys
of the SETs whose outcome is unknown and of those refused (--json:
unknown_keys, refused_keys): a later read may find those missing, and no
other key the run wrote.

The exit status is non-zero on any error (lost requests included) or
mismatch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.addr, "addr", defaultClientAddr, "gateway HaToKuSe address (host:port), or a comma-separated list of one group's gateways to spread the connections over and fail over between")
	fs.DurationVar(&f.ioTimeout, "io-timeout", defaultIOTimeout, "wait this long for a reply before taking the gateway for dead and reconnecting")
	fs.IntVar(&f.conns, "conns", 16, "connections")
	fs.IntVar(&f.depth, "depth", 1, "requests in flight per connection (1: no pipelining)")
	fs.StringVar(&f.op, "op", "set", "workload: set, get, setget or mix")
	fs.Float64Var(&f.ratio, "ratio", 0.9, "share of GETs with --op mix")
	fs.IntVar(&f.size, "size", 100, "message size in bytes")
	fs.Int64Var(&f.ops, "ops", 0, "measured requests to send (instead of --duration)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to measure (ignored with --ops)")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "load before measuring")
	fs.Int64Var(&f.keys, "keys", 100_000, "size of the key space")
	fs.Int64Var(&f.offset, "offset", 0, "first key")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
	fs.StringVar(&f.csvPath, "csv", "", "write a per-second time series (second,ops,errors,p50_ms,p99_ms,max_ms) to this file")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "connect with TLS, trusting the CA certificate in this file")
	return cmd
}

func runBench(ctx context.Context, f benchFlags, out, errOut io.Writer) error {
	op, err := loadgen.ParseOp(f.op)
	if err != nil {
		return err
	}
	addrs, err := client.ParseAddrs(f.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if f.ioTimeout <= 0 {
		return errors.New("--io-timeout must be positive")
	}
	cfg := loadgen.Config{
		Addrs: addrs, IOTimeout: f.ioTimeout, Conns: f.conns, Depth: f.depth, Op: op, Ratio: f.ratio, Size: f.size,
		Ops: f.ops, Duration: f.duration, Warmup: f.warmup, Keys: f.keys, Offset: f.offset,
		Series: f.csvPath != "",
	}
	if f.ops > 0 {
		cfg.Duration = 0
	}
	if f.tlsCA != "" {
		pool, err := certs.LoadCAPool(f.tlsCA)
		if err != nil {
			return err
		}
		cfg.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if file, ok := errOut.(*os.File); ok && term.IsTerminal(int(file.Fd())) && !f.json {
		bar = newBenchBar(cfg, errOut)
		cfg.Tick = func(done int64, elapsed time.Duration) {
			if cfg.Ops > 0 {
				_ = bar.Set64(done)
			} else {
				_ = bar.Set64(min(int64(elapsed/time.Millisecond), int64(cfg.Duration/time.Millisecond)))
			}
			bar.Describe(fmt.Sprintf("%s %d ops", cfg.Op, done))
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(errOut)
	}
	if err != nil {
		return err
	}
	if f.csvPath != "" {
		if err := writeSeries(f.csvPath, res.Series); err != nil {
			return err
		}
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBench(out, res)
	}
	if res.Failed() {
		return fmt.Errorf("%d errors (%d definite, %d indeterminate; %d lost in flight) and %d mismatches (first: %s)",
			res.Errors, res.DefiniteErrors, res.IndeterminateErrors, res.LostInFlight, res.Mismatches, res.FirstError)
	}
	return nil
}

func newBenchBar(cfg loadgen.Config, w io.Writer) *progressbar.ProgressBar {
	total, unit := cfg.Ops, "ops"
	if total == 0 {
		total, unit = int64(cfg.Duration/time.Millisecond), "ms"
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// shownKeys is how many keys of a list printKeys names; --json gives all.
const shownKeys = 20

// printKeys names the keys of one kind of failed SET, the first shownKeys
// of them.
func printKeys(w io.Writer, what string, keys []int64, truncated bool) {
	if len(keys) == 0 {
		return
	}
	fmt.Fprintf(w, "  %s: %d, keys", what, len(keys))
	for _, k := range keys[:min(len(keys), shownKeys)] {
		fmt.Fprintf(w, " %d", k)
	}
	if len(keys) > shownKeys {
		fmt.Fprintf(w, " ... (--json lists them)")
	}
	if truncated {
		fmt.Fprintf(w, " (more SETs failed than are kept: at most %d of each kind)", loadgen.MaxFailedKeys)
	}
	fmt.Fprintln(w)
}

func printBench(w io.Writer, r *loadgen.Result) {
	fmt.Fprintf(w, "tolerex bench: %s, %d conns x depth %d, %d-byte messages, keys %d from %d, %s measured after %s warmup\n",
		r.Op, r.Conns, r.Depth, r.Size, r.Keys, r.Offset, r.Elapsed.Round(time.Millisecond), r.Warmup)
	fmt.Fprintf(w, "  requests %d (set %d, get %d)  errors %d  mismatches %d  misses %d\n", r.Ops, r.Sets, r.Gets, r.Errors, r.Mismatches, r.Misses)
	if r.Errors > 0 {
		fmt.Fprintf(w, "  errors   definite %d  indeterminate %d  (lost in flight %d)\n", r.DefiniteErrors, r.IndeterminateErrors, r.LostInFlight)
		printKeys(w, "SETs of unknown outcome (may be stored)", r.UnknownKeys, r.FailedKeysTruncated)
		printKeys(w, "SETs refused (not stored)", r.RefusedKeys, r.FailedKeysTruncated)
	}
	fmt.Fprintf(w, "  throughput %.0f ops/s\n", r.OpsPerSec)
	printLatency(w, "latency", r.Latency)
	if r.SetLatency != nil {
		printLatency(w, "  set", *r.SetLatency)
		printLatency(w, "  get", *r.GetLatency)
	}
	if len(r.Gateways) > 1 || r.Reconnects > 0 || r.ConnsGivenUp > 0 {
		for _, g := range r.Gateways {
			fmt.Fprintf(w, "  gateway %s  conns %d  requests %d  errors %d  lost conns %d  left as unavailable %d  sent again %d  reconnects to it %d\n",
				g.Addr, g.Conns, g.Ops, g.Errors, g.LostConns, g.LeftUnavailable, g.Resent, g.ReconnectsTo)
		}
		fmt.Fprintf(w, "  reconnects %d (from unavailable gateways %d, their refused requests sent again %d)  conns given up %d\n",
			r.Reconnects, r.LeftUnavailable, r.Resent, r.ConnsGivenUp)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
}

func printLatency(w io.Writer, label string, l loadgen.Latency) {
	fmt.Fprintf(w, "  %-8s ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", label, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
}

func writeSeries(path string, series []loadgen.Second) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"second", "ops", "errors", "p50_ms", "p99_ms", "max_ms"})
	for _, s := range series {
		_ = w.Write([]string{strconv.Itoa(s.Second), strconv.FormatInt(s.Ops, 10), strconv.FormatInt(s.Errors, 10),
			strconv.FormatFloat(s.P50, 'f', 3, 64), strconv.FormatFloat(s.P99, 'f', 3, 64), strconv.FormatFloat(s.Max, 'f', 3, 64)})
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}
