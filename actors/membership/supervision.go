package membership

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
)

// Strategy supervises the membership actor: it restarts a crashed one
// (which forgets the members' liveness and asks the leader actor where
// leadership stands, see Resync) at most maxRestarts times a minute; one
// that keeps crashing is stopped, and onStop, if set, is told why (the
// gateway is then not ready: its leader would count every member down).
// Spawn the membership actor with root.Copy().WithGuardian(Strategy(...)).
func Strategy(log zerolog.Logger, onStop func(problem string)) actor.SupervisorStrategy {
	return &tree.CrashBudget{
		Log: log, Max: maxRestarts, Window: restartWindow,
		Restarted: "membership crashed; restarting it: it asks the leader actor where leadership stands, and members' heartbeats rebuild their liveness",
		Stopped:   "membership keeps crashing; stopping it: this gateway takes no member heartbeats until it is restarted",
		OnStop: func(failures int, reason string) {
			if onStop != nil {
				onStop(fmt.Sprintf("membership stopped after %d crashes within %s (restart the gateway); last: %s", failures, restartWindow, reason))
			}
		},
	}
}

const (
	maxRestarts   = 10
	restartWindow = time.Minute
)
