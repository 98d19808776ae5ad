// Package gateway serves HaToKuSe on a gateway node: the gateway actor owns
// the TCP listener and supervises one session actor per client connection;
// a session parses lines (with gateway/codec), sends SET/GET/DEL to the
// leader and writes the replies back in request order.
package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
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
	Tree        *tree.Registry
	Metrics     *Metrics
	Logger      zerolog.Logger
}

// Defaults for Config.
const (
	DefaultMaxMessageBytes = 1 << 20
	DefaultMaxPipeline     = 1024
	// lineOverhead is room for "SET <id> " and the terminator around the
	// largest message.
	lineOverhead = 64
)

func (c *Config) validate() error {
	if c.Listener == nil || c.Leader == nil || c.Tree == nil {
		return errors.New("gateway config needs a listener, a leader and a tree registry")
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = c.MaxMessageBytes + lineOverhead
	}
	if c.MaxPipeline <= 0 {
		c.MaxPipeline = DefaultMaxPipeline
	}
	return nil
}

// New returns the producer of the gateway actor; spawn it named
// messages.GatewayActor.
func New(cfg Config) (actor.Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return func() actor.Actor { return &gatewayActor{cfg: cfg} }, nil
}

type gatewayActor struct {
	cfg      Config
	sessions uint64
}

type accepted struct{ conn net.Conn }

func (g *gatewayActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		go acceptLoop(g.cfg.Listener, g.cfg.Logger, func(c net.Conn) { root.Send(self, &accepted{conn: c}) })
		g.cfg.Logger.Info().Str("addr", g.cfg.Listener.Addr().String()).Bool("prompt", g.cfg.Prompt).Msg("HaToKuSe listening")
	case *actor.Stopping:
		_ = g.cfg.Listener.Close()
	case *accepted:
		g.sessions++
		name := fmt.Sprintf("session/%d", g.sessions)
		props := g.cfg.Tree.Props("session", newSession(g.cfg, msg.conn))
		if _, err := ctx.SpawnNamed(props, name); err != nil {
			g.cfg.Logger.Error().Err(err).Msg("spawn session")
			_ = msg.conn.Close()
		}
	}
}

// HandleFailure stops a crashed session: its connection state cannot be
// rebuilt, so the client is disconnected (and may reconnect) while every
// other session goes on.
func (g *gatewayActor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason interface{}, _ interface{}) {
	g.cfg.Logger.Error().Str("actor", child.Id).Interface("reason", reason).Msg("session crashed; closing its connection")
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
