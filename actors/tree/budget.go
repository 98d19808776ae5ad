package tree

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// CrashBudget is a supervisor strategy for an actor that can rebuild its
// state when restarted: it restarts the actor after a crash at most Max
// times within Window and stops it for good at the next crash. Every crash
// is logged at error level with its panic value and stack (Reason).
type CrashBudget struct {
	Log    zerolog.Logger
	Max    int
	Window time.Duration
	// Restarted and Stopped are the log messages for a crash that
	// restarts the actor and for the one that stops it.
	Restarted, Stopped string
	// OnCrash, if set, runs first on every crash, with the message the
	// actor crashed on.
	OnCrash func(system *actor.ActorSystem, message any)
	// OnStop, if set, runs when the actor is stopped for good, with the
	// crashes counted within Window and the last one's reason.
	OnStop func(failures int, reason string)
}

// HandleFailure implements actor.SupervisorStrategy.
func (b *CrashBudget) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	if b.OnCrash != nil {
		b.OnCrash(system, message)
	}
	rs.Fail()
	failures := rs.NumberOfFailures(b.Window)
	text, stack := Reason(reason)
	log := b.Log.With().Str("actor", child.Id).Str("reason", text).Str("stack", stack).Int("failures_in_window", failures).Logger()
	if failures > b.Max {
		log.Error().Msg(b.Stopped)
		if b.OnStop != nil {
			b.OnStop(failures, text)
		}
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	log.Error().Msg(b.Restarted)
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
	sup.RestartChildren(child)
}
