package local

import (
	"context"
	"errors"
	"sync"
	"time"
)

// EventKind says what happened to a supervised node.
type EventKind int

// The events a Supervisor reports.
const (
	// Started: the process started (Restarts > 0: it was restarted).
	Started EventKind = iota + 1
	// Exited: the process exited on its own or could not start (Err); it
	// starts again after Backoff.
	Exited
	// Stopped: the supervision ended and the process stopped after SIGTERM
	// (Err wraps ErrStillRunning if it had to be killed).
	Stopped
	// NotReady: the process has been up but not ready for For (since it
	// started or was last ready); Reason is what /readyz said. Reported
	// once per stretch, even across restarts.
	NotReady
	// ReadyAgain: a process reported NotReady is ready again, after For.
	ReadyAgain
)

// Event is something a Supervisor reports about a node.
type Event struct {
	Kind EventKind
	Node *Node
	// Pid is the process id (Started).
	Pid int
	// Restarts counts the restarts before this start (Started).
	Restarts int
	// Err is the exit status or why the start failed (Exited, Stopped).
	Err error
	// Backoff is the wait before the restart (Exited).
	Backoff time.Duration
	// For is how long the node has been, or was, not ready (NotReady,
	// ReadyAgain).
	For time.Duration
	// Reason is why the node is not ready (NotReady).
	Reason string
}

// Supervisor keeps nodes running: it starts each, restarts it with backoff
// when it exits, watches its /readyz, and reports what happens. The zero
// value of a duration field takes its default. Use one Supervisor value
// for many nodes; Report may be called from many goroutines at once.
type Supervisor struct {
	// MinBackoff is the first wait before a restart (500 ms); it doubles
	// up to MaxBackoff (10 s) and resets once a process stayed up for
	// StableAfter (30 s).
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	StableAfter time.Duration
	// StopGrace is how long a process has after SIGTERM, when the
	// supervision ends, before it is killed (10 s).
	StopGrace time.Duration
	// NotReadyAfter, when not 0, reports a node whose /readyz has failed
	// for this long; ReadyPoll is how often it is asked (1 s) and
	// ReadyTimeout bounds one request (2 s: a paused process does not
	// answer).
	NotReadyAfter time.Duration
	ReadyPoll     time.Duration
	ReadyTimeout  time.Duration
	// Report receives every event; nil drops them.
	Report func(Event)
}

func (s Supervisor) withDefaults() Supervisor {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.MinBackoff, 500*time.Millisecond)
	def(&s.MaxBackoff, 10*time.Second)
	def(&s.StableAfter, 30*time.Second)
	def(&s.StopGrace, 10*time.Second)
	def(&s.ReadyPoll, time.Second)
	def(&s.ReadyTimeout, 2*time.Second)
	if s.Report == nil {
		s.Report = func(Event) {}
	}
	return s
}

// Supervise runs every node of the cluster under s until ctx ends, then
// stops them (SIGTERM) and returns once all are gone.
func (c *Cluster) Supervise(ctx context.Context, s Supervisor) {
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Run(ctx, n)
		}()
	}
	wg.Wait()
}

// Run keeps n running until ctx ends, then stops it (SIGTERM, then SIGKILL
// after StopGrace) and returns. Its exits go to Report, not to the
// cluster's Exits.
func (s Supervisor) Run(ctx context.Context, n *Node) {
	s = s.withDefaults()
	n.mu.Lock()
	n.supervised = true
	n.mu.Unlock()
	backoff := s.MinBackoff
	watch := &readinessWatch{after: s.NotReadyAfter}
	for restarts := 0; ; restarts++ {
		started := time.Now()
		err := s.runOnce(ctx, n, watch, restarts)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > s.StableAfter {
			backoff = s.MinBackoff
		}
		s.Report(Event{Kind: Exited, Node: n, Err: err, Backoff: backoff})
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.MaxBackoff)
	}
}

// runOnce runs the process until it exits or ctx ends; on ctx end it stops
// the process and reports that.
func (s Supervisor) runOnce(ctx context.Context, n *Node, watch *readinessWatch, restarts int) error {
	p, err := n.start()
	if err != nil {
		return err
	}
	s.Report(Event{Kind: Started, Node: n, Pid: p.cmd.Process.Pid, Restarts: restarts})
	if s.NotReadyAfter > 0 {
		// The watch outlives this run; the next run's goroutine must not
		// use it before this one has finished.
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		defer func() {
			stopWatch()
			<-watched
		}()
		go func() {
			defer close(watched)
			s.watchReady(watchCtx, n, watch)
		}()
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		err := n.Stop(s.StopGrace)
		s.Report(Event{Kind: Stopped, Node: n, Err: err})
		return err
	}
}

// watchReady polls the node's /readyz until ctx ends (the process exited
// or the supervision ends) and reports what w decides.
func (s Supervisor) watchReady(ctx context.Context, n *Node, w *readinessWatch) {
	w.started(time.Now())
	ticker := time.NewTicker(s.ReadyPoll)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		probeCtx, cancel := context.WithTimeout(ctx, s.ReadyTimeout)
		ready, reason := n.Ready(probeCtx)
		cancel()
		if ctx.Err() != nil {
			return // the process is gone: its exit is reported instead
		}
		if e, ok := w.observe(time.Now(), ready, reason); ok {
			e.Node = n
			s.Report(e)
		}
	}
}

// readinessWatch follows one node's /readyz and decides what to report:
// NotReady when the node has been not ready for `after` (counted from its
// start or from the last time it was ready), and ReadyAgain when it is
// ready again. It is pure: the caller polls and supplies the time. One
// watch lives across the restarts of its node.
type readinessWatch struct {
	after time.Duration

	since    time.Time // start of the current not-ready stretch; zero while ready
	reported bool      // the current stretch has been reported
}

// started restarts the clock for a process that was (re)started: it gets
// the full `after` to become ready. A stretch already reported goes on
// (a restart does not repeat the report; the new process becoming ready is
// reported as ready again).
func (w *readinessWatch) started(now time.Time) {
	if !w.reported {
		w.since = now
	}
}

// observe takes one /readyz result and returns the event to report, if
// any (without its Node).
func (w *readinessWatch) observe(now time.Time, ready bool, reason string) (Event, bool) {
	if ready {
		e, ok := Event{Kind: ReadyAgain, For: now.Sub(w.since)}, w.reported
		w.since, w.reported = time.Time{}, false
		return e, ok
	}
	if w.since.IsZero() {
		w.since = now
	}
	if w.reported || now.Sub(w.since) < w.after {
		return Event{}, false
	}
	w.reported = true
	return Event{Kind: NotReady, For: now.Sub(w.since), Reason: reason}, true
}

// StoppedInTime reports whether a Stopped event's process exited after
// SIGTERM within the grace period (false: it was killed).
func (e Event) StoppedInTime() bool { return !errors.Is(e.Err, ErrStillRunning) }
