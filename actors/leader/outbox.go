package leader

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/messages"
)

// The leader's logic never sends anything itself: everything it wants to
// send (store, read and prune requests per member, selections, proposals,
// replies per session or per forwarding gateway, notices to its children)
// goes into the outbox, and the actor sends the outbox at the end of a
// turn. That keeps the decisions testable without actors (give the leader
// inputs, look at its outbox) and batches the output: under load one
// message (one serialization, one gRPC frame) carries many requests, and
// when idle a request waits for nothing. At the end of every turn the
// leader sends the outbox at once if its mailbox is empty; otherwise it
// sends itself a flush message, which reaches it after everything already
// queued, so a busy mailbox cannot hold output back for long. A batch that
// reaches maxBatch is closed and goes out with the next flush, before what
// was queued after it.
type outbox struct {
	stores  map[uint32]*messages.StoreBatch
	reads   map[uint32]*messages.ReadBatch
	prunes  map[uint32]*messages.PruneBatch
	replies map[string]*replyBatch // by session PID
	// forwards carry requests to the active leader on another gateway,
	// forwardReplies the answers to gateways that forwarded requests here,
	// by the receiving leader actor's PID.
	forwards       map[string]*forwardBatch
	forwardReplies map[string]*forwardReplyBatch
	selects        *messages.SelectBatch
	// proposals go to consensus together, as one Raft log entry.
	proposals []*messages.LogEntry
	// direct are the messages to send as they are, in order: closed
	// batches and single messages.
	direct  []envelope
	dirty   bool // something was queued since the last flush
	flushes bool // a flushOutbox is on its way
}

// envelope is one message of the outbox.
type envelope struct {
	to  *actor.PID
	msg any
	// request sends it with the leader as sender, so the answer comes
	// back.
	request bool
	// member, if set, is a member's batch: it goes only if the member is
	// still usable when the outbox is sent (one that went down meanwhile
	// had its requests failed over already).
	member bool
	slot   uint32
}

type replyBatch struct {
	to    *actor.PID
	batch *messages.ClientReplyBatch
}

type forwardBatch struct {
	to    *actor.PID
	batch *messages.ForwardBatch
}

type forwardReplyBatch struct {
	to    *actor.PID
	batch *messages.ForwardReplyBatch
}

// flushOutbox makes the leader send what its outbox holds.
type flushOutbox struct{}

// maxBatch bounds the requests in one batch.
const maxBatch = 256

func newOutbox() *outbox {
	return &outbox{
		stores:         make(map[uint32]*messages.StoreBatch),
		reads:          make(map[uint32]*messages.ReadBatch),
		prunes:         make(map[uint32]*messages.PruneBatch),
		replies:        make(map[string]*replyBatch),
		forwards:       make(map[string]*forwardBatch),
		forwardReplies: make(map[string]*forwardReplyBatch),
	}
}

// scheduleFlush notes that the outbox holds something; endTurn sends it.
func (l *leader) scheduleFlush() {
	l.out.dirty = true
}

// send queues a message to send as it is.
func (l *leader) send(to *actor.PID, msg any) {
	l.out.direct = append(l.out.direct, envelope{to: to, msg: msg})
	l.scheduleFlush()
}

// request queues a message whose answer comes back to the leader.
func (l *leader) request(to *actor.PID, msg any) {
	l.out.direct = append(l.out.direct, envelope{to: to, msg: msg, request: true})
	l.scheduleFlush()
}

// endTurn runs after every message: it sends the outbox now if no other
// message waits (nothing more to batch with), or makes sure a flush
// message follows the ones that wait.
func (l *leader) endTurn(ctx actor.Context) {
	if !l.out.dirty || l.out.flushes {
		return
	}
	if l.mailbox != nil && l.mailbox.Waiting() == 0 {
		l.flush(ctx)
		return
	}
	l.out.flushes = true
	ctx.Send(ctx.Self(), flushOutbox{})
}

// queue adds one request to slot's batch in batches (add appends it and
// returns the batch's length); a full batch is closed. request says
// whether the member answers.
func queue[B any](l *leader, batches map[uint32]*B, slot uint32, add func(*B) int, request bool) {
	b := batches[slot]
	if b == nil {
		b = new(B)
		batches[slot] = b
	}
	if add(b) >= maxBatch {
		delete(batches, slot)
		if v := l.slot(slot); v != nil {
			l.out.direct = append(l.out.direct, envelope{to: v.storage, msg: b, request: request, member: true, slot: slot})
		}
	}
	l.scheduleFlush()
}

func (l *leader) queueStore(slot uint32, req *messages.StoreRequest) {
	queue(l, l.out.stores, slot, func(b *messages.StoreBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, true)
}

func (l *leader) queueRead(slot uint32, req *messages.ReadRequest) {
	queue(l, l.out.reads, slot, func(b *messages.ReadBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, true)
}

func (l *leader) queuePrune(slot uint32, req *messages.PruneRequest) {
	queue(l, l.out.prunes, slot, func(b *messages.PruneBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, false)
}

func (l *leader) queueSelect(req *messages.SelectReplicas) {
	if l.out.selects == nil {
		l.out.selects = &messages.SelectBatch{}
	}
	l.out.selects.Requests = append(l.out.selects.Requests, req)
	if len(l.out.selects.Requests) >= maxBatch {
		l.request(l.selector, l.out.selects)
		l.out.selects = nil
	}
	l.scheduleFlush()
}

// toSession queues a reply to one of this gateway's sessions.
func (l *leader) toSession(session *actor.PID, r *messages.ClientReply) {
	if session == nil {
		return
	}
	key := session.Address + "/" + session.Id
	b := l.out.replies[key]
	if b == nil {
		b = &replyBatch{to: session, batch: &messages.ClientReplyBatch{}}
		l.out.replies[key] = b
	}
	b.batch.Replies = append(b.batch.Replies, r)
	if len(b.batch.Replies) >= maxBatch {
		delete(l.out.replies, key)
		l.send(b.to, b.batch)
	}
	l.scheduleFlush()
}

// queueForward queues a request for the leader actor of the gateway that
// leads. It goes as a request, so the receiver knows where to answer.
func (l *leader) queueForward(to *actor.PID, fr *messages.ForwardedRequest) {
	key := to.Address + "/" + to.Id
	b := l.out.forwards[key]
	if b == nil {
		b = &forwardBatch{to: to, batch: &messages.ForwardBatch{Origin: l.router.origin}}
		l.out.forwards[key] = b
	}
	b.batch.Requests = append(b.batch.Requests, fr)
	if len(b.batch.Requests) >= maxBatch {
		delete(l.out.forwards, key)
		l.request(b.to, b.batch)
	}
	l.scheduleFlush()
}

// queueForwardReply queues an answer for a gateway that forwarded a
// request here.
func (l *leader) queueForwardReply(to *actor.PID, r *messages.ForwardedReply) {
	b := l.forwardReplyBatch(to)
	b.batch.Replies = append(b.batch.Replies, r)
	if len(b.batch.Replies) >= maxBatch {
		delete(l.out.forwardReplies, pidKey(to))
		l.send(b.to, b.batch)
	}
}

// forwardReplyBatch is the open batch of answers to the gateway at to,
// made (empty, naming this leader as its sender) if there is none.
func (l *leader) forwardReplyBatch(to *actor.PID) *forwardReplyBatch {
	key := pidKey(to)
	b := l.out.forwardReplies[key]
	if b == nil {
		b = &forwardReplyBatch{to: to, batch: &messages.ForwardReplyBatch{Sender: l.self.GetAddress()}}
		l.out.forwardReplies[key] = b
	}
	l.scheduleFlush()
	return b
}

// pidKey is a PID as a map key.
func pidKey(pid *actor.PID) string { return pid.Address + "/" + pid.Id }

// queueProposal queues an entry for consensus.
func (l *leader) queueProposal(e *messages.LogEntry) {
	l.out.proposals = append(l.out.proposals, e)
	if len(l.out.proposals) >= maxBatch {
		l.request(l.cfg.Consensus, &consensus.Propose{Entries: l.out.proposals})
		l.out.proposals = nil
	}
	l.scheduleFlush()
}

// flush sends everything the outbox holds: the closed batches and single
// messages first, in the order they were queued, then what is still open.
func (l *leader) flush(ctx actor.Context) {
	l.out.flushes, l.out.dirty = false, false
	direct := l.out.direct
	l.out.direct = nil
	for _, e := range direct {
		if e.member {
			if v := l.slot(e.slot); v == nil || !v.usable() {
				continue
			}
		}
		if e.request {
			ctx.Request(e.to, e.msg)
		} else {
			ctx.Send(e.to, e.msg)
		}
	}
	if len(l.out.proposals) > 0 {
		ctx.Request(l.cfg.Consensus, &consensus.Propose{Entries: l.out.proposals})
		l.out.proposals = nil
	}
	if l.out.selects != nil {
		ctx.Request(l.selector, l.out.selects)
		l.out.selects = nil
	}
	for slot, b := range l.out.stores {
		delete(l.out.stores, slot)
		l.sendToMember(ctx, slot, b, true)
	}
	for slot, b := range l.out.reads {
		delete(l.out.reads, slot)
		l.sendToMember(ctx, slot, b, true)
	}
	for slot, b := range l.out.prunes {
		delete(l.out.prunes, slot)
		l.sendToMember(ctx, slot, b, false)
	}
	for key, b := range l.out.replies {
		delete(l.out.replies, key)
		ctx.Send(b.to, b.batch)
	}
	for key, b := range l.out.forwards {
		delete(l.out.forwards, key)
		ctx.Request(b.to, b.batch)
	}
	for key, b := range l.out.forwardReplies {
		delete(l.out.forwardReplies, key)
		ctx.Send(b.to, b.batch)
	}
}

// sendToMember sends a member a batch, unless the member went down since
// its requests were queued: they were failed over then (memberDown), and
// sending to a dead address only starts a useless connection attempt.
func (l *leader) sendToMember(ctx actor.Context, slot uint32, batch any, request bool) {
	v := l.slot(slot)
	if v == nil || !v.usable() {
		return
	}
	if request {
		ctx.Request(v.storage, batch)
	} else {
		ctx.Send(v.storage, batch)
	}
}
