// Package model checks a recorded history for linearizability with
// porcupine: Tolerex as a set of independent registers, one per message
// id, each holding a value or nothing, changed by SET and DEL and read by
// GET.
//
// Outcomes are modelled as they were observed. A definite answer must be
// explained by the register. A definite error means the operation never
// happened, so it is left out: a read that returns the value of a failed
// SET (values are unique) then has no explanation. An indeterminate SET or
// DEL may or may not have happened: as in etcd's robustness tests it
// returns at the end of the history, so porcupine may place it anywhere
// after its call, including after everything else (where it has no
// effect). A GET without an answer tells nothing and is left out.
package model

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tolerex/tolerex/e2e/chaos/history"
)

// input is what a client asked.
type input struct {
	kind  history.Kind
	id    int64
	value string // a SET's value
}

// output is what it got.
type output struct {
	status history.Status
	value  string // a GET's value
}

// register is the state of one id: comparable, so porcupine can compare
// states with ==.
type register struct {
	exists bool
	value  string
}

// Model is the porcupine model of Tolerex: registers partitioned by id.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByID,
		Init:      func() any { return register{} },
		Step: func(state, in, out any) (bool, any) {
			return step(state.(register), in.(input), out.(output))
		},
		DescribeOperation: func(in, out any) string { return describe(in.(input), out.(output)) },
		DescribeState: func(state any) string {
			if r := state.(register); r.exists {
				return fmt.Sprintf("%q", r.value)
			}
			return "(none)"
		},
	}
}

// step is the sequential specification of one register.
func step(r register, in input, out output) (bool, register) {
	switch in.kind {
	case history.Set:
		// OK or unknown: once linearized, it took effect.
		return true, register{exists: true, value: in.value}
	case history.Get:
		switch out.status {
		case history.Found:
			return r.exists && r.value == out.value, r
		case history.NotFound:
			return !r.exists, r
		}
	case history.Del:
		switch out.status {
		case history.OK:
			return r.exists, register{}
		case history.NotFound:
			return !r.exists, r
		case history.Unknown:
			return true, register{}
		}
	}
	return false, r
}

func describe(in input, out output) string {
	switch in.kind {
	case history.Set:
		return fmt.Sprintf("SET %d %s -> %s", in.id, in.value, out.status)
	case history.Get:
		if out.status == history.Found {
			return fmt.Sprintf("GET %d -> %s", in.id, out.value)
		}
		return fmt.Sprintf("GET %d -> %s", in.id, out.status)
	}
	return fmt.Sprintf("DEL %d -> %s", in.id, out.status)
}

func partitionByID(ops []porcupine.Operation) [][]porcupine.Operation {
	byID := make(map[int64][]porcupine.Operation)
	for _, op := range ops {
		id := op.Input.(input).id
		byID[id] = append(byID[id], op)
	}
	ids := make([]int64, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([][]porcupine.Operation, 0, len(ids))
	for _, id := range ids {
		parts = append(parts, byID[id])
	}
	return parts
}

// Operations turns a recorded history into porcupine operations: definite
// errors and unanswered GETs are left out, indeterminate SETs and DELs
// return at the end of the history. Times are nanoseconds from the start.
func Operations(ops []history.Op) []porcupine.Operation {
	var end time.Duration
	for _, op := range ops {
		end = max(end, op.Return, op.Call)
	}
	end++
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.Status == history.Failed || (op.Kind == history.Get && op.Status == history.Unknown) {
			continue
		}
		ret := op.Return
		if op.Status == history.Unknown {
			ret = end
		}
		in := input{kind: op.Kind, id: op.ID}
		o := output{status: op.Status}
		if op.Kind == history.Set {
			in.value = op.Value
		} else {
			o.value = op.Value
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Process,
			Input:    in,
			Output:   o,
			Call:     int64(op.Call),
			Return:   int64(ret),
		})
	}
	return out
}

// Verdict is the answer of a check.
type Verdict string

// The verdicts.
const (
	Linearizable    Verdict = "linearizable"
	NotLinearizable Verdict = "not linearizable"
	// Inconclusive: the checker ran out of time.
	Inconclusive Verdict = "inconclusive"
)

// Result is the outcome of Check.
type Result struct {
	Verdict Verdict
	// BadIDs are the ids whose history alone is not linearizable (or not
	// decided in time), when the verdict is not Linearizable.
	BadIDs []int64
	// Took is how long the check ran.
	Took time.Duration
	// Operations is how many operations were checked.
	Operations int

	info porcupine.LinearizationInfo
}

// Check checks the history for linearizability within timeout (0: no
// limit).
func Check(ops []history.Op, timeout time.Duration) Result {
	started := time.Now()
	pops := Operations(ops)
	res, info := porcupine.CheckOperationsVerbose(Model(), pops, timeout)
	r := Result{Took: time.Since(started), Operations: len(pops), info: info}
	switch res {
	case porcupine.Ok:
		r.Verdict = Linearizable
		return r
	case porcupine.Illegal:
		r.Verdict = NotLinearizable
	default:
		r.Verdict = Inconclusive
	}
	// Name the registers at fault: check each alone. The whole check
	// already ran, so this costs at most as much again.
	m := Model()
	for _, part := range partitionByID(pops) {
		if porcupine.CheckOperationsTimeout(m, part, timeout) != porcupine.Ok {
			r.BadIDs = append(r.BadIDs, part[0].Input.(input).id)
		}
	}
	sort.Slice(r.BadIDs, func(i, j int) bool { return r.BadIDs[i] < r.BadIDs[j] })
	r.Took = time.Since(started)
	return r
}

// Visualize writes porcupine's HTML visualization of the checked history
// (with the longest linearizable prefixes of each register) to path.
func (r Result) Visualize(path string) error {
	if r.Verdict == "" {
		return errors.New("visualize: no check ran")
	}
	if err := porcupine.VisualizePath(Model(), r.info, path); err != nil {
		return fmt.Errorf("visualize history: %w", err)
	}
	return nil
}
