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
	DefaultMaxMessageBytes  = 4 << 20
	DefaultMaxInflightBytes = 256 << 20
	DefaultMaxPipeline      = 1024
	DefaultMaxConnections   = 1024
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultLineTimeout      = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
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
	budget := newByteBudget(cfg.MaxInflightBytes, cfg.Metrics) // one per gateway, across restarts
	return func() actor.Actor { return &gatewayActor{cfg: cfg, budget: budget} }, nil
}

type gatewayActor struct {
	cfg         Config
	budget      *byteBudget
	sessions    uint64 // sessions ever started, for names
	open        int    // sessions running now
	undelivered *eventstream.Subscription
}

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
	case *accepted:
		if g.open >= g.cfg.MaxConnections {
			g.refuse(msg.conn)
			return
		}
		g.open++
		g.sessions++
		name := fmt.Sprintf("session/%d", g.sessions)
		props := g.cfg.Tree.Props("session", newSession(g.cfg, msg.conn, g.budget))
		if _, err := ctx.SpawnNamed(props, name); err != nil {
			g.cfg.Logger.Error().Err(err).Msg("spawn session")
			_ = msg.conn.Close()
		}
	}
}

// refuse answers a connection over the limit and closes it, without
// holding up the gateway actor on a client that does not read.
func (g *gatewayActor) refuse(conn net.Conn) {
	if m := g.cfg.Metrics; m != nil {
		m.Refused.Inc()
	}
	reply := fmt.Sprintf("%stoo many connections (max %d)%s", codec.ErrorPrefix, g.cfg.MaxConnections, codec.LineEnd)
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
