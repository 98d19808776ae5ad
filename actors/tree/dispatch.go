package tree

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Dispatcher runs actor mailboxes on a pool of long-lived goroutines.
// protoactor's default dispatcher starts a new goroutine every time an
// idle mailbox gets a message; its small initial stack then grows (and is
// copied) on every message's way through the actor, which cost 15% of the
// gateway's CPU under load (runtime.newstack in the profile). Pool workers
// keep their grown stacks. Schedule never blocks: when no worker is idle,
// the mailbox gets a new goroutine, which joins the pool afterwards while
// the pool is smaller than its maximum.
type Dispatcher struct {
	work       chan func()
	throughput int
	workers    atomic.Int64
	maxWorkers int64
}

// NewDispatcher returns a dispatcher whose pool grows up to maxWorkers
// goroutines; each runs a mailbox for up to throughput messages before
// yielding (protoactor's default is 300).
func NewDispatcher(maxWorkers, throughput int) *Dispatcher {
	return &Dispatcher{work: make(chan func()), throughput: throughput, maxWorkers: int64(maxWorkers)}
}

// Schedule implements actor.Dispatcher.
func (d *Dispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn: // an idle worker took it
	default:
		go d.run(fn)
	}
}

// run runs fn, then serves the pool if it has room, else ends.
func (d *Dispatcher) run(fn func()) {
	fn()
	if d.workers.Add(1) > d.maxWorkers {
		d.workers.Add(-1)
		return
	}
	for fn := range d.work {
		fn()
	}
}

// Throughput implements actor.Dispatcher.
func (d *Dispatcher) Throughput() int { return d.throughput }

var _ actor.Dispatcher = (*Dispatcher)(nil)
