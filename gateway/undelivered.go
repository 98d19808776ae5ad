package gateway

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// answerUndelivered answers client requests that could not be delivered
// to the leader (its actor was stopped for good after crashing too often):
// protoactor drops a message to a stopped actor as a dead letter and, for
// a message with a sender, sends the sender an empty DeadLetterResponse
// that does not say which requests were lost. Without this, the session
// would wait for their replies forever. Nothing was run, so the error is
// definite, and it starts "gateway unavailable: " so that clients with
// several gateways' addresses send the request to the next (this gateway
// also hands its Raft leadership over: consensus.StepAside). why says why
// the leader is unavailable.
func answerUndelivered(system *actor.ActorSystem, why func() error) *eventstream.Subscription {
	return system.EventStream.Subscribe(func(evt any) {
		dead, ok := evt.(*actor.DeadLetterEvent)
		if !ok || dead.Sender == nil {
			return
		}
		if fwd, ok := dead.Message.(*messages.ForwardBatch); ok {
			// Another gateway forwarded requests to this one's stopped
			// leader actor: none ran; it sends them again.
			system.Root.Send(dead.Sender, leader.NotTaken(fwd))
			return
		}
		batch, ok := dead.Message.(*messages.ClientBatch)
		if !ok {
			return
		}
		cause := ""
		if why != nil {
			if err := why(); err != nil {
				cause = " (" + err.Error() + ")"
			}
		}
		reason := codec.UnavailablePrefix + "leader unavailable" + cause + "; the request was not run"
		replies := make([]*messages.ClientReply, len(batch.GetRequests()))
		for i, req := range batch.GetRequests() {
			replies[i] = &messages.ClientReply{RequestId: req.GetRequestId(), Code: messages.ReplyCode_REPLY_ERROR, Error: reason}
		}
		system.Root.Send(dead.Sender, &messages.ClientReplyBatch{Replies: replies})
	})
}
