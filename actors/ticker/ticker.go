// Package ticker sends an actor the same message at a fixed interval until
// it is stopped. It stands in for protoactor's scheduler.SendRepeatedly,
// whose timer callback reads its cancellation state without
// synchronisation: the race detector reports it whenever an actor stops
// its timer while the timer fires (seen failing `make test` in
// actors/member), and the callback may still send one message after the
// cancel returned.
package ticker

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Sender is what a ticker sends through: an actor system's root context
// (actor.RootContext) in production. Send must not block for long; a
// local actor's mailbox never does.
type Sender interface {
	Send(pid *actor.PID, message interface{})
}

// Every sends message to pid through sender after first and then every
// interval, from a goroutine of its own, until the returned stop is
// called. stop waits for that goroutine to end, so nothing is sent after
// it returns; it may be called more than once, from any goroutine (an
// actor calls it from Receive when it stops or restarts). A first of
// zero sends at once.
func Every(sender Sender, first, interval time.Duration, pid *actor.PID, message interface{}) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		timer := time.NewTimer(first)
		defer timer.Stop()
		for {
			select {
			case <-done:
				return
			case <-timer.C:
			}
			select {
			case <-done: // stopped while the timer fired: send nothing more
				return
			default:
			}
			sender.Send(pid, message)
			timer.Reset(interval)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-ended
	}
}
