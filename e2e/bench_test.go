package e2e

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tolerex/tolerex/gateway/loadgen"
)

// runBench runs `tolerex bench` with args and returns its JSON result and
// exit error.
func runBench(t *testing.T, args ...string) (*loadgen.Result, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"bench", "--json"}, args...)...)
	out, err := cmd.Output()
	var res loadgen.Result
	if jsonErr := json.Unmarshal(out, &res); jsonErr != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tolerex bench %v: %v / %v\n%s%s", args, err, jsonErr, out, stderr)
	}
	return &res, err
}

// TestBenchCommand checks that the load generator runs every workload
// against a real cluster, in both prompt modes, and reports sane numbers;
// that it catches wrong values; and that its CSV series is well formed.
// The figures themselves are not asserted: they belong in docs.
func TestBenchCommand(t *testing.T) {
	for _, noPrompt := range []bool{false, true} {
		name := "prompt"
		if noPrompt {
			name = "no-prompt"
		}
		t.Run(name, func(t *testing.T) {
			c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: noPrompt})
			c.DumpLogsOnFailure(t)
			c.Start(t)
			common := []string{"--addr", c.ClientAddr, "--keys", "300", "--warmup", "0s", "--size", "64"}

			set, err := runBench(t, append(common, "--op", "set", "--conns", "4", "--depth", "4", "--ops", "600")...)
			if err != nil {
				t.Fatalf("set: %v (first error %q)", err, set.FirstError)
			}
			if set.Ops < 600 || set.Sets != set.Ops || set.OpsPerSec <= 0 || set.Errors != 0 {
				t.Fatalf("set result not sane: %+v", set)
			}
			l := set.Latency
			if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Max < 60_000) {
				t.Fatalf("latency percentiles out of order: %+v", l)
			}

			for _, op := range []string{"get", "setget", "mix"} {
				res, err := runBench(t, append(common, "--op", op, "--conns", "3", "--ops", "300")...)
				if err != nil || res.Mismatches != 0 || res.Errors != 0 {
					t.Fatalf("%s: %v, %+v", op, err, res)
				}
				if op == "get" && (res.Gets != res.Ops || res.Misses != 0) {
					t.Fatalf("get after set over the same keys: %+v", res)
				}
				if op == "mix" && (res.Gets == 0 || res.Sets == 0 || res.GetLatency == nil) {
					t.Fatalf("mix did both kinds: %+v", res)
				}
			}

			// Reading with another --size than was written: every value is
			// wrong, and the command must say so with its exit status.
			bad, err := runBench(t, "--addr", c.ClientAddr, "--keys", "300", "--warmup", "0s", "--size", "65", "--op", "get", "--conns", "1", "--ops", "50")
			if err == nil || bad.Mismatches == 0 {
				t.Fatalf("wrong values were not reported: err=%v %+v", err, bad)
			}

			series := filepath.Join(t.TempDir(), "series.csv")
			if _, err := runBench(t, append(common, "--op", "set", "--conns", "2", "--duration", "2s", "--csv", series)...); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(series)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, err := csv.NewReader(f).ReadAll()
			if err != nil || len(rows) < 2 || strings.Join(rows[0], ",") != "second,ops,errors,p50_ms,p99_ms,max_ms" {
				t.Fatalf("csv series: %v %q", err, rows)
			}
		})
	}
}
