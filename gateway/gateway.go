// Package gateway serves HaToKuSe on a gateway node: the gateway actor owns
// the TCP listener and supervises one session actor per client connection;
// a session parses lines (with gateway/codec), sends SET/GET/DEL to the
// leader and writes the replies back in request order.
package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/gateway/codec"
)

// Config configures the gateway actor and its sessions.
type Config struct {
	// Listener is the HaToKuSe listener; the gateway actor closes it when
	// it stops.
	Listener net.Listener
	// Leader receives ClientRequests.
	Leader *actor.PID
	// Prompt turns on the banner and the "tolerex> " prompt.
	Prompt bool
	// MaxMessageBytes bounds a SET message.
	MaxMessageBytes int
	// MaxLineBytes bounds a request line, terminator included; 0 means
	// MaxMessageBytes plus room for "SET <id> " and the terminator.
	MaxLineBytes int
	// MaxPipeline bounds the requests one connection may have in flight;
	// a client that pipelines more is simply not read until replies drain.
	MaxPipeline int
	// MaxInflightBytes bounds the client bytes the gateway holds at once
	// across all connections (SET messages until answered, GET replies
	// until written, lines longer than the reader's buffer while they are
	// read); readers wait while it is reached. It must be at least
	// MaxLineBytes.
	MaxInflightBytes int64
	// MaxConnections bounds concurrent client connections; one more is
	// answered "ERROR: too many connections" and closed.
	MaxConnections int
	// IdleTimeout closes a connection that starts no request for this long.
	IdleTimeout time.Duration
	// LineTimeout closes a connection whose request line is not complete
	// this long after its first byte (slow-loris clients).
	LineTimeout time.Duration
	// WriteTimeout closes a connection that does not accept its replies
	// for this long.
	WriteTimeout time.Duration
	// LeaderProblem, if set, says why the leader cannot serve; requests
	// that cannot reach it are answered with that reason.
	LeaderProblem func() error
	Tree          *tree.Registry
	Metrics       *Metrics
	Logger        zerolog.Logger
}

// Defaults for Config.
const (
	DefaultMaxMessageBytes = 4 << 20
	// DefaultMaxInflightBytes is four of the largest messages. It also
	// bounds what the leader works on at once (leader.Config.MaxHeldBytes)
	// and what a follower forwards (a quarter: one largest message). At
	// 64 MiB, 4 MB SETs from 48 connections on 3 gateways queued so much
	// copying on the leader's one core that its Raft heartbeats waited past
	// the election timeout: a leader change in 2 of 20 runs, against none
	// in 34 at 16 MiB, which also stored 30% more SETs a second with a
	// third of the memory (docs/benchmarks.md, "Large messages").
	DefaultMaxInflightBytes = 4 * DefaultMaxMessageBytes
	DefaultMaxPipeline      = 1024
	DefaultMaxConnections   = 1024
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultLineTimeout      = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	// DefaultDrainTimeout bounds a stopping gateway's Drain: long enough
	// for a leadership transfer and the answers to the requests held,
	// short enough to stop well within a supervisor's grace period.
	DefaultDrainTimeout = 5 * time.Second
	// LineOverhead is room for "SET <id> " and the terminator around the
	// largest message: the longest request line is the largest message
	// plus LineOverhead.
	LineOverhead = 64
)

func (c *Config) validate() error {
	if c.Listener == nil || c.Leader == nil || c.Tree == nil {
		return errors.New("gateway config needs a listener, a leader and a tree registry")
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = c.MaxMessageBytes + LineOverhead
	}
	if c.MaxPipeline <= 0 {
		c.MaxPipeline = DefaultMaxPipeline
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxInflightBytes < int64(c.MaxLineBytes) {
		return fmt.Errorf("max in-flight bytes %d is below the longest request line, %d bytes (the largest message and %d more)",
			c.MaxInflightBytes, c.MaxLineBytes, c.MaxLineBytes-c.MaxMessageBytes)
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.IdleTimeout, DefaultIdleTimeout}, {&c.LineTimeout, DefaultLineTimeout}, {&c.WriteTimeout, DefaultWriteTimeout}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return nil
}

// New returns the producer of the gateway actor; spawn it named
// messages.GatewayActor.
func New(cfg Config) (actor.Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// One per gateway, across restarts of its actor.
	budget := newByteBudget(cfg.MaxInflightBytes, cfg.Metrics)
	draining := &atomic.Bool{}
	return func() actor.Actor { return &gatewayActor{cfg: cfg, budget: budget, draining: draining} }, nil
}

type gatewayActor struct {
	cfg         Config
	budget      *byteBudget
	sessions    uint64 // sessions ever started, for names
	open        int    // sessions running now
	undelivered *eventstream.Subscription
	// draining is set by Drain, for good; sessions read it.
	draining *atomic.Bool
	// drainWaiters are the senders of Drain, answered once no session is
	// left.
	drainWaiters []*actor.PID
}

// Drain asks the gateway actor to let its clients go before the gateway
// stops: it stops accepting connections, every request read from then on
// is refused with the definite ShuttingDownError (clients with several
// gateways' addresses send it to the next), the requests already taken are
// answered as usual, and each connection is closed once every reply it is
// owed was written and its client sent nothing for DrainQuiet (or closed
// it). The actor answers the sender with *Drained once no connection is
// left. There is no way back: a drained gateway is about to stop.
type Drain struct{}

// Drained answers Drain: no client connection is left.
type Drained struct{}

// ShuttingDownError is the reply, without "ERROR: ", to a SET, GET or DEL
// read by a draining gateway: nothing was run.
const ShuttingDownError = codec.UnavailablePrefix + "this gateway is shutting down; the request was not run, send it to another gateway"

// DrainQuiet is how long a draining gateway waits for a client's next
// request before it closes the connection (once the client is owed no
// reply).
const DrainQuiet = 250 * time.Millisecond

// drainNow tells a session that the gateway drains: wake its reader.
type drainNow struct{}

type accepted struct{ conn net.Conn }

func (g *gatewayActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		g.undelivered = answerUndelivered(ctx.ActorSystem(), g.cfg.LeaderProblem)
		go acceptLoop(g.cfg.Listener, g.cfg.Logger, func(c net.Conn) { root.Send(self, &accepted{conn: c}) })
		g.cfg.Logger.Info().Str("addr", g.cfg.Listener.Addr().String()).Bool("prompt", g.cfg.Prompt).Msg("HaToKuSe listening")
	case *actor.Stopping:
		_ = g.cfg.Listener.Close()
		if g.undelivered != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(g.undelivered)
		}
	case *actor.Terminated:
		g.open--
		g.answerDrained(ctx)
	case *Drain:
		g.drain(ctx)
	case *accepted:
		if g.draining.Load() {
			g.refuse(msg.conn, codec.ErrorPrefix+ShuttingDownError)
			return
		}
		if g.open >= g.cfg.MaxConnections {
			if m := g.cfg.Metrics; m != nil {
				m.Refused.Inc()
			}
			g.refuse(msg.conn, fmt.Sprintf("%stoo many connections (max %d)", codec.ErrorPrefix, g.cfg.MaxConnections))
			return
		}
		g.open++
		g.sessions++
		name := fmt.Sprintf("session/%d", g.sessions)
		props := g.cfg.Tree.Props("session", newSession(g.cfg, msg.conn, g.budget, g.draining))
		if _, err := ctx.SpawnNamed(props, name); err != nil {
			g.cfg.Logger.Error().Err(err).Msg("spawn session")
			_ = msg.conn.Close()
		}
	}
}

// drain starts draining (see Drain) and remembers who to tell when it is
// done.
func (g *gatewayActor) drain(ctx actor.Context) {
	if !g.draining.Swap(true) {
		_ = g.cfg.Listener.Close()
		for _, session := range ctx.Children() {
			ctx.Send(session, drainNow{})
		}
		g.cfg.Logger.Info().Int("connections", g.open).Msg("draining: no new connections or requests; answering those taken")
	}
	if sender := ctx.Sender(); sender != nil {
		g.drainWaiters = append(g.drainWaiters, sender)
	}
	g.answerDrained(ctx)
}

// answerDrained tells the senders of Drain once no session is left.
func (g *gatewayActor) answerDrained(ctx actor.Context) {
	if !g.draining.Load() || g.open > 0 {
		return
	}
	for _, waiter := range g.drainWaiters {
		ctx.Send(waiter, &Drained{})
	}
	g.drainWaiters = nil
}

// refuse answers a connection the gateway will not serve (over the limit,
// or draining) with reply and closes it, without holding up the gateway
// actor on a client that does not read.
func (g *gatewayActor) refuse(conn net.Conn, reply string) {
	reply += codec.LineEnd
	go func() {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(conn, reply)
		_ = conn.Close()
	}()
}

// HandleFailure stops a crashed session: its connection state cannot be
// rebuilt, so the client is disconnected (and may reconnect) while every
// other session goes on.
func (g *gatewayActor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason interface{}, _ interface{}) {
	text, stack := tree.Reason(reason)
	g.cfg.Logger.Error().Str("actor", child.Id).Str("reason", text).Str("stack", stack).Msg("session crashed; closing its connection")
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
	sup.StopChildren(child)
}

// acceptLoop accepts connections until the listener is closed, backing off
// on temporary errors (such as running out of file descriptors).
func acceptLoop(lis net.Listener, log zerolog.Logger, handle func(net.Conn)) {
	var backoff time.Duration
	for {
		conn, err := lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		handle(conn)
	}
}
