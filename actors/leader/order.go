package leader

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/messages"
)

// Requests on one id run in arrival order: while a SET or DEL of an id is
// in progress, later requests on that id wait behind it. A client that
// pipelines `SET 7 a` and `GET 7` therefore reads its own write, and two
// writes of one id never race. Requests on different ids run concurrently,
// and so do GETs of an id that no write holds.

// idQueue holds the requests waiting for an id's write to finish.
type idQueue struct {
	waiting []queued
}

type queued struct {
	client *actor.PID
	req    *messages.ClientRequest
}

// admit starts a request now or queues it behind the id's write.
func (l *leader) admit(ctx actor.Context, client *actor.PID, req *messages.ClientRequest) {
	if q, busy := l.busy[req.GetId()]; busy {
		q.waiting = append(q.waiting, queued{client: client, req: req})
		return
	}
	l.dispatch(ctx, client, req)
}

// dispatch starts a request; a write marks its id busy until finish.
func (l *leader) dispatch(ctx actor.Context, client *actor.PID, req *messages.ClientRequest) {
	switch req.GetOp() {
	case messages.Op_OP_GET:
		l.startRead(ctx, client, req)
	case messages.Op_OP_SET:
		l.busy[req.GetId()] = &idQueue{}
		l.startWrite(ctx, client, req)
	case messages.Op_OP_DEL:
		l.busy[req.GetId()] = &idQueue{}
		l.startDelete(ctx, client, req)
	}
}

// finish ends the write holding id and starts what waited for it: every
// GET up to the next write, and that write.
func (l *leader) finish(ctx actor.Context, id int64) {
	q, busy := l.busy[id]
	if !busy {
		return
	}
	delete(l.busy, id)
	for i, next := range q.waiting {
		l.dispatch(ctx, next.client, next.req)
		if next.req.GetOp() == messages.Op_OP_GET {
			continue
		}
		if held, busy := l.busy[id]; busy {
			held.waiting = append(held.waiting, q.waiting[i+1:]...)
			return
		}
		// That write finished at once (a DEL of a missing id, a write that
		// failed straight away) and released the id: go on.
	}
}

// failQueued answers every waiting request with an error.
func (l *leader) failQueued(ctx actor.Context, reason string) {
	for _, q := range l.busy {
		for _, w := range q.waiting {
			l.replyError(ctx, w.client, w.req.GetRequestId(), reason)
		}
	}
	l.busy = nil
}
