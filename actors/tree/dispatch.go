package tree

import "github.com/asynkron/protoactor-go/actor"

// Dispatcher runs actor mailboxes on a pool of long-lived goroutines.
// protoactor's default dispatcher starts a new goroutine every time an
// idle mailbox gets a message; its small initial stack then grows (and is
// copied) on every message's way through the actor, which cost 15% of the
// gateway's CPU under load (runtime.newstack in the profile). Pool workers
// keep their grown stacks. Schedule never blocks: when no worker is idle,
// the mailbox gets a goroutine of its own, as with the default.
type Dispatcher struct {
	work       chan func()
	throughput int
}

// NewDispatcher starts workers goroutines that run mailboxes, each for up
// to throughput messages before yielding (protoactor's default is 300).
func NewDispatcher(workers, throughput int) *Dispatcher {
	d := &Dispatcher{work: make(chan func()), throughput: throughput}
	for i := 0; i < workers; i++ {
		go d.worker()
	}
	return d
}

func (d *Dispatcher) worker() {
	for fn := range d.work {
		fn()
	}
}

// Schedule implements actor.Dispatcher.
func (d *Dispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn: // an idle worker took it
	default:
		go fn()
	}
}

// Throughput implements actor.Dispatcher.
func (d *Dispatcher) Throughput() int { return d.throughput }

var _ actor.Dispatcher = (*Dispatcher)(nil)
