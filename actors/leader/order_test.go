package leader

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tolerex/tolerex/messages"
)

// opsOf builds requests from "SET 1", "GET 1", "DEL 2" ...; the ref's seq
// is the position, so tests can name them.
func opsOf(t *testing.T, specs ...string) []queued {
	t.Helper()
	var out []queued
	for i, spec := range specs {
		var op string
		var id int64
		if _, err := fmt.Sscanf(spec, "%s %d", &op, &id); err != nil {
			t.Fatalf("spec %q: %v", spec, err)
		}
		req := &messages.ClientRequest{Id: id, Op: map[string]messages.Op{"SET": messages.Op_OP_SET, "GET": messages.Op_OP_GET, "DEL": messages.Op_OP_DEL}[op]}
		out = append(out, queued{ref: clientRef{origin: 1, seq: uint64(i)}, req: req})
	}
	return out
}

// names lists the started requests by position.
func names(qs []queued) string {
	var parts []string
	for _, q := range qs {
		parts = append(parts, fmt.Sprint(q.ref.seq))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func TestIDQueuesOrderRequestsOnOneID(t *testing.T) {
	qs := newIDQueues()
	reqs := opsOf(t, "SET 7", "GET 7", "GET 7", "DEL 7", "GET 7", "SET 8", "GET 8")
	var started []queued
	for _, q := range reqs {
		if qs.admit(q.ref, q.req) {
			started = append(started, q)
		}
	}
	// The SET of 7 starts; everything on 7 waits behind it; 8 is free.
	if got := names(started); got != "[0 5]" {
		t.Fatalf("started at once %s, want [0 5] (SET 7, SET 8)", got)
	}
	// SET 7 ends: both GETs start (reads share the id), the DEL waits for
	// them to look the id up.
	if got := names(qs.finished(7)); got != "[1 2]" {
		t.Fatalf("after SET 7: %s, want [1 2]", got)
	}
	if got := names(qs.lookedUp(7)); got != "[]" {
		t.Fatalf("after one GET looked up: %s, want nothing (the other GET has not)", got)
	}
	if got := names(qs.lookedUp(7)); got != "[3]" {
		t.Fatalf("after both GETs looked up: %s, want [3] (DEL 7)", got)
	}
	// The GET after the DEL waits for it.
	if got := names(qs.finished(7)); got != "[4]" {
		t.Fatalf("after DEL 7: %s, want [4]", got)
	}
	if got := names(qs.lookedUp(7)); got != "[]" || len(qs.byID) != 1 {
		t.Fatalf("id 7 done: %s, %d ids held; want only id 8 held", got, len(qs.byID))
	}
	if got := names(qs.finished(8)); got != "[6]" {
		t.Fatalf("after SET 8: %s, want [6]", got)
	}
	qs.lookedUp(8)
	if len(qs.byID) != 0 {
		t.Fatalf("%d ids still held after every request ended", len(qs.byID))
	}
}

func TestIDQueuesReadsDoNotWaitForReads(t *testing.T) {
	qs := newIDQueues()
	for _, q := range opsOf(t, "GET 1", "GET 1", "GET 1") {
		if !qs.admit(q.ref, q.req) {
			t.Fatalf("a GET waited behind GETs")
		}
	}
	// A write arriving now waits for all three to look up; a GET after it
	// waits for the write.
	w := opsOf(t, "SET 1", "GET 1")
	if qs.admit(w[0].ref, w[0].req) || qs.admit(w[1].ref, w[1].req) {
		t.Fatal("a SET overtook GETs that had not looked up, or a GET overtook a waiting SET")
	}
	qs.lookedUp(1)
	qs.lookedUp(1)
	if got := names(qs.lookedUp(1)); got != "[0]" { // seq 0 of the second batch: the SET
		t.Fatalf("after the GETs: %s, want the SET", got)
	}
	if got := names(qs.finished(1)); got != "[1]" {
		t.Fatalf("after the SET: %s, want the GET", got)
	}
}

func TestIDQueuesIgnoreStrayEvents(t *testing.T) {
	qs := newIDQueues()
	if qs.finished(3) != nil || qs.lookedUp(3) != nil {
		t.Fatal("events for an id nothing works on started something")
	}
	q := opsOf(t, "GET 3")[0]
	qs.admit(q.ref, q.req)
	if qs.finished(3) != nil {
		t.Fatal("a write's end was taken for an id only read")
	}
}
