package leader

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/messages"
)

// Strategy supervises the leader: it restarts a crashed leader (which
// reloads its state from the metadata log) at most maxRestarts times a
// minute, and answers the client requests of the batch it crashed on, so
// their connections are not held up forever. Every crash is logged at
// error level with its panic value and stack. A leader that keeps crashing
// is stopped; status then says why (the gateway's /readyz), and requests
// sent to it afterwards are answered by the gateway's dead-letter handler.
// Spawn the leader with root.Copy().WithGuardian(Strategy(log, status))
// (WithGuardian changes the context it is called on).
//
// onStop, if set, runs when the leader is stopped for good: the gateway
// hands its Raft leadership to another gateway then, whose leader actor
// works.
func Strategy(log zerolog.Logger, status *Status, onStop func()) actor.SupervisorStrategy {
	return &tree.CrashBudget{
		Log: log, Max: maxRestarts, Window: restartWindow,
		Restarted: "leader crashed; restarting it from the metadata log",
		Stopped:   "leader keeps crashing; stopping it",
		OnCrash: func(system *actor.ActorSystem, message any) {
			if env, ok := message.(*actor.MessageEnvelope); ok && env.Sender != nil {
				answerCrashed(system, env.Sender, env.Message)
			}
		},
		OnStop: func(failures int, reason string) {
			if status != nil {
				status.SetProblem(fmt.Sprintf("leader stopped after %d crashes within %s; last: %s", failures, restartWindow, reason))
			}
			if onStop != nil {
				onStop()
			}
		},
	}
}

const (
	maxRestarts   = 10
	restartWindow = time.Minute
)

// outcomeUnknown answers requests whose fate a crash left open.
const outcomeUnknown = "outcome unknown: the leader crashed while handling this request; read the id to see whether it took effect"

// answerCrashed answers the client requests in the message the leader
// crashed on: their outcome is unknown (a write may have reached the log).
func answerCrashed(system *actor.ActorSystem, sender *actor.PID, msg any) {
	var requests []*messages.ClientRequest
	switch m := msg.(type) {
	case *messages.ClientRequest:
		requests = []*messages.ClientRequest{m}
	case *messages.ClientBatch:
		requests = m.GetRequests()
	case *messages.ForwardBatch:
		// Another gateway's requests: it sends them again (to this leader
		// once it restarted, or to the next): each takes effect once.
		system.Root.Send(sender, NotTaken(m))
		return
	}
	if len(requests) == 0 {
		return
	}
	replies := make([]*messages.ClientReply, len(requests))
	for i, req := range requests {
		replies[i] = &messages.ClientReply{RequestId: req.GetRequestId(), Code: messages.ReplyCode_REPLY_ERROR, Error: outcomeUnknown}
	}
	system.Root.Send(sender, &messages.ClientReplyBatch{Replies: replies})
}

// NotTaken is the answer to a forwarded batch no leader took: the
// gateway that sent it sends its requests again.
func NotTaken(b *messages.ForwardBatch) *messages.ForwardReplyBatch {
	out := &messages.ForwardReplyBatch{Replies: make([]*messages.ForwardedReply, len(b.GetRequests()))} // no sender: it answers no probes
	for i, r := range b.GetRequests() {
		out.Replies[i] = &messages.ForwardedReply{Seq: r.GetSeq()}
	}
	return out
}
