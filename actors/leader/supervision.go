package leader

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/messages"
)

// Strategy supervises the leader: it restarts a crashed leader (which
// reloads its state from the metadata log) at most maxRestarts times a
// minute, and answers the client whose request was being handled when it
// crashed, so that client's connection is not held up forever. Spawn the
// leader with root.Copy().WithGuardian(Strategy(log)) (WithGuardian changes the context it is called on).
func Strategy(log zerolog.Logger) actor.SupervisorStrategy {
	return &strategy{log: log}
}

type strategy struct {
	log zerolog.Logger
}

const (
	maxRestarts   = 10
	restartWindow = time.Minute
)

func (s *strategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason interface{}, message interface{}) {
	if env, ok := message.(*actor.MessageEnvelope); ok && env.Sender != nil {
		if req, ok := env.Message.(*messages.ClientRequest); ok {
			system.Root.Send(env.Sender, &messages.ClientReply{
				RequestId: req.GetRequestId(),
				Code:      messages.ReplyCode_REPLY_ERROR,
				Error:     "internal error in the leader; the outcome of this request is unknown",
			})
		}
	}
	rs.Fail()
	if rs.NumberOfFailures(restartWindow) > maxRestarts {
		s.log.Error().Str("actor", child.Id).Interface("reason", reason).Msg("leader keeps crashing; stopping it")
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	s.log.Error().Str("actor", child.Id).Interface("reason", reason).Msg("leader crashed; restarting it from the metadata log")
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
	sup.RestartChildren(child)
}
