package gateway

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// A session is one client connection. Three parties share the work:
//   - a reader goroutine reads and parses lines and, after taking a slot
//     of the pipeline window for each, numbers them (intake): SET, GET and
//     DEL go straight to the leader with the session actor as sender, the
//     rest to the session actor;
//   - the session actor answers local commands (PING, HELP, errors)
//     itself, receives the leader's replies, and puts all replies back
//     into command order;
//   - a writer goroutine writes replies (flushing when it runs out of
//     work, so pipelined replies share packets) and frees window slots.
//
// The window bounds a connection's memory: at most MaxPipeline commands
// are in flight, so at most that many replies are queued for the writer.
type session struct {
	cfg      Config
	budget   *byteBudget
	conn     net.Conn
	log      zerolog.Logger
	out      chan outItem
	window   chan struct{}
	done     chan struct{} // closed when the session stops: frees its goroutines
	inflight *inflight
	draining *atomic.Bool // the gateway's: set once it drains (Drain)

	nextWrite uint64 // the next reply to hand to the writer
	ready     map[uint64]outItem
	readerEOF bool
	total     uint64 // commands the reader numbered, once readerEOF
	closing   bool
}

// commandInfo remembers what a numbered command was, for metrics, and
// the in-flight bytes it holds until its reply.
type commandInfo struct {
	kind    codec.Kind
	start   time.Time
	charged int64
}

// outItem is one reply for the writer, or the instruction to close;
// charged is the in-flight bytes the writer releases once it wrote it.
type outItem struct {
	data    []byte
	close   bool
	charged int64
}

// writerDone reports that the writer stopped.
type writerDone struct{ err error }

func newSession(cfg Config, conn net.Conn, budget *byteBudget, draining *atomic.Bool) actor.Producer {
	return func() actor.Actor {
		return &session{cfg: cfg, conn: conn, budget: budget, draining: draining}
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopped:
		close(s.done)
		_ = s.conn.Close()
		s.releaseAll()
		if m := s.cfg.Metrics; m != nil {
			m.Connections.Dec()
		}
	case *localBatch:
		for _, a := range msg.answers {
			s.local(ctx, a)
		}
	case *messages.ClientReplyBatch:
		for _, r := range msg.GetReplies() {
			s.leaderReply(ctx, r)
		}
	case *messages.ClientReply:
		s.leaderReply(ctx, msg)
	case *readerDone:
		s.readerEOF, s.total = true, msg.total
		if msg.err != nil && !errors.Is(msg.err, net.ErrClosed) {
			s.log.Debug().Err(msg.err).Msg("read failed")
		}
		s.maybeClose(ctx)
	case drainNow:
		// Wake a reader waiting for the client: from now on it waits
		// DrainQuiet at most (deadlineReader).
		_ = s.conn.SetReadDeadline(time.Now().Add(DrainQuiet))
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
	s.inflight = newInflight()
	s.window = make(chan struct{}, s.cfg.MaxPipeline)
	s.out = make(chan outItem, s.cfg.MaxPipeline+1)
	s.done = make(chan struct{})
	if m := s.cfg.Metrics; m != nil {
		m.Connections.Inc()
		m.ConnectionsTotal.Inc()
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	limits := connLimits{
		maxLine:      s.cfg.MaxLineBytes,
		idleTimeout:  s.cfg.IdleTimeout,
		lineTimeout:  s.cfg.LineTimeout,
		writeTimeout: s.cfg.WriteTimeout,
	}
	in := &intake{
		root: root, leader: s.cfg.Leader, session: self, inflight: s.inflight, budget: s.budget,
		maxLine: s.cfg.MaxLineBytes, maxMessage: s.cfg.MaxMessageBytes, draining: s.draining,
	}
	go readLoop(s.conn, limits, s.draining, s.window, s.done, in)
	var greeting []byte
	if s.cfg.Prompt {
		greeting = []byte(codec.Banner + codec.LineEnd + codec.Prompt)
	}
	go writeLoop(s.conn, limits.writeTimeout, greeting, s.out, s.window, s.done, s.budget, func(msg any) { root.Send(self, msg) })
	s.log.Debug().Msg("client connected")
}

// local answers a command without the leader. An empty reply writes only
// the prompt (a blank line).
func (s *session) local(ctx actor.Context, a localAnswer) {
	var data []byte
	switch {
	case a.quit:
		data = []byte(a.reply + codec.LineEnd)
	case a.reply == "":
		data = s.withPrompt(nil)
	default:
		data = s.withPrompt(codec.AppendReply(nil, []byte(a.reply)))
	}
	s.observe(a.info, resultOf(a.info.kind))
	s.deliver(ctx, a.seq, outItem{data: data, close: a.quit})
}

func (s *session) leaderReply(ctx actor.Context, r *messages.ClientReply) {
	seq := r.GetRequestId()
	info, ok := s.inflight.take(seq)
	if !ok {
		return
	}
	s.budget.release(info.charged) // the SET's message is stored or failed
	var data []byte
	var charged int64
	result := "ok"
	switch r.GetCode() {
	case messages.ReplyCode_REPLY_OK:
		data = codec.AppendReply(nil, []byte(codec.ReplyOK))
	case messages.ReplyCode_REPLY_VALUE:
		// Held until written; counted, not waited for: it is in memory.
		charged = int64(len(r.GetPayload()))
		s.budget.charge(charged)
		data = codec.AppendReply(make([]byte, 0, len(r.GetPayload())+len(codec.LineEnd)+len(codec.Prompt)), r.GetPayload())
	case messages.ReplyCode_REPLY_NOT_FOUND:
		data, result = codec.AppendReply(nil, []byte(codec.ReplyNotFound)), "not_found"
	default:
		data, result = codec.AppendError(nil, r.GetError()), "error"
	}
	s.observe(info, result)
	s.deliver(ctx, seq, outItem{data: s.withPrompt(data), charged: charged})
}

// releaseAll gives back the in-flight bytes of everything the stopped
// session still holds: requests not answered (their replies will find no
// session) and replies not written. The writer releases what it takes.
func (s *session) releaseAll() {
	s.budget.release(s.inflight.close())
	for _, item := range s.ready {
		s.budget.release(item.charged)
	}
	s.ready = nil
	for {
		select {
		case item := <-s.out:
			s.budget.release(item.charged)
		default:
			return
		}
	}
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
		s.budget.release(item.charged)
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
	if s.closing || !s.readerEOF || s.nextWrite != s.total {
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

// resultOf is the metrics result of a command the session answered itself.
// A SET, GET or DEL answered so was refused without running it (the
// gateway drains): an error.
func resultOf(kind codec.Kind) string {
	switch kind {
	case codec.KindInvalid:
		return "invalid"
	case codec.KindSet, codec.KindGet, codec.KindDel:
		return "error"
	}
	return "ok"
}
