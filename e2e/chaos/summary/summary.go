// Package summary sums up a fault-suite run: operations by outcome,
// faults by kind, the longest stretches without a successful write and
// without a successful read, the throughput kept, the linearizability
// verdict, and why the run failed if it did. It renders that as text for
// people and JSON for machines.
package summary

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos/history"
)

// Counts are operations by outcome.
type Counts struct {
	Total int `json:"total"`
	// Succeeded got a definite answer; Failed a definite error; Unknown
	// an indeterminate outcome.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Unknown   int `json:"unknown"`
}

func (c *Counts) add(s history.Status) {
	c.Total++
	switch {
	case s.Succeeded():
		c.Succeeded++
	case s == history.Failed:
		c.Failed++
	default:
		c.Unknown++
	}
}

// Ops sums up the workload's operations (the final reads apart).
type Ops struct {
	All    Counts                  `json:"all"`
	ByKind map[history.Kind]Counts `json:"by_kind"`
	// FinalReads counts the reads of every id after the faults healed.
	FinalReads Counts `json:"final_reads"`
	// LongestWithoutWrite is the longest time in the workload with no SET
	// or DEL that got a definite answer; LongestWithoutRead the same for
	// GETs. Both count from the start and to the end of the workload.
	LongestWithoutWrite time.Duration `json:"longest_without_write_ns"`
	LongestWithoutRead  time.Duration `json:"longest_without_read_ns"`
	// Throughput is definite answers per second of workload.
	Throughput float64 `json:"throughput_ops_per_s"`
}

// CountOps sums up ops of a workload that ran for duration.
func CountOps(ops []history.Op, duration time.Duration) Ops {
	s := Ops{ByKind: make(map[history.Kind]Counts)}
	var writes, reads []time.Duration
	for _, op := range ops {
		if op.Final {
			s.FinalReads.add(op.Status)
			continue
		}
		s.All.add(op.Status)
		c := s.ByKind[op.Kind]
		c.add(op.Status)
		s.ByKind[op.Kind] = c
		if !op.Status.Succeeded() {
			continue
		}
		if op.Kind == history.Get {
			reads = append(reads, op.Return)
		} else {
			writes = append(writes, op.Return)
		}
	}
	s.LongestWithoutWrite = longestGap(writes, duration)
	s.LongestWithoutRead = longestGap(reads, duration)
	if duration > 0 {
		s.Throughput = float64(s.All.Succeeded) / duration.Seconds()
	}
	return s
}

// longestGap is the longest stretch of [0, end] without one of times.
func longestGap(times []time.Duration, end time.Duration) time.Duration {
	times = slices.Clone(times)
	slices.Sort(times)
	var longest, last time.Duration
	for _, t := range times {
		t = min(t, end)
		longest = max(longest, t-last)
		last = max(last, t)
	}
	return max(longest, end-last)
}

// Fault is one fault of the run, as the summary lists it.
type Fault struct {
	N       int      `json:"n"`
	Kind    string   `json:"kind"`
	Target  string   `json:"target"`
	Nodes   []string `json:"nodes,omitempty"`
	Start   float64  `json:"start_s"`
	Healed  float64  `json:"healed_s"`
	Skipped string   `json:"skipped,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Crash is a node that exited on its own.
type Crash struct {
	Node    string `json:"node"`
	At      string `json:"at"`
	Error   string `json:"error"`
	LogTail string `json:"log_tail,omitempty"`
}

// Summary is the account of one run.
type Summary struct {
	Seed       uint64  `json:"seed"`
	FaultSpec  string  `json:"faults"`
	Duration   float64 `json:"duration_s"`
	Clients    int     `json:"clients"`
	Keys       int     `json:"keys"`
	Gateways   int     `json:"gateways"`
	Members    int     `json:"members"`
	Tolerance  int     `json:"tolerance"`
	Binary     string  `json:"binary"`
	Started    string  `json:"started"`
	Ops        Ops     `json:"operations"`
	DialErrors int64   `json:"dial_failures"`
	// FaultsByKind counts the faults applied (not skipped) by kind.
	FaultsByKind map[string]int `json:"faults_by_kind"`
	Faults       []Fault        `json:"faults_applied"`
	Crashes      []Crash        `json:"crashes,omitempty"`
	// MinThroughput is the throughput a run must keep to count.
	MinThroughput float64 `json:"min_throughput_ops_per_s"`
	// Verdict is the linearizability check's answer; BadIDs the ids whose
	// histories are at fault.
	Verdict   string  `json:"verdict"`
	BadIDs    []int64 `json:"bad_ids,omitempty"`
	CheckTook float64 `json:"check_took_s"`
	// Linearizable is true only for a linearizable verdict.
	Linearizable bool `json:"linearizable"`
	// Failures say why the run failed; empty if it passed.
	Failures []string `json:"failures,omitempty"`
	Passed   bool     `json:"passed"`
	// OutputDir holds the history, this summary and, on failure, the logs
	// (and the visualization of a violation).
	OutputDir string `json:"output_dir"`
	// Visualization is the HTML file of a violation, if one was written.
	Visualization string `json:"visualization,omitempty"`
}

// Fail records why the run failed.
func (s *Summary) Fail(format string, args ...any) {
	s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
}

// Finish sets Passed from the failures recorded.
func (s *Summary) Finish() { s.Passed = len(s.Failures) == 0 }

// WriteJSON writes the summary as indented JSON.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	return nil
}

// Text renders the summary for people.
func (s Summary) Text() string {
	var b strings.Builder
	verdict := "PASSED"
	if !s.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "chaos run %s: seed %d, faults %q, %.0fs, %d clients on %d ids, %d gateway(s) + %d members (tolerance %d)\n",
		verdict, s.Seed, s.FaultSpec, s.Duration, s.Clients, s.Keys, s.Gateways, s.Members, s.Tolerance)
	o := s.Ops
	fmt.Fprintf(&b, "  operations: %d (%d definite answers, %d definite errors, %d indeterminate), %.0f ops/s kept (minimum %.0f)\n",
		o.All.Total, o.All.Succeeded, o.All.Failed, o.All.Unknown, o.Throughput, s.MinThroughput)
	for _, kind := range []history.Kind{history.Set, history.Get, history.Del} {
		c := o.ByKind[kind]
		fmt.Fprintf(&b, "    %-3s %6d: %6d ok, %5d failed, %5d unknown\n", kind, c.Total, c.Succeeded, c.Failed, c.Unknown)
	}
	fmt.Fprintf(&b, "  final reads: %d (%d answered)\n", o.FinalReads.Total, o.FinalReads.Succeeded)
	fmt.Fprintf(&b, "  longest without a successful write: %.2fs; without a successful read: %.2fs; failed dials: %d\n",
		o.LongestWithoutWrite.Seconds(), o.LongestWithoutRead.Seconds(), s.DialErrors)
	kinds := make([]string, 0, len(s.FaultsByKind))
	for k := range s.FaultsByKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.FaultsByKind[k]))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(&b, "  faults: %s\n", strings.Join(parts, ", "))
	for _, c := range s.Crashes {
		fmt.Fprintf(&b, "  CRASH: %s exited on its own at %s: %s\n", c.Node, c.At, c.Error)
	}
	fmt.Fprintf(&b, "  linearizable: %s (%s, checked in %.1fs)", yesNo(s.Linearizable), s.Verdict, s.CheckTook)
	if len(s.BadIDs) > 0 {
		fmt.Fprintf(&b, "; ids at fault: %v", s.BadIDs)
	}
	b.WriteString("\n")
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "  FAILURE: %s\n", f)
	}
	if s.Visualization != "" {
		fmt.Fprintf(&b, "  visualization: %s\n", s.Visualization)
	}
	fmt.Fprintf(&b, "  output: %s\n", s.OutputDir)
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
