// Package actortest gives tests real protoactor actor systems that keep
// quiet: protoactor's own log lines would bury the test's output.
package actortest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// QuietLogger is a protoactor logger factory that discards every line
// (pass it to actor.WithLoggerFactory).
func QuietLogger(*actor.ActorSystem) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// QuietSystem returns an actor system that does not log, configured by
// opts, and shuts it down when the test ends.
func QuietSystem(t testing.TB, opts ...actor.ConfigOption) *actor.ActorSystem {
	t.Helper()
	system := actor.NewActorSystem(append([]actor.ConfigOption{actor.WithLoggerFactory(QuietLogger)}, opts...)...)
	t.Cleanup(system.Shutdown)
	return system
}
