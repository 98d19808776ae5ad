package leader

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// router keeps every client request this gateway took, from the moment a
// session hands it over until its reply goes back. It numbers them: the
// gateway's origin and that number are the request's RequestId, which
// the state machine uses to apply a write once however often it is
// proposed. A request is routed to the active leader: this gateway's own
// coordinator while it leads, otherwise the leader actor of the gateway
// that does. When the leader changes, every request still unanswered is
// routed again, under the same id, to the new one. A request unanswered at
// its deadline is answered with an error: "outcome unknown" for a write
// (it may have been applied), a timeout for a read.
//
// router is pure bookkeeping: the leader actor does the sending.
type router struct {
	origin  uint64
	timeout time.Duration
	nextSeq uint64
	pending map[uint64]*routed
	// byDeadline holds the pending seqs in arrival order, which is
	// deadline order (every request gets the same timeout).
	byDeadline []uint64
	// toSend holds the seqs of requests marked to be sent, and of some
	// sent or answered since (unsent drops those), so that finding what
	// to send costs what there is to send, not every pending request.
	toSend []uint64
	// forwarded is the message bytes (a SET's message, a GET's reply: see
	// heldBytes) of the pending requests sent to another gateway. While
	// windowed, the router forwards at most window bytes at once;
	// requests wait unsent meanwhile. The window starts at
	// maxWindow (if set); once the leader answers one "busy" (it holds as
	// many forwarded bytes as it takes) it shrinks to what that leader
	// held for this gateway then, and grows back by half of every
	// answered request's bytes, up to maxWindow. A new leader starts
	// afresh.
	forwarded int64
	windowed  bool
	window    int64
	maxWindow int64 // 0: none
	busyAt    time.Time
}

// routed is one client request waiting for its reply.
type routed struct {
	seq      uint64
	session  *actor.PID
	request  uint64 // the session's number for it, echoed in the reply
	req      *messages.ClientRequest
	deadline time.Time
	// windowEnd bounds the request when it is sent again (RequestId's
	// window_end): past it the state machine no longer applies it.
	windowEnd uint64
	// sends counts the times it was sent. A request given back (its
	// leader changed or lost it) waits with sentTo "" but may already be
	// in the log: only one never sent is known to have had no effect.
	sends int
	// sentTo is the node address of the leader it was last sent to,
	// localRoute for this gateway's coordinator, "" if it waits to be
	// sent; sentAt is when.
	sentTo string
	sentAt time.Time
	// queued says the request's seq is in the router's toSend.
	queued bool
	// held is the message bytes the active leader holds for it (see
	// heldBytes), fixed when the request is accepted.
	held int64
}

// limitForwarding bounds the message bytes forwarded and unanswered at
// once to max (0: no bound but what a busy leader sets).
func (r *router) limitForwarding(max int64) {
	r.maxWindow = max
	r.openWindow()
}

// openWindow starts the window afresh, for a new leader.
func (r *router) openWindow() {
	r.windowed, r.window = r.maxWindow > 0, r.maxWindow
}

// localRoute marks a request handed to this gateway's own coordinator.
const localRoute = "local"

func newRouter(origin uint64, timeout time.Duration) *router {
	return &router{origin: origin, timeout: timeout, pending: make(map[uint64]*routed)}
}

// accept takes a request from a session and returns its entry, not sent
// yet. applied is the state machine's count of applied requests now; held
// is the message bytes a leader holds for the request (heldBytes).
func (r *router) accept(session *actor.PID, req *messages.ClientRequest, now time.Time, applied uint64, held int64) *routed {
	r.nextSeq++
	rt := &routed{seq: r.nextSeq, session: session, request: req.GetRequestId(), req: req, deadline: now.Add(r.timeout),
		windowEnd: applied + meta.RequestWindow, held: held}
	r.pending[rt.seq] = rt
	r.byDeadline = append(r.byDeadline, rt.seq)
	r.queue(rt)
	return rt
}

// unsent returns the pending requests that wait to be sent, in arrival
// order.
func (r *router) unsent() []*routed {
	if !slices.IsSorted(r.toSend) {
		slices.Sort(r.toSend)
	}
	var out []*routed
	kept := r.toSend[:0]
	for _, seq := range r.toSend {
		rt, ok := r.pending[seq]
		switch {
		case !ok:
		case rt.sentTo == "":
			out = append(out, rt)
			kept = append(kept, seq)
		default:
			rt.queued = false
		}
	}
	r.toSend = kept
	return out
}

// markUnsent marks rt to be sent (again).
func (r *router) markUnsent(rt *routed) {
	r.setSentTo(rt, "")
	r.queue(rt)
}

// setSentTo records where rt was sent ("" for nowhere), keeping the count
// of forwarded bytes.
func (r *router) setSentTo(rt *routed, address string) {
	if rt.forwarded() {
		r.forwarded -= rt.bytes()
	}
	rt.sentTo = address
	if rt.forwarded() {
		r.forwarded += rt.bytes()
	}
}

// forwarded says whether rt waits for another gateway's answer.
func (rt *routed) forwarded() bool { return rt.sentTo != "" && rt.sentTo != localRoute }

// bytes is the request's message bytes, as the leader counts them.
func (rt *routed) bytes() int64 { return rt.held }

// remove forgets a pending request.
func (r *router) remove(rt *routed) {
	r.setSentTo(rt, "")
	delete(r.pending, rt.seq)
}

func (r *router) queue(rt *routed) {
	if !rt.queued {
		rt.queued = true
		r.toSend = append(r.toSend, rt.seq)
	}
}

// sending marks rt as sent to address (localRoute for this gateway's
// coordinator) at now, and returns the window_end to send it with: none
// the first time, since a first attempt cannot repeat an earlier one; the
// bound taken when the request was accepted every later time, so that the
// state machine applies it only while it still remembers every earlier
// attempt that may have been applied. (A gateway's count lags the
// leader's, which only makes the bound tighter.)
func (r *router) sending(rt *routed, address string, now time.Time) (windowEnd uint64) {
	r.setSentTo(rt, address)
	rt.sentAt = now
	rt.sends++
	if rt.sends == 1 {
		return 0
	}
	return rt.windowEnd
}

// resend marks every pending request to be sent again (the leader
// changed), or only those sent to address if it is not "".
func (r *router) resend(address string) {
	r.openWindow() // a new leader, or a new connection to it
	for _, rt := range r.pending {
		if address == "" || rt.sentTo == address {
			r.markUnsent(rt)
		}
	}
}

// unanswered returns the requests sent to another gateway longer ago than
// after, still unanswered, to be probed there: the batch that carried them
// may have been lost (or the leader actor that took them restarted), but
// a large message may also simply take that long. The receiver answers a
// probe "not taken" if it does not hold the request, and the request is
// then sent again, whole. Each is probed again after another after.
func (r *router) unanswered(now time.Time, after time.Duration) []*routed {
	var out []*routed
	for _, rt := range r.pending {
		if rt.forwarded() && now.Sub(rt.sentAt) > after {
			rt.sentAt = now
			out = append(out, rt)
		}
	}
	return out
}

// notTaken marks a request the receiver did not take, to be sent again.
func (r *router) notTaken(seq uint64) {
	if rt, ok := r.pending[seq]; ok {
		r.markUnsent(rt)
	}
}

// busy marks a request the leader did not take for want of room, to be
// sent again once the router has room under its window. That attempt
// had no effect: it does not count as a send.
func (r *router) busy(seq uint64, now time.Time) {
	rt, ok := r.pending[seq]
	if !ok || !rt.forwarded() {
		return // answered, expired, or sent again since
	}
	rt.sends--
	r.markUnsent(rt)
	r.windowed, r.window, r.busyAt = true, r.forwarded, now
}

// mayForward says whether rt may be forwarded now, under the window. With
// nothing forwarded, one request goes, but not within pause of the last
// busy answer: the leader may still hold others' bytes.
func (r *router) mayForward(rt *routed, now time.Time, pause time.Duration) bool {
	switch {
	case !r.windowed:
		return true
	case r.forwarded == 0:
		return now.Sub(r.busyAt) >= pause
	default:
		return r.forwarded+rt.bytes() <= r.window
	}
}

// answered removes a request whose reply arrived and returns it, or nil
// if it was answered before (or expired).
func (r *router) answered(seq uint64) *routed {
	rt, ok := r.pending[seq]
	if !ok {
		return nil
	}
	if r.windowed && rt.forwarded() {
		r.window += rt.bytes() / 2
		if r.maxWindow > 0 {
			r.window = min(r.window, r.maxWindow)
		}
	}
	r.remove(rt)
	return rt
}

// expire removes the requests whose deadline passed and returns them.
func (r *router) expire(now time.Time) []*routed {
	var out []*routed
	i := 0
	for ; i < len(r.byDeadline); i++ {
		rt, ok := r.pending[r.byDeadline[i]]
		if !ok {
			continue // answered
		}
		if rt.deadline.After(now) {
			break
		}
		r.remove(rt)
		out = append(out, rt)
	}
	r.byDeadline = slices.Delete(r.byDeadline, 0, i)
	// Requests that expire unsent (no leader known) leave their seqs in
	// toSend until the next unsent; bound it meanwhile.
	if len(r.toSend) > 2*len(r.pending)+64 {
		r.toSend = slices.DeleteFunc(r.toSend, func(seq uint64) bool { _, ok := r.pending[seq]; return !ok })
	}
	// Drop answered seqs from the front too, so the slice does not grow
	// with requests answered out of order.
	for len(r.byDeadline) > 0 {
		if _, ok := r.pending[r.byDeadline[0]]; ok {
			break
		}
		r.byDeadline = r.byDeadline[1:]
	}
	return out
}

// everSent reports whether the request was ever handed to a leader (this
// gateway's coordinator or another gateway's): if so, a write may be in
// the log even while it waits to be sent again.
func (rt *routed) everSent() bool { return rt.sends > 0 }

// expiredReply is the answer to a request unanswered at its deadline: a
// timeout for a read (reads have no effect); for a write, an unknown
// outcome if it was ever sent to a leader (an attempt the leader answered
// "busy" does not count), and a definite error if it never was: no leader
// was known all that time, or (waitedForRoom: a leader is known) it waited
// for room under the router's window or at the leader.
func expiredReply(rt *routed, waitedForRoom bool) *messages.ClientReply {
	reason := "outcome unknown: no leader confirmed this request before its deadline; read the id to see whether it took effect"
	switch {
	case rt.req.GetOp() == messages.Op_OP_GET:
		reason = "timeout: no leader answered this read before its deadline"
	case !rt.everSent() && waitedForRoom:
		reason = BusyError
	case !rt.everSent():
		reason = NoLeaderError
	}
	return &messages.ClientReply{RequestId: rt.request, Code: messages.ReplyCode_REPLY_ERROR, Error: reason}
}

// NoLeaderError answers a write that waited its whole deadline for a Raft
// leader to be known and was never sent to one, so it never takes
// effect.
const NoLeaderError = "no leader: this gateway knew of no Raft leader until the request's deadline; the request was sent to none and has no effect"

// BusyError answers a write that waited its whole deadline for room at
// the leader, which held as many message bytes of this gateway's as it
// takes (its writeRoom): the leader never took it, so it has no effect.
const BusyError = "busy: the leader held as many message bytes from this gateway as it takes until this request's deadline; the request was not taken and has no effect"

// all removes and returns every pending request.
func (r *router) all() []*routed {
	out := make([]*routed, 0, len(r.pending))
	for _, seq := range r.byDeadline {
		if rt, ok := r.pending[seq]; ok {
			out = append(out, rt)
		}
	}
	clear(r.pending)
	r.byDeadline, r.toSend = nil, nil
	r.forwarded = 0
	r.openWindow()
	return out
}

// len is the number of pending requests.
func (r *router) len() int { return len(r.pending) }
