// Package history records what the fault suite's clients did: every
// SET, GET and DEL with the time it was called and the time it returned
// (monotonic, relative to the start of the run) and how it ended. The
// linearizability check and the summary read the same record.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// Kind is the operation a client called.
type Kind string

// The operations of the workload.
const (
	Set Kind = "SET"
	Get Kind = "GET"
	Del Kind = "DEL"
)

// Status is how an operation ended.
type Status string

// The statuses. OK, Found and NotFound are definite answers; Failed is a
// definite error (the operation never took effect); Unknown is an
// indeterminate outcome (a timeout, a dropped connection, an
// indeterminate error reply): the operation may or may not have taken
// effect.
const (
	OK       Status = "ok"        // SET or DEL that took effect
	Found    Status = "found"     // GET that returned a value
	NotFound Status = "not_found" // GET of a missing id, or DEL of one
	Failed   Status = "failed"    // a definite error
	Unknown  Status = "unknown"   // an indeterminate outcome
)

// Definite reports whether the status is a definite answer or a definite
// error.
func (s Status) Definite() bool { return s != Unknown }

// Succeeded reports whether the operation got a definite answer (not an
// error).
func (s Status) Succeeded() bool { return s == OK || s == Found || s == NotFound }

// Op is one recorded operation.
type Op struct {
	// Process numbers a client's sequence of operations, as Jepsen does:
	// a client that got an indeterminate outcome continues as a new
	// process, on a new connection.
	Process int `json:"process"`
	// Client is the worker that ran the operation.
	Client int   `json:"client"`
	Kind   Kind  `json:"kind"`
	ID     int64 `json:"id"`
	// Value is the SET's value, or the value a GET returned.
	Value  string `json:"value,omitempty"`
	Status Status `json:"status"`
	// Error is the error reply or the I/O error, for Failed and Unknown.
	Error string `json:"error,omitempty"`
	// Gateway is the HaToKuSe address the operation went to.
	Gateway string `json:"gateway,omitempty"`
	// Call and Return are measured from the start of the run on the
	// monotonic clock. Return is when the outcome was known: for Unknown
	// operations, when the client gave up.
	Call   time.Duration `json:"call_ns"`
	Return time.Duration `json:"return_ns"`
	// Final marks the reads of every id after the faults were healed.
	Final bool `json:"final,omitempty"`
}

// String describes the operation for messages.
func (o Op) String() string {
	s := fmt.Sprintf("p%d %s %d", o.Process, o.Kind, o.ID)
	if o.Kind == Set {
		s += " " + o.Value
	}
	s += " -> " + string(o.Status)
	if o.Kind == Get && o.Status == Found {
		s += " " + o.Value
	}
	if o.Error != "" {
		s += " (" + o.Error + ")"
	}
	return s
}

// Recorder collects operations from concurrent clients. Its clock is the
// monotonic clock, zero at NewRecorder.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Start is the wall-clock time the recorder's clock counts from.
func (r *Recorder) Start() time.Time { return r.start }

// Now is the time since the recorder started, on the monotonic clock.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Add records a finished operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

// Ops returns a copy of the recorded operations ordered by call time.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	r.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b Op) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	return ops
}

// Write writes ops as JSON lines.
func Write(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			return fmt.Errorf("encode operation: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// WriteFile writes ops as JSON lines to path.
func WriteFile(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create history file: %w", err)
	}
	if err := Write(f, ops); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close history file: %w", err)
	}
	return nil
}

// Read reads operations written by Write.
func Read(r io.Reader) ([]Op, error) {
	dec := json.NewDecoder(r)
	var ops []Op
	for {
		var op Op
		err := dec.Decode(&op)
		if err == io.EOF {
			return ops, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode operation %d: %w", len(ops)+1, err)
		}
		ops = append(ops, op)
	}
}

// ReadFile reads a history file written by WriteFile.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open history file: %w", err)
	}
	defer f.Close()
	return Read(f)
}
