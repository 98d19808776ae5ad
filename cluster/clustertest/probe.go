package clustertest

import (
	"errors"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/consensus"
)

// probe subscribes to a consensus actor and records what it reports, as
// the gateway's leader actor would receive it.
type probe struct {
	consensus *actor.PID
	events    *events
}

func (p *probe) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		ctx.Request(p.consensus, &consensus.Subscribe{})
	case *consensus.LeaderChanged:
		p.events.mu.Lock()
		p.events.changes = append(p.events.changes, *msg)
		p.events.mu.Unlock()
	case *consensus.LeadershipReady:
		p.events.mu.Lock()
		p.events.readyTerms[msg.Term] = true
		p.events.mu.Unlock()
	case *consensus.Applied:
		p.events.mu.Lock()
		p.events.applied += len(msg.Entries)
		p.events.mu.Unlock()
	case *consensus.ProposalsDropped:
		p.events.mu.Lock()
		p.events.dropped += len(msg.Entries)
		p.events.mu.Unlock()
	case *consensus.BarrierDone:
		p.events.answer(msg.ID, nil)
	case *consensus.BarrierFailed:
		p.events.answer(msg.ID, errors.New(msg.Reason))
	}
}

// events is what a probe recorded; tests read it from other goroutines.
type events struct {
	mu          sync.Mutex
	changes     []consensus.LeaderChanged
	readyTerms  map[uint64]bool
	applied     int
	dropped     int
	nextBarrier uint64
	barriers    map[uint64]chan error
}

func newEvents() *events {
	return &events{readyTerms: make(map[uint64]bool), barriers: make(map[uint64]chan error)}
}

func (e *events) leader() consensus.LeaderChanged {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.changes) == 0 {
		return consensus.LeaderChanged{}
	}
	return e.changes[len(e.changes)-1]
}

func (e *events) leaderChanges() []consensus.LeaderChanged {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]consensus.LeaderChanged(nil), e.changes...)
}

func (e *events) readyIn(term uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.readyTerms[term]
}

func (e *events) appliedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied
}

func (e *events) droppedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dropped
}

func (e *events) newBarrier() (uint64, chan error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextBarrier++
	ch := make(chan error, 1)
	e.barriers[e.nextBarrier] = ch
	return e.nextBarrier, ch
}

func (e *events) answer(id uint64, err error) {
	e.mu.Lock()
	ch, ok := e.barriers[id]
	delete(e.barriers, id)
	e.mu.Unlock()
	if ok {
		ch <- err
	}
}
