package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// A session is one client connection. Three parties share the work:
//   - a reader goroutine reads and parses lines and sends each command to
//     the session actor, after taking a slot of the pipeline window;
//   - the session actor numbers commands, answers local ones (PING, HELP,
//     errors) itself, sends SET/GET/DEL to the leader, and puts replies
//     back into request order;
//   - a writer goroutine writes replies (flushing when it runs out of
//     work, so pipelined replies share packets) and frees window slots.
//
// The window bounds a connection's memory: at most MaxPipeline commands
// are in flight, so at most that many replies are queued for the writer.
type session struct {
	cfg    Config
	conn   net.Conn
	log    zerolog.Logger
	out    chan outItem
	window chan struct{}
	done   chan struct{} // closed when the session stops: frees its goroutines

	nextSeq   uint64 // the next command's number
	nextWrite uint64 // the next reply to hand to the writer
	ready     map[uint64]outItem
	inflight  map[uint64]commandInfo
	readerEOF bool
	closing   bool
}

// commandInfo remembers what a numbered command was, for metrics.
type commandInfo struct {
	kind  codec.Kind
	start time.Time
}

// outItem is one reply for the writer, or the instruction to close.
type outItem struct {
	data  []byte
	close bool
}

// Messages from the reader goroutine.
type (
	// inputBatch carries what the reader parsed from one read: commands,
	// lineTooLong, incompleteLine or timedOut, in order.
	inputBatch struct{ items []any }
	command    struct {
		cmd   codec.Command
		start time.Time
	}
	// lineTooLong reports a line over MaxLineBytes (already discarded).
	lineTooLong struct{ start time.Time }
	// incompleteLine reports input that ended inside a line.
	incompleteLine struct{ start time.Time }
	// timedOut reports a read timeout; the reply is sent, then the
	// connection closes.
	timedOut   struct{ reply string }
	readerDone struct{ err error }
	writerDone struct{ err error }
)

func newSession(cfg Config, conn net.Conn) actor.Producer {
	return func() actor.Actor {
		return &session{cfg: cfg, conn: conn}
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopped:
		close(s.done)
		_ = s.conn.Close()
		if m := s.cfg.Metrics; m != nil {
			m.Connections.Dec()
		}
	case *inputBatch:
		s.input(ctx, msg.items)
	case *messages.ClientReplyBatch:
		for _, r := range msg.GetReplies() {
			s.leaderReply(ctx, r)
		}
	case *messages.ClientReply:
		s.leaderReply(ctx, msg)
	case *readerDone:
		s.readerEOF = true
		if msg.err != nil && !errors.Is(msg.err, net.ErrClosed) {
			s.log.Debug().Err(msg.err).Msg("read failed")
		}
		s.maybeClose(ctx)
	case *writerDone:
		if msg.err != nil {
			s.log.Debug().Err(msg.err).Msg("write failed; closing")
		}
		ctx.Stop(ctx.Self())
	}
}

func (s *session) start(ctx actor.Context) {
	s.log = s.cfg.Logger.With().Str("session", ctx.Self().Id).Str("remote", s.conn.RemoteAddr().String()).Logger()
	s.ready = make(map[uint64]outItem)
	s.inflight = make(map[uint64]commandInfo)
	s.window = make(chan struct{}, s.cfg.MaxPipeline)
	s.out = make(chan outItem, s.cfg.MaxPipeline+1)
	s.done = make(chan struct{})
	if m := s.cfg.Metrics; m != nil {
		m.Connections.Inc()
		m.ConnectionsTotal.Inc()
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	send := func(msg any) { root.Send(self, msg) }
	limits := connLimits{
		maxLine:      s.cfg.MaxLineBytes,
		idleTimeout:  s.cfg.IdleTimeout,
		lineTimeout:  s.cfg.LineTimeout,
		writeTimeout: s.cfg.WriteTimeout,
	}
	go readLoop(s.conn, limits, s.window, s.done, send)
	var greeting []byte
	if s.cfg.Prompt {
		greeting = []byte(codec.Banner + codec.LineEnd + codec.Prompt)
	}
	go writeLoop(s.conn, limits.writeTimeout, greeting, s.out, s.window, s.done, send)
	s.log.Debug().Msg("client connected")
}

// input numbers what the reader sent, answers what it can itself and
// sends the rest to the leader in one batch.
func (s *session) input(ctx actor.Context, items []any) {
	var batch []*messages.ClientRequest
	for _, item := range items {
		switch msg := item.(type) {
		case *command:
			if req := s.command(ctx, msg); req != nil {
				batch = append(batch, req)
			}
		case *lineTooLong:
			s.local(ctx, commandInfo{kind: codec.KindInvalid, start: msg.start},
				fmt.Sprintf("%sline too long (max %d bytes)", codec.ErrorPrefix, s.cfg.MaxLineBytes), false)
		case *incompleteLine:
			s.local(ctx, commandInfo{kind: codec.KindInvalid, start: msg.start},
				codec.ErrorPrefix+"incomplete line at end of input (no newline); not run", false)
		case *timedOut:
			s.log.Debug().Str("reason", msg.reply).Msg("closing")
			s.local(ctx, commandInfo{kind: codec.KindInvalid, start: time.Now()}, msg.reply, true)
		}
	}
	if len(batch) > 0 {
		ctx.Request(s.cfg.Leader, &messages.ClientBatch{Requests: batch})
	}
}

// command numbers a command and answers it, or returns the request the
// leader must answer.
func (s *session) command(ctx actor.Context, msg *command) *messages.ClientRequest {
	info := commandInfo{kind: msg.cmd.Kind, start: msg.start}
	switch msg.cmd.Kind {
	case codec.KindSet, codec.KindGet, codec.KindDel:
		if len(msg.cmd.Message) > s.cfg.MaxMessageBytes {
			s.local(ctx, commandInfo{kind: codec.KindInvalid, start: msg.start},
				fmt.Sprintf("%smessage too long (max %d bytes)", codec.ErrorPrefix, s.cfg.MaxMessageBytes), false)
			return nil
		}
		seq := s.nextSeq
		s.nextSeq++
		s.inflight[seq] = info
		req := &messages.ClientRequest{RequestId: seq, Id: msg.cmd.ID, Payload: msg.cmd.Message}
		switch msg.cmd.Kind {
		case codec.KindSet:
			req.Op = messages.Op_OP_SET
		case codec.KindGet:
			req.Op = messages.Op_OP_GET
		default:
			req.Op = messages.Op_OP_DEL
		}
		return req
	case codec.KindEmpty:
		s.local(ctx, info, "", false)
	case codec.KindPing:
		s.local(ctx, info, codec.ReplyPong, false)
	case codec.KindHelp:
		s.local(ctx, info, codec.Help, false)
	case codec.KindQuit:
		s.local(ctx, info, codec.ReplyBye, true)
	default:
		s.local(ctx, info, msg.cmd.Reply, false)
	}
	return nil
}

// local answers a command without the leader. An empty reply writes only
// the prompt (a blank line).
func (s *session) local(ctx actor.Context, info commandInfo, reply string, quit bool) {
	seq := s.nextSeq
	s.nextSeq++
	var data []byte
	switch {
	case quit:
		data = []byte(reply + codec.LineEnd)
	case reply == "":
		data = s.withPrompt(nil)
	default:
		data = s.withPrompt(codec.AppendReply(nil, []byte(reply)))
	}
	s.observe(info, resultOf(info.kind, reply))
	s.deliver(ctx, seq, outItem{data: data, close: quit})
}

func (s *session) leaderReply(ctx actor.Context, r *messages.ClientReply) {
	seq := r.GetRequestId()
	info, ok := s.inflight[seq]
	if !ok {
		return
	}
	delete(s.inflight, seq)
	var data []byte
	result := "ok"
	switch r.GetCode() {
	case messages.ReplyCode_REPLY_OK:
		data = codec.AppendReply(nil, []byte(codec.ReplyOK))
	case messages.ReplyCode_REPLY_VALUE:
		data = codec.AppendReply(make([]byte, 0, len(r.GetPayload())+len(codec.LineEnd)+len(codec.Prompt)), r.GetPayload())
	case messages.ReplyCode_REPLY_NOT_FOUND:
		data, result = codec.AppendReply(nil, []byte(codec.ReplyNotFound)), "not_found"
	default:
		data, result = codec.AppendError(nil, r.GetError()), "error"
	}
	s.observe(info, result)
	s.deliver(ctx, seq, outItem{data: s.withPrompt(data)})
}

func (s *session) withPrompt(data []byte) []byte {
	if s.cfg.Prompt {
		return append(data, codec.Prompt...)
	}
	return data
}

// deliver hands replies to the writer in request order.
func (s *session) deliver(ctx actor.Context, seq uint64, item outItem) {
	if s.closing {
		return
	}
	s.ready[seq] = item
	for {
		next, ok := s.ready[s.nextWrite]
		if !ok {
			break
		}
		delete(s.ready, s.nextWrite)
		s.nextWrite++
		s.out <- next // never blocks: the window bounds what is queued
		if next.close {
			s.closing = true
			return
		}
	}
	s.maybeClose(ctx)
}

// maybeClose closes the connection once the client stopped sending and
// every reply it is owed has been handed to the writer (a client that
// half-closes still gets all its replies).
func (s *session) maybeClose(ctx actor.Context) {
	if s.closing || !s.readerEOF || s.nextWrite != s.nextSeq {
		return
	}
	s.closing = true
	s.out <- outItem{close: true}
}

func (s *session) observe(info commandInfo, result string) {
	if m := s.cfg.Metrics; m != nil {
		m.observe(info.kind, result, time.Since(info.start))
	}
}

func resultOf(kind codec.Kind, reply string) string {
	if kind == codec.KindInvalid {
		return "invalid"
	}
	return "ok"
}
