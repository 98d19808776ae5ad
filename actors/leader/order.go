package leader

import (
	"time"

	"github.com/tolerex/tolerex/messages"
)

// Requests on one id run in arrival order: while a SET or DEL of an id is
// in progress, later requests on that id wait behind it, and a SET or DEL
// waits for the GETs before it to have looked the id up (after their read
// barrier). A client that pipelines `SET 7 a`, `GET 7` and `DEL 7`
// therefore reads its own write, and not the delete that follows, and two
// writes of one id never race. Requests on different ids run
// concurrently, and so do GETs of an id that no write holds.

// idQueues keeps, for every id requests work on, what is in progress and
// what waits. It is pure: it says which requests may start, and the leader
// starts them.
type idQueues struct {
	byID map[int64]*idQueue
}

// idQueue is the state of one id that requests are working on.
type idQueue struct {
	writing bool // a SET or DEL of the id is in progress
	reading int  // GETs of the id that have not looked it up yet
	waiting []queued
}

type queued struct {
	ref clientRef
	req *messages.ClientRequest
}

func newIDQueues() idQueues { return idQueues{byID: make(map[int64]*idQueue)} }

// admit takes a request: it returns true if it may start now (it is
// recorded as started), false if it waits behind requests on its id it
// must not overtake.
func (qs idQueues) admit(ref clientRef, req *messages.ClientRequest) bool {
	id := req.GetId()
	q := qs.byID[id]
	if q == nil {
		q = &idQueue{}
		qs.byID[id] = q
	}
	if len(q.waiting) > 0 || !q.mayStart(req.GetOp()) {
		q.waiting = append(q.waiting, queued{ref: ref, req: req})
		return false
	}
	q.start(req.GetOp())
	return true
}

// finished records that the write of id ended, and returns the waiting
// requests that may start now, in order (recorded as started).
func (qs idQueues) finished(id int64) []queued {
	q := qs.byID[id]
	if q == nil || !q.writing {
		return nil
	}
	q.writing = false
	return qs.drain(id, q)
}

// lookedUp records that a GET of id looked it up (a write after it may
// start now), and returns the waiting requests that may start.
func (qs idQueues) lookedUp(id int64) []queued {
	q := qs.byID[id]
	if q == nil || q.reading == 0 {
		return nil
	}
	q.reading--
	return qs.drain(id, q)
}

// mayStart says whether a request of op may start now: a write needs the
// id to itself, a read only no write in progress.
func (q *idQueue) mayStart(op messages.Op) bool {
	if op == messages.Op_OP_GET {
		return !q.writing
	}
	return !q.writing && q.reading == 0
}

func (q *idQueue) start(op messages.Op) {
	if op == messages.Op_OP_GET {
		q.reading++
	} else {
		q.writing = true
	}
}

// drain takes the waiting requests that may start, in order, and forgets
// an id nothing works on any more.
func (qs idQueues) drain(id int64, q *idQueue) []queued {
	var out []queued
	for len(q.waiting) > 0 && q.mayStart(q.waiting[0].req.GetOp()) {
		next := q.waiting[0]
		q.waiting = q.waiting[1:]
		q.start(next.req.GetOp())
		out = append(out, next)
	}
	if !q.writing && q.reading == 0 && len(q.waiting) == 0 {
		delete(qs.byID, id)
	}
	return out
}

// admit starts a request now or queues it.
func (l *leader) admit(ref clientRef, req *messages.ClientRequest) {
	if l.busy.admit(ref, req) {
		l.dispatch(ref, req)
	}
}

// dispatch starts a request the queues let start.
func (l *leader) dispatch(ref clientRef, req *messages.ClientRequest) {
	switch req.GetOp() {
	case messages.Op_OP_GET:
		l.startRead(ref, req)
	case messages.Op_OP_SET:
		if !l.answeredBefore(ref, req) {
			l.startWrite(ref, req)
		}
	case messages.Op_OP_DEL:
		if !l.answeredBefore(ref, req) {
			l.startDelete(ref, req)
		}
	}
}

// answeredBefore answers a SET or DEL whose request the state machine has
// applied already, with what it did then: a gateway sends a request again
// to the next leader when its leader changed, and the first attempt may
// have been committed by a leader that stepped down before it answered.
// A new attempt must not start: it could fail before it is proposed and
// be answered with a definite error although the first attempt took
// effect (the fault suite found this: partitions, seed 95004). A request
// too old for the window to tell is answered outcome unknown.
func (l *leader) answeredBefore(ref clientRef, req *messages.ClientRequest) bool {
	code, applied, tooLate := l.state.RequestOutcome(ref.id())
	switch {
	case applied:
		l.reply(ref, &messages.ClientReply{Code: code})
	case tooLate:
		l.replyError(ref, tooLateReply)
	default:
		return false
	}
	l.log.Info().Int64("id", req.GetId()).Stringer("op", req.GetOp()).Uint64("origin", ref.origin).Uint64("seq", ref.seq).
		Bool("too_late", tooLate).Msg("a request sent again had applied already; answered from the state machine")
	l.finish(req.GetId())
	return true
}

// finish ends the write of id and starts what waited for it.
func (l *leader) finish(id int64) {
	delete(l.resent, id)
	for _, next := range l.busy.finished(id) {
		l.dispatch(next.ref, next.req)
	}
}

// lookedUp records that a GET of id has looked it up and starts what
// waited for that.
func (l *leader) lookedUp(id int64) {
	for _, next := range l.busy.lookedUp(id) {
		l.dispatch(next.ref, next.req)
	}
}

// startDelete proposes a delete of id; its outcome (OK, or NOT_FOUND if
// the id was not indexed when it applied) comes with the applied entry.
// It is proposed even for an id not indexed now: only the log knows
// whether an earlier write of it will have applied first.
func (l *leader) startDelete(ref clientRef, msg *messages.ClientRequest) {
	entry := &messages.LogEntry{
		Entry:   &messages.LogEntry_Delete{Delete: &messages.DeleteEntry{Id: msg.GetId(), Version: l.mintVersion()}},
		Request: ref.id(),
	}
	p := &proposal{entry: entry, ref: ref, started: time.Now()}
	if err := l.propose(p); err != nil {
		l.rejectedProposal(p, "internal error: the delete was "+err.Error()+"; nothing changed")
	}
}
