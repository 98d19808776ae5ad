package leader

import (
	"github.com/tolerex/tolerex/actors/consensus"
)

// Reads are linearizable: before it reads the index for a GET, the leader
// confirms through consensus that it still leads (a read barrier: Raft
// ReadIndex, then wait until the state machine applied that far). One
// barrier is in flight at a time and serves every GET that arrived before
// it was asked for; GETs that arrive meanwhile wait for the next one, so
// under load many reads share one round of heartbeats.

// readBatches are the GETs waiting for a barrier.
type readBatches struct {
	inFlight uint64  // the barrier asked for (0: none)
	waiting  []*read // served by the barrier in flight
	next     []*read // arrived after it was asked for
}

// awaitBarrier queues a read for the next barrier, asking for one if none
// is in flight.
func (l *leader) awaitBarrier(r *read) {
	if l.reads.inFlight != 0 {
		l.reads.next = append(l.reads.next, r)
		return
	}
	l.reads.waiting = append(l.reads.waiting, r)
	l.askBarrier()
}

func (l *leader) askBarrier() {
	l.reads.inFlight = l.newRequestID()
	l.request(l.cfg.Consensus, &consensus.ReadBarrier{ID: l.reads.inFlight})
}

// barrierDone starts the reads the barrier serves, and asks for the next
// barrier for those that arrived meanwhile.
func (l *leader) barrierDone(id uint64) {
	if id == 0 || id != l.reads.inFlight {
		return // a barrier of an earlier term
	}
	ready := l.reads.waiting
	l.reads.waiting, l.reads.next, l.reads.inFlight = l.reads.next, nil, 0
	if len(l.reads.waiting) > 0 {
		l.askBarrier()
	}
	for _, r := range ready {
		l.beginRead(r)
	}
}

// barrierFailed gives the reads back to the gateways that took them: this
// gateway no longer leads (the term ends with it), so the next leader
// serves them.
func (l *leader) barrierFailed(msg *consensus.BarrierFailed) {
	if msg.ID == 0 || msg.ID != l.reads.inFlight {
		return
	}
	l.log.Debug().Str("reason", msg.Reason).Int("reads", len(l.reads.waiting)+len(l.reads.next)).Msg("read barrier failed; reads go to the next leader")
	reads := append(l.reads.waiting, l.reads.next...)
	l.reads = readBatches{}
	for _, r := range reads {
		l.giveBack(r.ref)
		r.lookedUp = true
		l.lookedUp(r.id)
	}
}
