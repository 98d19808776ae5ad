package consensus

import (
	"encoding/binary"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
)

// barriers tracks ReadBarrier requests through Raft's ReadIndex: each gets
// a request context of its own; once a quorum confirms the leader's
// leadership Raft answers with the commit index of that moment, and the
// barrier is released when the state machine has applied that far. Raft
// gives no error for a ReadIndex it will not answer (a leader that steps
// down forgets its pending ones), so one unanswered for barrierRetryTicks
// is asked again under a fresh context and an answer to the old one is
// ignored. On the leader that is a defence: a step-down, the one case
// known, fails every barrier (failAll).
type barriers struct {
	nextCtx uint64
	byCtx   map[uint64]*barrier
	ready   []*barrier // confirmed, waiting for the state machine
}

type barrier struct {
	id        uint64
	requester *actor.PID
	ctx       uint64
	askedTick uint64
	index     uint64
	asked     time.Time // first asked, for the latency metric
}

// barrierRetryTicks is how many ticks a ReadIndex may stay unanswered
// before it is asked again: a few heartbeat rounds.
const barrierRetryTicks = 4

// sender is what barriers need of an actor.Context: answering requesters.
type sender interface {
	Send(pid *actor.PID, message interface{})
}

func newBarriers() *barriers { return &barriers{byCtx: make(map[uint64]*barrier)} }

// add asks Raft to confirm leadership for a barrier.
func (b *barriers) add(ctx sender, n *node, id uint64, requester *actor.PID) {
	if !n.isLeader || !n.ready {
		ctx.Send(requester, &BarrierFailed{ID: id, Reason: "not the Raft leader"})
		return
	}
	br := &barrier{id: id, requester: requester, asked: time.Now()}
	b.ask(n, br)
}

func (b *barriers) ask(n *node, br *barrier) {
	b.nextCtx++
	br.ctx, br.askedTick = b.nextCtx, n.ticks
	b.byCtx[br.ctx] = br
	var rctx [8]byte
	binary.BigEndian.PutUint64(rctx[:], br.ctx)
	n.rn.ReadIndex(rctx[:])
}

// confirmed takes Raft's answers.
func (b *barriers) confirmed(states []raft.ReadState) {
	for _, rs := range states {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		ctxID := binary.BigEndian.Uint64(rs.RequestCtx)
		br, ok := b.byCtx[ctxID]
		if !ok {
			continue
		}
		delete(b.byCtx, ctxID)
		br.index = rs.Index
		b.ready = append(b.ready, br)
	}
}

// release answers the confirmed barriers the state machine has caught up
// with.
func (b *barriers) release(ctx sender, applied uint64, m *Metrics) {
	kept := b.ready[:0]
	for _, br := range b.ready {
		if br.index <= applied {
			ctx.Send(br.requester, &BarrierDone{ID: br.id})
			if m != nil {
				m.ReadIndexSeconds.Observe(time.Since(br.asked).Seconds())
			}
			continue
		}
		kept = append(kept, br)
	}
	clear(b.ready[len(kept):])
	b.ready = kept
}

// retry asks again for barriers Raft left unanswered.
func (b *barriers) retry(n *node) {
	if !n.isLeader {
		return
	}
	var stale []*barrier
	for ctxID, br := range b.byCtx {
		if n.ticks-br.askedTick >= barrierRetryTicks {
			delete(b.byCtx, ctxID)
			stale = append(stale, br)
		}
	}
	for _, br := range stale {
		b.ask(n, br)
	}
}

// failAll answers every barrier with a failure.
func (b *barriers) failAll(ctx sender, reason string) {
	for _, br := range b.byCtx {
		ctx.Send(br.requester, &BarrierFailed{ID: br.id, Reason: reason})
	}
	for _, br := range b.ready {
		ctx.Send(br.requester, &BarrierFailed{ID: br.id, Reason: reason})
	}
	clear(b.byCtx)
	b.ready = nil
}
