package leader

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/messages"
)

// Requests on one id run in arrival order: while a SET or DEL of an id is
// in progress, later requests on that id wait behind it, and a SET or DEL
// waits for the GETs before it to have looked the id up (after their read
// barrier). A client that pipelines `SET 7 a`, `GET 7` and `DEL 7`
// therefore reads its own write, and not the delete that follows, and two
// writes of one id never race. Requests on different ids run
// concurrently, and so do GETs of an id that no write holds.

// idQueue is the state of an id that requests are working on.
type idQueue struct {
	writing bool // a SET or DEL of the id is in progress
	reading int  // GETs of the id that have not looked it up yet
	waiting []queued
}

type queued struct {
	ref clientRef
	req *messages.ClientRequest
}

// admit starts a request now or queues it behind the requests on its id
// it must not overtake.
func (l *leader) admit(ctx actor.Context, ref clientRef, req *messages.ClientRequest) {
	id := req.GetId()
	q := l.busy[id]
	if q == nil {
		q = &idQueue{}
		l.busy[id] = q
	}
	if len(q.waiting) > 0 || !q.mayStart(req.GetOp()) {
		q.waiting = append(q.waiting, queued{ref: ref, req: req})
		return
	}
	l.dispatch(ctx, q, ref, req)
}

// mayStart says whether a request of op may start now: a write needs the
// id to itself, a read only no write in progress.
func (q *idQueue) mayStart(op messages.Op) bool {
	if op == messages.Op_OP_GET {
		return !q.writing
	}
	return !q.writing && q.reading == 0
}

// dispatch starts a request and records it on its id.
func (l *leader) dispatch(ctx actor.Context, q *idQueue, ref clientRef, req *messages.ClientRequest) {
	switch req.GetOp() {
	case messages.Op_OP_GET:
		q.reading++
		l.startRead(ctx, ref, req)
	case messages.Op_OP_SET:
		q.writing = true
		l.startWrite(ctx, ref, req)
	case messages.Op_OP_DEL:
		q.writing = true
		l.startDelete(ctx, ref, req)
	}
}

// finish ends the write of id and starts what waited for it.
func (l *leader) finish(ctx actor.Context, id int64) {
	if q := l.busy[id]; q != nil && q.writing {
		q.writing = false
		l.drain(ctx, id, q)
	}
}

// lookedUp records that a GET of id has looked it up: a write waiting for
// it may start.
func (l *leader) lookedUp(ctx actor.Context, id int64) {
	if q := l.busy[id]; q != nil && q.reading > 0 {
		q.reading--
		l.drain(ctx, id, q)
	}
}

// drain starts the waiting requests that may start, in order, and forgets
// an id nothing works on any more.
func (l *leader) drain(ctx actor.Context, id int64, q *idQueue) {
	for len(q.waiting) > 0 && q.mayStart(q.waiting[0].req.GetOp()) {
		next := q.waiting[0]
		q.waiting = q.waiting[1:]
		l.dispatch(ctx, q, next.ref, next.req)
	}
	if !q.writing && q.reading == 0 && len(q.waiting) == 0 && l.busy[id] == q {
		delete(l.busy, id)
	}
}

// startDelete proposes a delete of id; its outcome (OK, or NOT_FOUND if
// the id was not indexed when it applied) comes with the applied entry.
// It is proposed even for an id not indexed now: only the log knows
// whether an earlier write of it will have applied first.
func (l *leader) startDelete(ctx actor.Context, ref clientRef, msg *messages.ClientRequest) {
	entry := &messages.LogEntry{
		Entry:   &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: msg.GetId(), Version: l.mintVersion(ctx)}},
		Request: ref.id(),
	}
	p := &proposal{entry: entry, ref: ref, started: time.Now()}
	if err := l.propose(ctx, p); err != nil {
		l.rejectedProposal(ctx, p, "internal error: the delete was "+err.Error()+"; nothing changed")
	}
}
