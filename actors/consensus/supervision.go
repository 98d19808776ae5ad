package consensus

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/tree"
)

// Strategy supervises the consensus actor: every crash is logged at error
// level with its panic value and stack, and the actor is restarted (it
// reopens the Raft log and rebuilds the state machine from it) at most
// maxRestarts times a minute. One that keeps crashing is stopped, and
// health says why, so the gateway's /readyz gives the reason rather than
// "no Raft leader known". Spawn the actor with
// root.Copy().WithGuardian(Strategy(log, health)).
func Strategy(log zerolog.Logger, health *Health) actor.SupervisorStrategy {
	return &tree.CrashBudget{
		Log: log, Max: maxRestarts, Window: restartWindow,
		Restarted: "consensus crashed; restarting it from the Raft log",
		Stopped:   "consensus keeps crashing; stopping it: this gateway takes no part in the Raft group until it is restarted",
		OnStop: func(failures int, reason string) {
			if health != nil {
				health.setProblem(fmt.Sprintf("consensus stopped after %d crashes within %s (restart the gateway); last: %s", failures, restartWindow, reason))
			}
		},
	}
}

const (
	maxRestarts   = 10
	restartWindow = time.Minute
)
