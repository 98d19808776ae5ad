package cluster

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Ask sends msg to the actor at pid and waits up to timeout for its reply,
// which must be a T. The error is the future's (a timeout, a dead letter)
// or names the unexpected reply's type; callers add what they asked.
func Ask[T any](root *actor.RootContext, pid *actor.PID, msg any, timeout time.Duration) (T, error) {
	var reply T
	res, err := root.RequestFuture(pid, msg, timeout).Result()
	if err != nil {
		return reply, err
	}
	reply, ok := res.(T)
	if !ok {
		return reply, fmt.Errorf("unexpected reply %T", res)
	}
	return reply, nil
}
