package model

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos/history"
)

// op builds an operation on id 1 from call to ret (in milliseconds).
func op(process int, kind history.Kind, value string, status history.Status, call, ret int) history.Op {
	return history.Op{
		Process: process, Kind: kind, ID: 1, Value: value, Status: status,
		Call: time.Duration(call) * time.Millisecond, Return: time.Duration(ret) * time.Millisecond,
	}
}

func set(p int, v string, s history.Status, call, ret int) history.Op {
	return op(p, history.Set, v, s, call, ret)
}

func get(p int, v string, s history.Status, call, ret int) history.Op {
	return op(p, history.Get, v, s, call, ret)
}

func del(p int, s history.Status, call, ret int) history.Op {
	return op(p, history.Del, "", s, call, ret)
}

const (
	ok       = history.OK
	found    = history.Found
	notFound = history.NotFound
	failed   = history.Failed
	unknown  = history.Unknown
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		ops  []history.Op
		want Verdict
	}{
		{"empty", nil, Linearizable},
		{"read own write", []history.Op{set(0, "a", ok, 0, 10), get(0, "a", found, 20, 30)}, Linearizable},
		{"never written is not found", []history.Op{get(0, "", notFound, 0, 1)}, Linearizable},
		{"acknowledged write lost", []history.Op{set(0, "a", ok, 0, 10), get(1, "", notFound, 20, 30)}, NotLinearizable},
		{"stale read", []history.Op{set(0, "a", ok, 0, 1), set(0, "b", ok, 2, 3), get(1, "a", found, 4, 5)}, NotLinearizable},
		{"concurrent write read old", []history.Op{set(0, "a", ok, 0, 1), set(0, "b", ok, 2, 10), get(1, "a", found, 3, 4)}, Linearizable},
		{"concurrent write read new", []history.Op{set(0, "a", ok, 0, 1), set(0, "b", ok, 2, 10), get(1, "b", found, 3, 4)}, Linearizable},
		{"read goes back in time", []history.Op{
			set(0, "a", ok, 0, 1), set(0, "b", ok, 2, 20), get(1, "b", found, 3, 4), get(1, "a", found, 5, 6),
		}, NotLinearizable},
		{"value never written", []history.Op{set(0, "a", ok, 0, 1), get(1, "z", found, 2, 3)}, NotLinearizable},
		// Indeterminate writes.
		{"unknown set that took effect", []history.Op{set(0, "x", unknown, 0, 1), get(1, "x", found, 5, 6)}, Linearizable},
		{"unknown set that did not", []history.Op{set(0, "x", unknown, 0, 1), get(1, "", notFound, 5, 6)}, Linearizable},
		{"unknown set took effect late", []history.Op{
			set(0, "x", unknown, 0, 1), get(1, "", notFound, 5, 6), get(1, "x", found, 7, 8),
		}, Linearizable},
		{"unknown set cannot undo itself", []history.Op{
			set(0, "a", ok, 0, 1), set(1, "b", unknown, 2, 3), get(2, "b", found, 4, 5), get(2, "a", found, 6, 7),
		}, NotLinearizable},
		{"unknown set before its call", []history.Op{get(1, "x", found, 0, 1), set(0, "x", unknown, 2, 3)}, NotLinearizable},
		// Definite errors never happened.
		{"failed set is never read", []history.Op{set(0, "x", failed, 0, 1), get(1, "x", found, 2, 3)}, NotLinearizable},
		{"failed set leaves the old value", []history.Op{
			set(0, "a", ok, 0, 1), set(0, "x", failed, 2, 3), get(1, "a", found, 4, 5),
		}, Linearizable},
		{"failed get tells nothing", []history.Op{set(0, "a", ok, 0, 1), get(1, "", failed, 2, 3), get(1, "", unknown, 4, 5)}, Linearizable},
		// DEL.
		{"delete then not found", []history.Op{set(0, "a", ok, 0, 1), del(0, ok, 2, 3), get(1, "", notFound, 4, 5)}, Linearizable},
		{"deleted value read", []history.Op{set(0, "a", ok, 0, 1), del(0, ok, 2, 3), get(1, "a", found, 4, 5)}, NotLinearizable},
		{"delete of a missing id says not found", []history.Op{del(0, notFound, 0, 1)}, Linearizable},
		{"delete of a missing id says ok", []history.Op{del(0, ok, 0, 1)}, NotLinearizable},
		{"delete of a present id says not found", []history.Op{set(0, "a", ok, 0, 1), del(0, notFound, 2, 3)}, NotLinearizable},
		{"unknown delete that took effect", []history.Op{set(0, "a", ok, 0, 1), del(0, unknown, 2, 3), get(1, "", notFound, 4, 5)}, Linearizable},
		{"unknown delete that did not", []history.Op{set(0, "a", ok, 0, 1), del(0, unknown, 2, 3), get(1, "a", found, 4, 5)}, Linearizable},
		{"unknown delete cannot undo itself", []history.Op{
			set(0, "a", ok, 0, 1), del(0, unknown, 2, 3), get(1, "", notFound, 4, 5), get(1, "a", found, 6, 7),
		}, NotLinearizable},
		{"failed delete never happened", []history.Op{set(0, "a", ok, 0, 1), del(0, failed, 2, 3), get(1, "", notFound, 4, 5)}, NotLinearizable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.ops, 10*time.Second)
			if r.Verdict != tt.want {
				t.Fatalf("verdict %q, want %q", r.Verdict, tt.want)
			}
			if tt.want == NotLinearizable && !slices.Equal(r.BadIDs, []int64{1}) {
				t.Errorf("bad ids %v, want [1]", r.BadIDs)
			}
		})
	}
}

// TestCheckNamesTheBadRegister: only the id whose history is wrong is
// named.
func TestCheckNamesTheBadRegister(t *testing.T) {
	var ops []history.Op
	for id := int64(1); id <= 5; id++ {
		s := set(0, "a", ok, 0, 1)
		g := get(1, "a", found, 2, 3)
		if id == 4 {
			g = get(1, "", notFound, 2, 3)
		}
		s.ID, g.ID = id, id
		ops = append(ops, s, g)
	}
	r := Check(ops, 10*time.Second)
	if r.Verdict != NotLinearizable || !slices.Equal(r.BadIDs, []int64{4}) {
		t.Fatalf("verdict %q bad ids %v, want not linearizable on [4]", r.Verdict, r.BadIDs)
	}
}

func TestOperationsEndUnknownWrites(t *testing.T) {
	ops := Operations([]history.Op{
		set(0, "a", unknown, 0, 1), get(1, "a", found, 2, 5), get(2, "", unknown, 3, 4), set(3, "b", failed, 6, 7),
	})
	if len(ops) != 2 {
		t.Fatalf("%d operations, want 2 (the failed SET and the unanswered GET left out)", len(ops))
	}
	if end := int64(7*time.Millisecond) + 1; ops[0].Return != end {
		t.Errorf("unknown SET returns at %d, want the end of the history %d", ops[0].Return, end)
	}
}

func TestVisualize(t *testing.T) {
	r := Check([]history.Op{set(0, "a", ok, 0, 10), get(1, "", notFound, 20, 30)}, 10*time.Second)
	path := filepath.Join(t.TempDir(), "history.html")
	if err := r.Visualize(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "<html") || !strings.Contains(string(data), "SET 1 a") {
		t.Errorf("visualization lacks the history:\n%.300s", data)
	}
	if err := (Result{}).Visualize(path); err == nil {
		t.Error("Visualize without a check succeeded")
	}
}
