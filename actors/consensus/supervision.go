package consensus

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
)

// Strategy supervises the consensus actor: every crash is logged at error
// level with its panic value and stack, and the actor is restarted (it
// reopens the Raft log and rebuilds the state machine from it) at most
// maxRestarts times a minute. One that keeps crashing is stopped, and
// health says why, so the gateway's /readyz gives the reason rather than
// "no Raft leader known". Spawn the actor with
// root.Copy().WithGuardian(Strategy(log, health)).
func Strategy(log zerolog.Logger, health *Health) actor.SupervisorStrategy {
	return &strategy{log: log, health: health}
}

type strategy struct {
	log    zerolog.Logger
	health *Health
}

const (
	maxRestarts   = 10
	restartWindow = time.Minute
)

// HandleFailure restarts the crashed actor, or stops it for good.
func (s *strategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	rs.Fail()
	failures := rs.NumberOfFailures(restartWindow)
	text, stack := tree.Reason(reason)
	log := s.log.With().Str("actor", child.Id).Str("reason", text).Str("stack", stack).Int("failures_in_window", failures).Logger()
	if failures > maxRestarts {
		log.Error().Msg("consensus keeps crashing; stopping it: this gateway takes no part in the Raft group until it is restarted")
		if s.health != nil {
			s.health.setProblem(fmt.Sprintf("consensus stopped after %d crashes within %s (restart the gateway); last: %s", failures, restartWindow, text))
		}
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	log.Error().Msg("consensus crashed; restarting it from the Raft log")
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
	sup.RestartChildren(child)
}
