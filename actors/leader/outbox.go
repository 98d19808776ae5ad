package leader

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/messages"
)

// The leader does not send one message per request. Everything it sends
// while it works through its mailbox (store, read and prune requests per
// member, selections, replies per session) is gathered in the outbox and
// sent in batches once nothing else waits in the mailbox: under load one
// message (one serialization, one gRPC frame) carries many requests, and
// when idle a request waits for nothing. At the end of every turn the
// leader sends the outbox at once if its mailbox is empty; otherwise it
// sends itself a flush message, which reaches it after everything already
// queued, so a busy mailbox cannot hold output back for long. A batch that
// reaches maxBatch is sent at once.
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
	dirty     bool // something was queued since the last flush
	flushes   bool // a flushOutbox is on its way
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
// returns the batch's length), sending the batch at once when it is full
// and scheduling a flush otherwise.
func queue[B any](l *leader, ctx actor.Context, batches map[uint32]*B, slot uint32,
	add func(*B) int, send func(actor.Context, uint32, *B)) {
	b := batches[slot]
	if b == nil {
		b = new(B)
		batches[slot] = b
	}
	if add(b) >= maxBatch {
		send(ctx, slot, b)
		return
	}
	l.scheduleFlush()
}

func (l *leader) queueStore(ctx actor.Context, slot uint32, req *messages.StoreRequest) {
	queue(l, ctx, l.out.stores, slot, func(b *messages.StoreBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, l.sendStores)
}

func (l *leader) queueRead(ctx actor.Context, slot uint32, req *messages.ReadRequest) {
	queue(l, ctx, l.out.reads, slot, func(b *messages.ReadBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, l.sendReads)
}

func (l *leader) queuePrune(ctx actor.Context, slot uint32, req *messages.PruneRequest) {
	queue(l, ctx, l.out.prunes, slot, func(b *messages.PruneBatch) int {
		b.Requests = append(b.Requests, req)
		return len(b.Requests)
	}, l.sendPrunes)
}

func (l *leader) queueSelect(ctx actor.Context, req *messages.SelectReplicas) {
	if l.out.selects == nil {
		l.out.selects = &messages.SelectBatch{}
	}
	l.out.selects.Requests = append(l.out.selects.Requests, req)
	if len(l.out.selects.Requests) >= maxBatch {
		l.sendSelects(ctx)
		return
	}
	l.scheduleFlush()
}

// toSession queues a reply to one of this gateway's sessions.
func (l *leader) toSession(ctx actor.Context, session *actor.PID, r *messages.ClientReply) {
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
		ctx.Send(b.to, b.batch)
		return
	}
	l.scheduleFlush()
}

// queueForward queues a request for the leader actor of the gateway that
// leads. It goes as a request, so the receiver knows where to answer.
func (l *leader) queueForward(ctx actor.Context, to *actor.PID, fr *messages.ForwardedRequest) {
	key := to.Address + "/" + to.Id
	b := l.out.forwards[key]
	if b == nil {
		b = &forwardBatch{to: to, batch: &messages.ForwardBatch{Origin: l.router.origin}}
		l.out.forwards[key] = b
	}
	b.batch.Requests = append(b.batch.Requests, fr)
	if len(b.batch.Requests) >= maxBatch {
		delete(l.out.forwards, key)
		ctx.Request(b.to, b.batch)
		return
	}
	l.scheduleFlush()
}

// queueForwardReply queues an answer for a gateway that forwarded a
// request here.
func (l *leader) queueForwardReply(ctx actor.Context, to *actor.PID, r *messages.ForwardedReply) {
	key := to.Address + "/" + to.Id
	b := l.out.forwardReplies[key]
	if b == nil {
		b = &forwardReplyBatch{to: to, batch: &messages.ForwardReplyBatch{}}
		l.out.forwardReplies[key] = b
	}
	b.batch.Replies = append(b.batch.Replies, r)
	if len(b.batch.Replies) >= maxBatch {
		delete(l.out.forwardReplies, key)
		ctx.Send(b.to, b.batch)
		return
	}
	l.scheduleFlush()
}

// queueProposal queues an entry for consensus.
func (l *leader) queueProposal(ctx actor.Context, e *messages.LogEntry) {
	l.out.proposals = append(l.out.proposals, e)
	if len(l.out.proposals) >= maxBatch {
		l.sendProposals(ctx)
		return
	}
	l.scheduleFlush()
}

func (l *leader) sendProposals(ctx actor.Context) {
	if len(l.out.proposals) > 0 {
		ctx.Request(l.cfg.Consensus, &consensus.Propose{Entries: l.out.proposals})
		l.out.proposals = nil
	}
}

// flush sends everything the outbox holds.
func (l *leader) flush(ctx actor.Context) {
	l.out.flushes, l.out.dirty = false, false
	l.sendProposals(ctx)
	l.sendSelects(ctx)
	for slot, b := range l.out.stores {
		l.sendStores(ctx, slot, b)
	}
	for slot, b := range l.out.reads {
		l.sendReads(ctx, slot, b)
	}
	for slot, b := range l.out.prunes {
		l.sendPrunes(ctx, slot, b)
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

func (l *leader) sendSelects(ctx actor.Context) {
	if l.out.selects != nil {
		ctx.Request(l.selector, l.out.selects)
		l.out.selects = nil
	}
}

// sendStores sends a member its store batch, unless the member went down
// since the requests were queued: they were failed over then (memberDown),
// and sending to a dead address only starts a useless connection attempt.
func (l *leader) sendStores(ctx actor.Context, slot uint32, b *messages.StoreBatch) {
	delete(l.out.stores, slot)
	if v := l.slot(slot); v != nil && v.usable() {
		ctx.Request(v.storage, b)
	}
}

func (l *leader) sendReads(ctx actor.Context, slot uint32, b *messages.ReadBatch) {
	delete(l.out.reads, slot)
	if v := l.slot(slot); v != nil && v.usable() {
		ctx.Request(v.storage, b)
	}
}

func (l *leader) sendPrunes(ctx actor.Context, slot uint32, b *messages.PruneBatch) {
	delete(l.out.prunes, slot)
	if v := l.slot(slot); v != nil && v.usable() {
		ctx.Send(v.storage, b)
	}
}
