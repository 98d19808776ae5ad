package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// intake is the session's reader side: it numbers every command the
// reader parses and routes it. SET, GET and DEL go straight to the leader,
// with the session actor as their sender so the replies come back to it;
// everything else (PING, HELP, QUIT, errors) goes to the session actor,
// which answers it. The session puts all replies back in command order by
// number. Sending requests past the session actor saves a mailbox turn
// and a goroutine hand-off per request.
type intake struct {
	root       *actor.RootContext
	leader     *actor.PID
	session    *actor.PID
	inflight   *inflight
	budget     *byteBudget
	maxLine    int
	maxMessage int
	draining   *atomic.Bool // the gateway drains: refuse requests

	nextSeq  uint64
	requests []*messages.ClientRequest
	local    []localAnswer
}

// localAnswer is a numbered command the session answers itself.
type localAnswer struct {
	seq   uint64
	info  commandInfo
	reply string // "" writes only the prompt (a blank line)
	quit  bool   // close after the reply
}

// Messages from the reader side to the session actor.
type (
	// localBatch carries answers in command order.
	localBatch struct{ answers []localAnswer }
	// readerDone reports the end of input after commands 0..total-1.
	readerDone struct {
		total uint64
		err   error
	}
)

// command numbers a parsed command and queues it for the leader or the
// session. charged is the in-flight bytes the command holds (a SET's
// message); they are released with its reply, or here if it is not sent.
func (in *intake) command(cmd codec.Command, start time.Time, charged int64) {
	if cmd.Kind != codec.KindSet {
		in.budget.release(charged) // only a SET's message is held
		charged = 0
	}
	info := commandInfo{kind: cmd.Kind, start: start, charged: charged}
	switch cmd.Kind {
	case codec.KindSet, codec.KindGet, codec.KindDel:
		if len(cmd.Message) > in.maxMessage {
			in.budget.release(charged)
			in.invalid(start, fmt.Sprintf("%smessage too long (max %d bytes)", codec.ErrorPrefix, in.maxMessage), false)
			return
		}
		if in.draining != nil && in.draining.Load() {
			in.budget.release(charged)
			in.answer(info, codec.ErrorPrefix+ShuttingDownError, false)
			return
		}
		seq := in.number()
		if !in.inflight.add(seq, info) {
			in.budget.release(charged) // the session is gone; nobody sends it
			return
		}
		req := &messages.ClientRequest{RequestId: seq, Id: cmd.ID, Payload: cmd.Message}
		switch cmd.Kind {
		case codec.KindSet:
			req.Op = messages.Op_OP_SET
		case codec.KindGet:
			req.Op = messages.Op_OP_GET
		default:
			req.Op = messages.Op_OP_DEL
		}
		in.requests = append(in.requests, req)
	case codec.KindEmpty:
		in.answer(info, "", false)
	case codec.KindPing:
		in.answer(info, codec.ReplyPong, false)
	case codec.KindHelp:
		in.answer(info, codec.Help, false)
	case codec.KindQuit:
		in.answer(info, codec.ReplyBye, true)
	default:
		in.answer(info, cmd.Reply, false)
	}
}

// lineTooLong answers a line over the limit (already discarded).
func (in *intake) lineTooLong(start time.Time) {
	in.invalid(start, fmt.Sprintf("%sline too long (max %d bytes)", codec.ErrorPrefix, in.maxLine), false)
}

// incompleteLine answers input that ended inside a line.
func (in *intake) incompleteLine(start time.Time) {
	in.invalid(start, codec.ErrorPrefix+"incomplete line at end of input (no newline); not run", false)
}

// timedOut answers a read timeout; the connection closes after it.
func (in *intake) timedOut(reply string) {
	in.invalid(time.Now(), reply, true)
}

func (in *intake) invalid(start time.Time, reply string, quit bool) {
	in.answer(commandInfo{kind: codec.KindInvalid, start: start}, reply, quit)
}

func (in *intake) answer(info commandInfo, reply string, quit bool) {
	in.local = append(in.local, localAnswer{seq: in.number(), info: info, reply: reply, quit: quit})
}

func (in *intake) number() uint64 {
	seq := in.nextSeq
	in.nextSeq++
	return seq
}

// queued is the number of commands not sent yet.
func (in *intake) queued() int { return len(in.requests) + len(in.local) }

// flush sends what is queued: requests to the leader in one batch,
// answers to the session in another.
func (in *intake) flush() {
	if len(in.requests) > 0 {
		in.root.RequestWithCustomSender(in.leader, &messages.ClientBatch{Requests: in.requests}, in.session)
		in.requests = nil
	}
	if len(in.local) > 0 {
		in.root.Send(in.session, &localBatch{answers: in.local})
		in.local = nil
	}
}

// finish sends what is queued and reports the end of input.
func (in *intake) finish(err error) {
	in.flush()
	in.root.Send(in.session, &readerDone{total: in.nextSeq, err: err})
}

// inflight holds what the session needs to know about the requests sent
// to the leader (for metrics) until their replies arrive. The reader adds,
// the session actor takes; a reply to a request it does not hold (say, a
// duplicate) is ignored.
type inflight struct {
	mu       sync.Mutex
	requests map[uint64]commandInfo
	closed   bool
}

func newInflight() *inflight {
	return &inflight{requests: make(map[uint64]commandInfo)}
}

// add holds a request until its reply; false once the session closed it.
func (f *inflight) add(seq uint64, info commandInfo) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.requests[seq] = info
	return true
}

// close drops every request (their replies will find no session) and
// returns the in-flight bytes they held.
func (f *inflight) close() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var charged int64
	for _, info := range f.requests {
		charged += info.charged
	}
	f.requests, f.closed = nil, true
	return charged
}

func (f *inflight) take(seq uint64) (commandInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.requests[seq]
	if ok {
		delete(f.requests, seq)
	}
	return info, ok
}
