package main

import (
	"fmt"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
)

// How dev supervises its processes (restart backoff: the launcher's
// defaults, 500 ms doubling to 10 s, reset after 30 s up).
const (
	// devStopGrace is how long a process has after SIGTERM on Ctrl-C.
	devStopGrace = 10 * time.Second
	// devReadyPoll is how often dev asks every process's /readyz, and
	// devReadyTimeout bounds one request (a paused process does not
	// answer).
	devReadyPoll    = time.Second
	devReadyTimeout = 2 * time.Second
	// devReadyLimit is how long dev waits for "cluster ready".
	devReadyLimit = 30 * time.Second
)

// devEventLine is the line dev prints (after a time stamp) for what the
// supervisor reports about a process; grace is the stop grace period.
func devEventLine(e local.Event, grace time.Duration) string {
	n := e.Node
	switch e.Kind {
	case local.Started:
		verb := "started"
		if e.Restarts > 0 {
			verb = fmt.Sprintf("restarted (restart #%d)", e.Restarts)
		}
		return fmt.Sprintf("%-9s %s pid=%d node=%s admin=%s log=%s", n.Name, verb, e.Pid, n.NodeAddr, n.AdminAddr, n.LogPath)
	case local.Exited:
		return fmt.Sprintf("%s exited (%v); restarting in %s", n.Name, e.Err, e.Backoff)
	case local.Stopped:
		if !e.StoppedInTime() {
			return fmt.Sprintf("%s did not stop within %s; killed", n.Name, grace)
		}
		return fmt.Sprintf("%s stopped", n.Name)
	case local.NotReady:
		return fmt.Sprintf("%-9s not ready for %s: %s (admin %s)", n.Name, roundSeconds(e.For), e.Reason, n.AdminAddr)
	case local.ReadyAgain:
		return fmt.Sprintf("%-9s ready again (was not ready for %s)", n.Name, roundSeconds(e.For))
	}
	return fmt.Sprintf("%s: event %d", n.Name, e.Kind)
}

func roundSeconds(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}
