package leader

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// outstanding is one request sent to a member and not yet answered.
type outstanding struct {
	slot     uint32
	bytes    uint64 // the payload a store carries
	sent     time.Time
	deadline time.Time
	write    *write // a StoreRequest, or
	read     *read  // a ReadRequest
}

// write is one SET in progress: copies are stored on members until need
// are durable, then the index entry is proposed. Where the copies go is
// decided by its placement.
type write struct {
	ref     clientRef
	id      int64
	version uint64
	payload []byte
	place   *placement
	done    bool // proposed or failed
	failed  bool // answered with an error
	started time.Time
	// resentTo are the members a copy was sent to once more because
	// their answer was late (Config.StoreResendAfter), under the same
	// request id: the answer to one attempt settles the copy, and the
	// other's answer must then not be taken for a stray copy.
	resentTo []uint32
	// hedged is set once one more member was asked for a copy because a
	// copy's answer was late (Config.StoreHedgeAfter).
	hedged bool
}

// expectsRepeat reports whether an answer from slot to an attempt whose
// copy is settled may still arrive for a copy the write counts on: slot
// was asked again after a timeout (placement), or its copy was resent
// while waiting and is stored. A copy resent and then failed or timed out
// (and replaced) is not counted on: a late answer to it is a stray copy.
func (w *write) expectsRepeat(slot uint32) bool {
	return w.place.isAskedAgain(slot) || (slices.Contains(w.resentTo, slot) && slices.Contains(w.place.stored, slot))
}

// read is one GET in progress.
type read struct {
	ref        clientRef
	lookedUp   bool // it read the index once (later lookups restart it)
	id         int64
	version    uint64
	size       uint64 // the indexed version's payload bytes
	candidates []uint32
	next       int
	restarts   int
	// timedOut is set when a replica of this round did not answer in
	// time; rounds counts the rounds after the first started for that.
	timedOut bool
	rounds   int
	done     bool
	started  time.Time
	// inflight is how many replicas were asked and have not answered;
	// hedged is set once a second replica was asked while the first was
	// late (Config.ReadHedgeAfter).
	inflight int
	hedged   bool
}

// maxReadRestarts bounds how often a GET starts over after the index moved
// on to a newer version while it was reading.
const maxReadRestarts = 3

// maxReadRounds bounds how often a GET asks its replicas again after every
// one failed and one of them did not answer in time. An answer can be
// lost without the replica being down: protoactor drops what a member
// sends while its connection to a restarted gateway is being replaced
// (both replies of a read were lost so in one e2e run, 2 s after a
// gateway restart). A replica the leader has found down meanwhile is not
// asked again.
const maxReadRounds = 2

func (l *leader) startWrite(ref clientRef, msg *messages.ClientRequest) {
	w := &write{
		ref:     ref,
		id:      msg.GetId(),
		version: l.mintVersion(),
		payload: msg.GetPayload(),
		started: time.Now(),
	}
	var first selection
	w.place, first = newPlacement(l.cfg.Tolerance)
	l.selectFor(w, &first)
}

// selectFor asks the selector for members for w, if sel is not nil.
func (l *leader) selectFor(w *write, sel *selection) {
	if sel == nil {
		return
	}
	id := l.newRequestID()
	l.selections[id] = w
	l.queueSelect(&messages.SelectReplicas{RequestId: id, Count: uint32(sel.count), Exclude: sel.exclude})
}

func (l *leader) replicasSelected(msg *messages.ReplicasSelected) {
	w, ok := l.selections[msg.GetRequestId()]
	if !ok {
		return
	}
	delete(l.selections, msg.GetRequestId())
	if w.done {
		return
	}
	send, next := w.place.selected(msg.GetMembers())
	if w.place.refused {
		l.failWrite(w, fmt.Sprintf("not enough live members: have %d, need %d%s", msg.GetLive(), w.place.need, l.refusingNote()))
		return
	}
	for _, slot := range send {
		l.sendStore(w, slot)
	}
	l.selectFor(w, next)
	l.checkWrite(w)
}

func (l *leader) sendStore(w *write, slot uint32) {
	v := l.slot(slot)
	if v == nil || !v.usable() {
		// Went down between selection and now: count it as a failed copy.
		l.selectFor(w, w.place.copyFailed())
		return
	}
	again := w.place.isAskedAgain(slot)
	if again {
		l.resent[w.id] = w
		l.log.Warn().Uint32("slot", slot).Int64("id", w.id).Msg("no other member to take the copy; sending it again to a live member whose answer did not arrive")
	}
	o := &outstanding{slot: slot, write: w, bytes: uint64(len(w.payload))}
	id := l.track(o, l.cfg.StoreTimeout)
	l.addEarly(id, o, resend, l.cfg.StoreResendAfter)
	if !w.hedged {
		l.addEarly(id, o, hedge, l.cfg.StoreHedgeAfter)
	}
	l.queueStore(slot, &messages.StoreRequest{RequestId: id, Id: w.id, Version: w.version, Payload: w.payload, Again: again})
}

// resendStore sends the copy of the store request id (o, still
// unanswered) once more to its member, under the same request id, if its
// write is not done and the member still looks live: its answer may have been lost on the way (a
// connection protoactor tore down while it churned). The member stores it
// again without counting it twice (StoreRequest.again), and whichever
// answer comes first settles the copy.
func (l *leader) resendStore(id uint64, o *outstanding) {
	if o.write == nil || o.write.done {
		return
	}
	v := l.slot(o.slot)
	if v == nil || !v.usable() {
		return
	}
	w := o.write
	if !slices.Contains(w.resentTo, o.slot) {
		w.resentTo = append(w.resentTo, o.slot)
	}
	l.resent[w.id] = w
	if m := l.cfg.Metrics; m != nil {
		m.StoreResends.Inc()
	}
	l.log.Info().Uint32("slot", o.slot).Int64("id", w.id).Dur("waited", l.now().Sub(o.sent)).
		Msg("no answer from a live member yet; sending the copy to it again")
	l.queueStore(o.slot, &messages.StoreRequest{RequestId: id, Id: w.id, Version: w.version, Payload: w.payload, Again: true})
}

// addEarly schedules kind for the request id (o, just sent) after
// base plus the time the bytes in flight to its member take at
// Config.MemberRate, if base is positive and that comes before its
// timeout.
func (l *leader) addEarly(id uint64, o *outstanding, kind deadlineKind, base time.Duration) {
	if base <= 0 {
		return
	}
	at := o.sent.Add(memberTimeLimit(base, l.members[o.slot].inflightBytes, l.cfg.MemberRate))
	if at.Before(o.deadline) {
		l.deadlines.add(deadlineItem{id: id, deadline: at, kind: kind})
	}
}

// hedgeStoreIfQuiet hedges the copy id (o, late) if its member has
// answered nothing for StoreHedgeAfter plus the time everything in flight
// to it takes at MemberRate: a member that answers within that is busy,
// not stopped. Under 4 MB SETs at 48 connections the members answer in
// group commits up to seconds apart, and hedging there only added load
// (docs/benchmarks.md); such a copy waits for its timeout as before. Not
// quiet yet: it looks again when the member will have been quiet that
// long, if that comes before the timeout.
func (l *leader) hedgeStoreIfQuiet(id uint64, o *outstanding, now time.Time) {
	v := l.slot(o.slot)
	if v == nil {
		return
	}
	quietAt := v.quietSince.Add(memberTimeLimit(l.cfg.StoreHedgeAfter, v.inflightBytes, l.cfg.MemberRate))
	if quietAt.After(now) {
		if quietAt.Before(o.deadline) {
			l.deadlines.add(deadlineItem{id: id, deadline: quietAt, kind: hedge})
		}
		return
	}
	l.hedgeStore(o)
}

// hedgeStore asks for one more member to store a copy of o's write too,
// o being still unanswered: its member may be stopped, and is found down
// only after the heartbeat timeout. The late copy stays in flight; the
// first copies stored make the write, and the others are pruned when
// they land (storeAck). Once per SET. The member is marked late
// (markLate), so new copies go elsewhere meanwhile.
func (l *leader) hedgeStore(o *outstanding) {
	w := o.write
	if w == nil || w.done {
		return
	}
	l.markLate(o.slot)
	if w.hedged {
		return
	}
	w.hedged = true
	if m := l.cfg.Metrics; m != nil {
		m.StoreHedges.Inc()
	}
	l.log.Info().Uint32("slot", o.slot).Int64("id", w.id).Dur("waited", l.now().Sub(o.sent)).
		Msg("no answer to a copy yet; asking one more member to store it too")
	l.selectFor(w, w.place.copyLate())
}

// track registers an outstanding member request and returns its id. Its
// member has timeout to answer, and longer behind a queue of large
// messages (memberTimeLimit).
func (l *leader) track(o *outstanding, timeout time.Duration) uint64 {
	id := l.newRequestID()
	v := &l.members[o.slot]
	o.sent = l.now()
	if v.inflight == 0 {
		v.quietSince = o.sent // nothing to answer until now
	}
	v.inflight++
	v.inflightBytes += o.bytes
	if o.read != nil {
		o.read.inflight++
	}
	o.deadline = o.sent.Add(memberTimeLimit(timeout, v.inflightBytes, l.cfg.MemberRate))
	l.requests[id] = o
	l.deadlines.add(deadlineItem{id: id, deadline: o.deadline})
	return id
}

// settle removes an answered (or failed) request.
func (l *leader) settle(id uint64) (*outstanding, bool) {
	o, ok := l.requests[id]
	if !ok {
		return nil, false
	}
	delete(l.requests, id)
	v := &l.members[o.slot]
	v.inflight--
	v.inflightBytes -= o.bytes
	if o.read != nil {
		o.read.inflight--
	}
	return o, true
}

// answers reports whether an answer from a member (the slot it came from,
// if known, and the id and version it names) is the answer to the request
// o. A request number alone is not enough: a leader actor that restarted
// numbers its requests afresh, and a member's answer to its previous
// incarnation may carry a number in use again.
func answers(o *outstanding, from uint32, fromKnown bool, id int64, version uint64) bool {
	if fromKnown && from != o.slot {
		return false
	}
	switch {
	case version == 0:
		return true // a member from before answers named them
	case o.write != nil:
		return id == o.write.id && version == o.write.version
	case o.read != nil:
		return id == o.read.id && version == o.read.version
	}
	return false
}

func (l *leader) storeAck(from uint32, fromKnown bool, msg *messages.StoreAck) {
	if fromKnown {
		l.heardFrom(from)
	}
	var o *outstanding
	ok := false
	if pending, found := l.requests[msg.GetRequestId()]; found && answers(pending, from, fromKnown, msg.GetId(), msg.GetVersion()) {
		o, ok = l.settle(msg.GetRequestId())
	}
	if !ok && l.answerToFirstAttempt(from, fromKnown, msg) {
		return
	}
	if !ok || o.write == nil {
		// Late: the request timed out or its member was declared down, and
		// another member took its place. A copy that landed anyway is read
		// by nobody unless the index names this member for it. Only this
		// term's own copies are pruned so: a copy of an earlier epoch may
		// belong to an entry an earlier leader (or an earlier incarnation
		// of this actor) proposed that is not applied yet.
		if fromKnown && msg.GetError() == "" && l.ownVersion(msg.GetVersion()) && !l.indexedOn(msg.GetId(), msg.GetVersion(), from) {
			l.pruneStray(msg.GetId(), msg.GetVersion(), msg.GetSize(), from)
		}
		return
	}
	w := o.write
	if w.done {
		if msg.GetError() == "" && (w.failed || !slices.Contains(w.place.stored, o.slot)) {
			// A copy landed for a write that failed, or that completed
			// with other members: drop it.
			l.pruneStray(w.id, w.version, uint32(len(w.payload)), o.slot)
		}
		return
	}
	if msg.GetError() != "" {
		l.log.Warn().Uint32("slot", o.slot).Str("error", msg.GetError()).Int64("id", w.id).Msg("member failed to store; replacing it")
		l.countReplicaFailure("error")
		l.selectFor(w, w.place.copyFailed())
		l.checkWrite(w)
		return
	}
	w.place.copyStored(o.slot)
	if m := l.cfg.Metrics; m != nil && w.place.complete() {
		m.FanoutSeconds.Observe(time.Since(w.started).Seconds())
	}
	l.checkWrite(w)
}

// answerToFirstAttempt handles a late answer to one attempt of a copy the
// write in progress sent again to the same member (after a timeout, or
// resent while waiting), and reports whether it was one. The copy is the
// other attempt's too: it must not be pruned as a stray while the write
// may still name the member. The answer that settled the copy decided it;
// this one only drops the copy if the write failed or finished without the
// member.
func (l *leader) answerToFirstAttempt(from uint32, fromKnown bool, msg *messages.StoreAck) bool {
	w := l.resent[msg.GetId()]
	if !fromKnown || w == nil || w.version != msg.GetVersion() || !w.expectsRepeat(from) {
		return false
	}
	if w.done && msg.GetError() == "" && (w.failed || !slices.Contains(w.place.stored, from)) {
		l.pruneStray(w.id, w.version, uint32(len(w.payload)), from)
	}
	return true
}

// pruneStray tells the member in slot, which has just acknowledged a copy
// of version of id that no index entry will name, to drop it. Unlike
// pruneCopies it goes to a member not seen live too: a member stopped for
// longer than its heartbeat timeout (SIGSTOP, a frozen VM) acknowledges
// the copies queued to it as soon as it runs again, before the membership
// actor has heard from it, and those copies (hedged, or replaced after a
// timeout) are the strays.
func (l *leader) pruneStray(id int64, version uint64, size uint32, slot uint32) {
	if v := l.slot(slot); v != nil && v.storage != nil {
		l.send(v.storage, &messages.PruneBatch{Requests: []*messages.PruneRequest{{Id: id, Version: version, Size: size}}})
	}
}

// storeFailed handles a store that timed out or whose member went down.
func (l *leader) storeFailed(o *outstanding, reason string) {
	w := o.write
	if w.done {
		return
	}
	l.log.Warn().Uint32("slot", o.slot).Str("reason", reason).Int64("id", w.id).Msg("store failed; replacing member")
	l.countReplicaFailure(reason)
	if v := l.slot(o.slot); reason == "timeout" && v != nil && v.usable() {
		l.selectFor(w, w.place.copyTimedOut(o.slot))
	} else {
		l.selectFor(w, w.place.copyFailed())
	}
	l.checkWrite(w)
}

// indexedOn reports whether the index names slot as a holder of version
// of id.
// ownVersion reports whether version was minted by this coordinator, in
// its term's epoch.
func (l *leader) ownVersion(version uint64) bool {
	return l.active && l.epoch != 0 && version>>meta.EpochShift == l.epoch
}

func (l *leader) indexedOn(id int64, version uint64, slot uint32) bool {
	v, replicas, ok := l.state.Lookup(id)
	return ok && v == version && slices.Contains(replicas, slot)
}

// checkWrite proposes a write that has all its copies, or fails one that
// can no longer get them.
func (l *leader) checkWrite(w *write) {
	switch {
	case w.done:
	case w.place.complete():
		entry := &messages.LogEntry{Entry: &messages.LogEntry_Put{Put: &messages.PutEntry{
			Id: w.id, Version: w.version, Replicas: w.place.replicas(), Size: uint32(len(w.payload)),
		}}, Request: w.ref.id()}
		p := &proposal{entry: entry, ref: w.ref, started: time.Now()}
		if !plantedBug(l, w, p) { // only planted-bug builds of the fault suite answer here
			w.done = true
			return
		}
		if err := l.propose(p); err != nil {
			l.failWrite(w, "internal error: the write was "+err.Error()+"; nothing was stored")
			return
		}
		w.done = true
	case w.place.hopeless():
		l.failWrite(w, fmt.Sprintf("could not store %d copies: have %d, need %d (live members: %d)",
			w.place.need, len(w.place.stored), w.place.need, l.liveCount()))
	}
}

func (l *leader) failWrite(w *write, reason string) {
	if w.done {
		return
	}
	w.done = true
	w.failed = true
	l.replyError(w.ref, reason)
	// The copies already stored will never be read: drop them. Copies
	// still in flight are dropped when their acks arrive (storeAck).
	l.pruneCopies(w.id, w.version, uint32(len(w.payload)), w.place.stored)
	l.finish(w.id)
}

// refusingNote tells a client that some live members were not counted
// because they take no writes, or is empty.
func (l *leader) refusingNote() string {
	n := 0
	for i := range l.members {
		if v := &l.members[i]; v.usable() && !v.writable() {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d more live but refusing writes: disk full)", n)
}

func (l *leader) liveCount() int {
	n := 0
	for i := range l.members {
		if l.members[i].usable() {
			n++
		}
	}
	return n
}

// startRead queues a GET for the next read barrier: it reads the index
// only once consensus confirmed this gateway still leads.
func (l *leader) startRead(ref clientRef, msg *messages.ClientRequest) {
	l.awaitBarrier(&read{ref: ref, id: msg.GetId(), started: time.Now()})
}

// beginRead (re)starts a read at the currently indexed version, trying the
// least-busy live replica first.
func (l *leader) beginRead(r *read) {
	version, replicas, size, ok := l.state.LookupSized(r.id)
	if !r.lookedUp {
		// The read is ordered now: writes of the id queued behind it may
		// start (once this turn ends, after it).
		r.lookedUp = true
		defer l.lookedUp(r.id)
	}
	if !ok {
		r.done = true
		l.reply(r.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_NOT_FOUND})
		return
	}
	r.version, r.size, r.next, r.timedOut = version, uint64(size), 0, false
	l.recount(&r.ref, int64(size))
	r.candidates = r.candidates[:0]
	for _, slot := range replicas {
		if v := l.slot(slot); v != nil && v.usable() {
			r.candidates = append(r.candidates, slot)
		}
	}
	// Least in-flight requests first; equal ones in random order.
	rand.Shuffle(len(r.candidates), func(i, j int) {
		r.candidates[i], r.candidates[j] = r.candidates[j], r.candidates[i]
	})
	slices.SortStableFunc(r.candidates, func(a, b uint32) int {
		return l.members[a].inflight - l.members[b].inflight
	})
	l.nextReplica(r)
}

func (l *leader) nextReplica(r *read) {
	if r.done {
		return
	}
	for r.next < len(r.candidates) {
		slot := r.candidates[r.next]
		r.next++
		v := l.slot(slot)
		if !v.usable() {
			continue
		}
		// The reply carries the message back, so a read counts its bytes
		// in flight to the member as a copy does (memberTimeLimit).
		o := &outstanding{slot: slot, read: r, bytes: r.size}
		id := l.track(o, l.cfg.ReadTimeout)
		if !r.hedged && r.next < len(r.candidates) {
			l.addEarly(id, o, hedge, l.cfg.ReadHedgeAfter)
		}
		l.queueRead(slot, &messages.ReadRequest{RequestId: id, Id: r.id, Version: r.version})
		return
	}
	if r.inflight > 0 {
		return // a replica asked earlier (hedgeRead) may still answer
	}
	// Every live replica failed. If the index moved on meanwhile (a newer
	// SET or a DEL committed and pruned what we were reading), start over.
	if version, _, ok := l.state.Lookup(r.id); (!ok || version != r.version) && r.restarts < maxReadRestarts {
		r.restarts++
		l.beginRead(r)
		return
	}
	// A replica that did not answer may have answered into a lost
	// connection: ask the live replicas again.
	if r.timedOut && r.rounds < maxReadRounds {
		r.rounds++
		l.beginRead(r)
		return
	}
	r.done = true
	if len(r.candidates) == 0 {
		l.replyError(r.ref, fmt.Sprintf("no live member holds id %d", r.id))
		return
	}
	l.replyError(r.ref, fmt.Sprintf("no replica could serve id %d (tried %d)", r.id, len(r.candidates)))
}

func (l *leader) readReply(from uint32, fromKnown bool, msg *messages.ReadReply) {
	if fromKnown {
		l.heardFrom(from)
	}
	pending, found := l.requests[msg.GetRequestId()]
	if !found || !answers(pending, from, fromKnown, msg.GetId(), msg.GetVersion()) {
		return // late, or an answer to an earlier incarnation's request
	}
	o, ok := l.settle(msg.GetRequestId())
	if !ok || o.read == nil {
		return
	}
	r := o.read
	if r.done {
		return
	}
	if msg.GetStatus() == messages.ReadStatus_READ_OK {
		r.done = true
		l.reply(r.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_VALUE, Payload: msg.GetPayload()})
		return
	}
	l.log.Warn().Uint32("slot", o.slot).Int64("id", r.id).Uint64("version", r.version).
		Stringer("status", msg.GetStatus()).Str("error", msg.GetError()).Msg("replica could not serve read; trying the next")
	l.countReadFallback(msg.GetStatus().String())
	l.nextReplica(r)
}

// hedgeRead asks the next replica too for the read o, still unanswered:
// the member may be stopped, or its answer lost on the way. The first
// good answer is the GET's; the other is ignored.
func (l *leader) hedgeRead(o *outstanding) {
	if o.read == nil || o.read.done || o.read.hedged {
		return
	}
	r := o.read
	r.hedged = true
	if m := l.cfg.Metrics; m != nil {
		m.ReadHedges.Inc()
	}
	l.log.Info().Uint32("slot", o.slot).Int64("id", r.id).Dur("waited", l.now().Sub(o.sent)).
		Msg("no answer to a read yet; asking the next replica too")
	l.nextReplica(r)
}

func (l *leader) readFailed(o *outstanding, reason string) {
	if o.read.done {
		return // the other replica asked (hedgeRead) answered
	}
	if reason == "timeout" {
		o.read.timedOut = true
	}
	l.log.Warn().Uint32("slot", o.slot).Int64("id", o.read.id).Str("reason", reason).Msg("read failed; trying the next replica")
	l.countReadFallback(reason)
	l.nextReplica(o.read)
}

// expire fails requests whose deadline passed, and resends or hedges
// those whose answer is late.
func (l *leader) expire(now time.Time) {
	for item, ok := l.deadlines.due(now); ok; item, ok = l.deadlines.due(now) {
		if item.kind == timeout {
			if o, ok := l.settle(item.id); ok {
				l.failed(o, "timeout")
			}
			continue
		}
		o, ok := l.requests[item.id]
		switch {
		case !ok: // answered meanwhile
		case item.kind == resend:
			l.resendStore(item.id, o)
		case o.read != nil:
			l.hedgeRead(o)
		default:
			l.hedgeStoreIfQuiet(item.id, o, now)
		}
	}
}

// failed routes a failed member request to its write or read.
func (l *leader) failed(o *outstanding, reason string) {
	if o.write != nil {
		l.storeFailed(o, reason)
	} else if o.read != nil {
		l.readFailed(o, reason)
	}
}

// memberDown fails every request in flight to a member at once, so clients
// are not held up by a dead member.
func (l *leader) memberDown(slot uint32) {
	var ids []uint64
	for id, o := range l.requests {
		if o.slot == slot {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // fail in send order
	for _, id := range ids {
		if o, ok := l.settle(id); ok {
			l.failed(o, "member_down")
		}
	}
}

func (l *leader) countReplicaFailure(reason string) {
	if m := l.cfg.Metrics; m != nil {
		m.ReplicaFailures.WithLabelValues(reason).Inc()
	}
}

func (l *leader) countReadFallback(reason string) {
	if m := l.cfg.Metrics; m != nil {
		m.ReadFallbacks.WithLabelValues(reason).Inc()
	}
}
