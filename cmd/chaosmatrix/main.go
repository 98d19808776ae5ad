// Command chaosmatrix runs the long fault suite (what `make chaos` runs):
// at least 20 runs of `tolerex chaos` over every fault mix, one seed each,
// and writes a table of the results with their conditions and seeds to a
// generated section of docs/reliability.md. It exits non-zero if any run
// failed, after writing the table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos"
	"github.com/tolerex/tolerex/e2e/chaos/summary"
)

// mix is one configuration of the matrix.
type mix struct {
	faults      string
	concurrency int
}

// standardMixes covers every fault kind and target, one at a time and
// several at once; full disks of members and of gateways (which need root,
// for the small filesystems the tool mounts) unless withoutDisk.
func standardMixes(withoutDisk bool) []mix {
	mixes := []mix{
		{"member", 1}, {"gateway", 1}, {"quorum", 1}, {"partitions", 2}, {"pauses", 2},
		{"kills", 1}, {"stops", 1}, {"cluster-kill", 1}, {"mixed", 1}, {"mixed", 2}, {"mixed", 3},
	}
	if !withoutDisk {
		mixes = append(mixes, mix{"disk,member", 2}, mix{"gateway-disk,gateway", 2})
	}
	return mixes
}

func main() {
	var (
		bin         = flag.String("bin", "bin/tolerex", "the tolerex binary")
		runs        = flag.Int("runs", 20, "runs, cycling through the fault mixes")
		duration    = flag.Duration("duration", 60*time.Second, "workload time of each run")
		seedBase    = flag.Int64("seed", 0, "seed of the first run; run i uses seed+i (default: from the clock)")
		out         = flag.String("out", "chaos-out/matrix", "output dir: one subdir per run")
		md          = flag.String("md", "docs/reliability.md", "markdown file whose generated section is replaced (empty: none)")
		withoutDisk = flag.Bool("without-disk", false, "leave out the full-disk mixes (they need root to mount small filesystems)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *runs, *duration, *seedBase, *out, *md, *withoutDisk); err != nil {
		fmt.Fprintln(os.Stderr, "chaosmatrix:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, runs int, duration time.Duration, seedBase int64, out, md string, withoutDisk bool) error {
	if runs < 1 {
		return errors.New("--runs must be at least 1")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("binary path: %w", err)
	}
	if seedBase == 0 {
		seedBase = time.Now().Unix() % 1_000_000 * 1000
	}
	mixes := standardMixes(withoutDisk)
	started := time.Now()
	fmt.Printf("chaosmatrix: %d runs of %s from seed %d (rerun one with: tolerex chaos --seed S --faults F --concurrent-faults C --duration %s)\n",
		runs, duration, seedBase, duration)
	var results []result
	for i := range runs {
		if ctx.Err() != nil {
			break
		}
		m := mixes[i%len(mixes)]
		cfg := chaos.Defaults()
		cfg.Binary, cfg.Duration, cfg.Faults, cfg.Concurrency = abs, duration, m.faults, m.concurrency
		cfg.Seed = uint64(seedBase) + uint64(i)
		cfg.OutDir = filepath.Join(out, fmt.Sprintf("%02d-%s-c%d-%d", i+1, strings.ReplaceAll(m.faults, ",", "+"), m.concurrency, cfg.Seed))
		fmt.Printf("chaosmatrix: run %d/%d: faults %s, %d at once, seed %d\n", i+1, runs, m.faults, m.concurrency, cfg.Seed)
		sum, err := chaos.Run(ctx, cfg)
		r := result{mix: m, sum: sum}
		if err != nil {
			r.err = err.Error()
			fmt.Printf("chaosmatrix: run %d could not be carried out: %v\n", i+1, err)
		} else {
			fmt.Print(sum.Text())
		}
		results = append(results, r)
	}
	failed := 0
	for _, r := range results {
		if r.err != "" || !r.sum.Passed {
			failed++
		}
	}
	fmt.Printf("chaosmatrix: %d runs, %d failed, in %s\n", len(results), failed, time.Since(started).Round(time.Second))
	if md != "" && len(results) > 0 {
		conds := conditions(duration, seedBase, started)
		if len(results) < 20 || duration < time.Minute {
			conds = fmt.Sprintf("**A reduced run: %d runs of %s** (`make chaos` runs 20 of 60 s). ", len(results), duration) + conds
		}
		section := render(conds, results)
		if err := replaceSection(md, section); err != nil {
			return err
		}
		fmt.Printf("chaosmatrix: wrote the results to %s\n", md)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %d runs", len(results))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs failed", failed, len(results))
	}
	return nil
}

// result is one run of the matrix.
type result struct {
	mix mix
	sum summary.Summary
	err string
}

// conditions describe where the matrix ran.
func conditions(duration time.Duration, seedBase int64, started time.Time) string {
	commit := strings.TrimSpace(command("git", "rev-parse", "--short", "HEAD"))
	if dirty := command("git", "status", "--porcelain", "--untracked-files=no"); strings.TrimSpace(dirty) != "" {
		commit += " (with uncommitted changes)"
	}
	kernel := strings.TrimSpace(command("uname", "-r"))
	d := chaos.Defaults()
	return fmt.Sprintf("Run %s on commit %s: Linux %s, %d cores, %s. Each run: %d gateway + %d members (tolerance %d), "+
		"%d clients on %d ids at most %.0f ops/s (SET %d%%, DEL %d%%, the rest GET), %s of faults drawn every %s (±50%%) "+
		"holding %s to %s, operation timeout %s, then heal, a whole-cluster SIGKILL and restart, and a read of every id. "+
		"Seeds from %d, one per run.",
		started.Format("2006-01-02"), commit, kernel, runtime.NumCPU(), runtime.Version(),
		d.Gateways, d.Members, d.Tolerance, d.Clients, d.Keys, d.Rate, d.SetPercent, d.DelPercent,
		duration, d.Interval, d.MinHold, d.MaxHold, d.OpTimeout, seedBase)
}

func command(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// render writes the generated section: conditions, then one row a run.
func render(conds string, results []result) string {
	var b strings.Builder
	b.WriteString(conds + "\n\n")
	b.WriteString("| # | faults | at once | seed | ops | ok | failed | unknown | faults applied | longest without write / read | ops/s | linearizable | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	totals := struct{ ops, ok, failed, unknown, faults, violations, passed int }{}
	for i, r := range results {
		s := r.sum
		if r.err != "" {
			fmt.Fprintf(&b, "| %d | %s | %d | %d | | | | | | | | | not run: %s |\n", i+1, r.mix.faults, r.mix.concurrency, s.Seed, escape(r.err))
			continue
		}
		kinds := make([]string, 0, len(s.FaultsByKind))
		applied := 0
		for k, n := range s.FaultsByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			applied += n
		}
		slices.Sort(kinds)
		outcome := "pass"
		if !s.Passed {
			outcome = "FAIL: " + escape(strings.Join(s.Failures, "; "))
		}
		o := s.Ops
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %d | %d | %d | %s | %.1f s / %.1f s | %.0f | %s | %s |\n",
			i+1, r.mix.faults, r.mix.concurrency, s.Seed, o.All.Total, o.All.Succeeded, o.All.Failed, o.All.Unknown,
			strings.Join(kinds, ", "), o.LongestWithoutWrite.Seconds(), o.LongestWithoutRead.Seconds(), o.Throughput,
			yesNo(s.Linearizable), outcome)
		totals.ops += o.All.Total
		totals.ok += o.All.Succeeded
		totals.failed += o.All.Failed
		totals.unknown += o.All.Unknown
		totals.faults += applied
		if s.Verdict == "not linearizable" {
			totals.violations++
		}
		if s.Passed {
			totals.passed++
		}
	}
	fmt.Fprintf(&b, "\nIn all: %d runs, %d passed; %d operations (%d definite answers, %d definite errors, %d indeterminate); %d faults applied; %d linearizability violations.\n",
		len(results), totals.passed, totals.ops, totals.ok, totals.failed, totals.unknown, totals.faults, totals.violations)
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

const (
	beginMarker = "<!-- chaosmatrix:begin -->"
	endMarker   = "<!-- chaosmatrix:end -->"
)

// replaceSection replaces the text between the markers in path.
func replaceSection(path, section string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	text := string(data)
	begin := strings.Index(text, beginMarker)
	end := strings.Index(text, endMarker)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s lacks the markers %s and %s", path, beginMarker, endMarker)
	}
	text = text[:begin+len(beginMarker)] + "\n" + section + text[end:]
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
