package leader

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// requestKey is a client request's RequestId as a map key.
type requestKey struct{ origin, seq uint64 }

func keyOf(id *messages.RequestId) (requestKey, bool) {
	if id.GetOrigin() == 0 {
		return requestKey{}, false
	}
	return requestKey{origin: id.GetOrigin(), seq: id.GetSeq()}, true
}

// clientRef is a client request as the coordinator sees it: its id, and
// where the answer goes (the leader actor of the gateway that took it, or
// nil for this gateway's own sessions).
type clientRef struct {
	origin, seq uint64
	to          *actor.PID
	windowEnd   uint64 // RequestId's window_end
	// bytes is the request's message bytes (heldBytes), counted in the
	// term's writeRoom while the coordinator holds the request.
	bytes int64
}

func (r clientRef) valid() bool     { return r.origin != 0 }
func (r clientRef) key() requestKey { return requestKey{origin: r.origin, seq: r.seq} }
func (r clientRef) id() *messages.RequestId {
	return &messages.RequestId{Origin: r.origin, Seq: r.seq, WindowEnd: r.windowEnd}
}

// fromSession takes requests from one of this gateway's sessions.
func (l *leader) fromSession(session *actor.PID, reqs []*messages.ClientRequest) {
	if l.unavailable != "" {
		for _, req := range reqs {
			l.toSession(session, &messages.ClientReply{RequestId: req.GetRequestId(), Code: messages.ReplyCode_REPLY_ERROR, Error: l.unavailable})
		}
		return
	}
	now, applied := l.wall(), l.state.RequestCount()
	for i, req := range reqs {
		if l.cfg.FaultInjection && req.GetOp() == messages.Op_OP_SET && string(req.GetPayload()) == PanicMessage {
			l.route() // the requests before it are on their way
			l.log.Warn().Int("position", i).Int("batch", len(reqs)).Msg("fault injection: leader panics in the middle of a batch")
			panic("injected leader fault in the middle of a batch")
		}
		l.router.accept(session, req, now, applied, l.heldBytes(req))
	}
	l.route()
}

// heldBytes is the message bytes the active leader holds while it works
// on req, as its writeRoom and a forwarding gateway's window count them:
// a SET's message, and the reply of a GET, which the leader brings back
// from a member and, for another gateway's client, sends on to that
// gateway (the stored size, as this gateway's state machine knows it
// now; 0 for an id it does not know). Without the GET replies counted,
// 48 connections reading 4 MB messages left the leader holding 0.7-0.9
// GB, and the replies queued ahead of its Raft heartbeats to the
// gateways they went to.
func (l *leader) heldBytes(req *messages.ClientRequest) int64 {
	switch req.GetOp() {
	case messages.Op_OP_SET:
		return int64(len(req.GetPayload()))
	case messages.Op_OP_GET:
		return int64(l.state.Size(req.GetId()))
	default:
		return 0
	}
}

// route sends every request that waits to be sent to the active leader:
// this gateway's coordinator if it is active, the leader actor of the
// gateway that leads otherwise. Without a known leader they wait.
func (l *leader) route() {
	forward := !l.active && l.lead.Lead != 0 && !l.lead.Local && l.lead.LeadAddress != ""
	if !l.active && !forward {
		return // nowhere to send them yet
	}
	unsent := l.router.unsent()
	if len(unsent) == 0 {
		return
	}
	now := l.wall()
	switch {
	case l.active:
		for _, rt := range unsent {
			bytes := rt.bytes()
			if !l.room.admits(l.router.origin, bytes) {
				l.localWaits = true
				break // in order: the rest wait for room too
			}
			windowEnd := l.router.sending(rt, localRoute, now)
			l.handle(clientRef{origin: l.router.origin, seq: rt.seq, windowEnd: windowEnd, bytes: bytes}, rt.req)
		}
	case forward:
		to := actor.NewPID(l.lead.LeadAddress, messages.LeaderActor)
		for _, rt := range unsent {
			if !l.router.mayForward(rt, now, busyPause) {
				break // in order: the rest wait for room too
			}
			windowEnd := l.router.sending(rt, l.lead.LeadAddress, now)
			l.queueForward(to, &messages.ForwardedRequest{Seq: rt.seq, Request: rt.req, WindowEnd: windowEnd})
		}
	}
}

// forwarded takes requests another gateway sent to this one as the
// leader. An inactive leader takes none: it says so, and the sender sends
// them again to the leader it learns of. A probe is answered "not taken"
// unless the request it names is held here; a new request that does not
// fit the term's writeRoom is answered "busy".
func (l *leader) forwarded(from *actor.PID, b *messages.ForwardBatch) {
	if from == nil || b.GetOrigin() == 0 {
		return
	}
	if l.active && !l.toldProbes[from.Address] {
		// Tell the gateway now that this leader answers probes (every
		// answer batch names its sender): until it knows, it re-sends
		// unanswered requests whole after forwardRetry, and a first answer
		// can take longer than that under load, doubling the bytes queued
		// ahead of the Raft messages on its connection.
		l.toldProbes[from.Address] = true
		l.forwardReplyBatch(from)
	}
	for _, fr := range b.GetRequests() {
		ref := clientRef{origin: b.GetOrigin(), seq: fr.GetSeq(), to: from, windowEnd: fr.GetWindowEnd(),
			bytes: l.heldBytes(fr.GetRequest())}
		_, held := l.inProgress[ref.key()]
		switch {
		case !l.active || (fr.GetProbe() && !held):
			l.queueForwardReply(from, &messages.ForwardedReply{Seq: fr.GetSeq()})
		case fr.GetProbe():
			// held: its answer will come
		case !held && !l.room.admits(ref.origin, ref.bytes):
			l.queueForwardReply(from, &messages.ForwardedReply{Seq: fr.GetSeq(), Busy: true})
			if m := l.cfg.Metrics; m != nil {
				m.ForwardsBusy.Inc()
			}
		default:
			l.handle(ref, fr.GetRequest())
		}
	}
}

// forwardReplies takes the active leader's answers to requests this
// gateway forwarded.
func (l *leader) forwardReplies(b *messages.ForwardReplyBatch) {
	if sender := b.GetSender(); sender != "" {
		l.answersProbes[sender] = true
	}
	answered := false
	for _, r := range b.GetReplies() {
		switch {
		case r.GetBusy():
			l.router.busy(r.GetSeq(), l.wall()) // sent again when there is room
		case r.GetReply() == nil:
			l.router.notTaken(r.GetSeq()) // sent again on the next tick
		default:
			l.answerLocal(r.GetSeq(), r.GetReply())
			answered = true
		}
	}
	if answered && l.router.windowed {
		l.route() // room was freed for requests that wait for it
	}
}

// handle starts a client request in the coordinator, unless it already
// works on it (sent twice: the first one's answer serves both).
func (l *leader) handle(ref clientRef, req *messages.ClientRequest) {
	key := ref.key()
	if _, dup := l.inProgress[key]; dup {
		return
	}
	l.inProgress[key] = ref
	if ref.bytes > 0 {
		l.room.take(ref.origin, ref.bytes)
		l.showForwardedBytes()
	}
	switch req.GetOp() {
	case messages.Op_OP_SET, messages.Op_OP_GET, messages.Op_OP_DEL:
		l.admit(ref, req)
	default:
		l.replyError(ref, "unknown operation "+req.GetOp().String())
	}
}

// reply answers a client request the coordinator held.
func (l *leader) reply(ref clientRef, r *messages.ClientReply) {
	if !ref.valid() {
		return
	}
	l.drop(ref)
	if ref.to == nil {
		l.answerLocal(ref.seq, r)
		return
	}
	l.queueForwardReply(ref.to, &messages.ForwardedReply{Seq: ref.seq, Reply: r})
}

func (l *leader) replyError(ref clientRef, reason string) {
	l.reply(ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_ERROR, Error: reason})
}

// giveBack returns a request the coordinator will not finish to the
// gateway that took it, which sends it to the next leader.
func (l *leader) giveBack(ref clientRef) {
	if !ref.valid() {
		return
	}
	l.drop(ref)
	if ref.to == nil {
		l.router.notTaken(ref.seq)
		return
	}
	l.queueForwardReply(ref.to, &messages.ForwardedReply{Seq: ref.seq})
}

// drop forgets a client request the coordinator held, and frees its room
// if another gateway forwarded it.
func (l *leader) drop(ref clientRef) {
	key := ref.key()
	held, ok := l.inProgress[key]
	if !ok {
		return
	}
	delete(l.inProgress, key)
	if held.bytes > 0 {
		l.room.release(held.origin, held.bytes)
		l.showForwardedBytes()
	}
}

// recount counts a request the coordinator holds at n bytes if that is
// more than the room counted for it. A GET is counted at the size this
// gateway's state machine knew when the request reached it (heldBytes);
// a SET committed since may have grown the message the read brings
// back. The read goes ahead (it was admitted), but the room takes the
// growth, so it admits nothing more than it would have until the bytes
// are freed, which frees all that was taken.
func (l *leader) recount(ref *clientRef, n int64) {
	if !ref.valid() {
		return
	}
	held, ok := l.inProgress[ref.key()]
	if !ok || n <= held.bytes {
		return
	}
	l.room.take(ref.origin, n-held.bytes)
	held.bytes, ref.bytes = n, n
	l.inProgress[ref.key()] = held
	l.showForwardedBytes()
}

// routeWaiting routes this gateway's own requests that wait for room in
// the leader's writeRoom, once some was freed.
func (l *leader) routeWaiting() {
	if l.localWaits && l.room.freed {
		l.localWaits, l.room.freed = false, false
		l.route()
	}
}

// showForwardedBytes sets the gauge of the bytes held for other gateways.
func (l *leader) showForwardedBytes() {
	if m := l.cfg.Metrics; m != nil {
		m.ForwardedBytes.Set(float64(l.room.total - l.room.heldBy(l.router.origin)))
	}
}

// answerLocal delivers the answer to one of this gateway's requests to its
// session.
func (l *leader) answerLocal(seq uint64, r *messages.ClientReply) {
	rt := l.router.answered(seq)
	if rt == nil {
		return // answered already, or expired
	}
	reply := &messages.ClientReply{RequestId: rt.request, Code: r.GetCode(), Payload: r.GetPayload(), Error: r.GetError()}
	if unsure, ok := notDefiniteAfterResend(rt, r); ok {
		reply.Error = unsure
	}
	l.toSession(rt.session, reply)
}

// notDefiniteAfterResend turns a definite error for a write that was sent
// to a leader more than once into an unknown outcome. The error speaks for
// the attempt it answers only: another attempt may still be on its way or
// in the log (sent again because the first went unanswered for
// forwardRetry, or because the leader changed), and the state machine
// applies whichever attempt reaches it first. (The fault suite caught
// this: a SET whose copies took the whole store timeout was answered
// "could not store" while the forwarding gateway's second attempt, sent
// just before that answer arrived, succeeded.) It returns the new error
// text, and false if the reply stands.
func notDefiniteAfterResend(rt *routed, r *messages.ClientReply) (string, bool) {
	if rt.sends < 2 || rt.req.GetOp() == messages.Op_OP_GET || r.GetCode() != messages.ReplyCode_REPLY_ERROR ||
		codec.ClassifyError(r.GetError()) != codec.Definite {
		return "", false
	}
	return "outcome unknown: this request was sent to a leader more than once and one attempt failed (" + r.GetError() +
		"), but another may still take effect; read the id to see whether it took effect", true
}

// expireRouted answers the requests whose deadline passed.
func (l *leader) expireRouted(now time.Time) {
	for _, rt := range l.router.expire(now) {
		l.toSession(rt.session, expiredReply(rt, l.lead.Lead != 0 && l.lead.LeadAddress != ""))
	}
}
