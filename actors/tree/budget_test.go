package tree

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// crasher panics on every string it receives and counts its starts.
type crasher struct{ starts *atomic.Int32 }

func (c crasher) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		c.starts.Add(1)
	case string:
		panic(msg)
	}
}

func TestCrashBudgetRestartsThenStops(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	// Error-level log lines, by message.
	var restarted, stopped atomic.Int32
	log := zerolog.New(io.Discard).Hook(zerolog.HookFunc(func(_ *zerolog.Event, level zerolog.Level, msg string) {
		switch {
		case level != zerolog.ErrorLevel:
		case msg == "crashed; restarting":
			restarted.Add(1)
		case msg == "keeps crashing; stopping":
			stopped.Add(1)
		}
	}))
	var starts atomic.Int32
	var stops atomic.Int32
	var stoppedWith atomic.Value
	budget := &CrashBudget{
		Log: log, Max: 2, Window: time.Minute,
		Restarted: "crashed; restarting", Stopped: "keeps crashing; stopping",
		OnStop: func(failures int, reason string) {
			stops.Add(1)
			stoppedWith.Store(reason)
			if failures != 3 {
				t.Errorf("OnStop with %d failures, want 3", failures)
			}
		},
	}
	pid := system.Root.Copy().WithGuardian(budget).Spawn(actor.PropsFromProducer(func() actor.Actor { return crasher{starts: &starts} }))
	for i := 1; i <= 3; i++ {
		system.Root.Send(pid, "boom")
		err := poll.Until(context.Background(), 5*time.Second, 5*time.Millisecond, "the crash to be handled", func() (bool, error) {
			return int(restarted.Load()+stopped.Load()) == i, nil
		})
		if err != nil {
			t.Fatalf("crash %d: %v (logged: %d restarts, %d stops)", i, err, restarted.Load(), stopped.Load())
		}
	}
	if got := starts.Load(); got != 3 {
		t.Errorf("the actor started %d times, want 3 (once, and after each of 2 restarts)", got)
	}
	// The budget logs the stop before it calls OnStop, on the guardian's
	// goroutine: the log line alone does not say OnStop has run.
	err := poll.Until(context.Background(), 5*time.Second, 5*time.Millisecond, "OnStop to run", func() (bool, error) {
		return stops.Load() > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stops.Load() != 1 || stoppedWith.Load() != "boom" {
		t.Errorf("OnStop ran %d times with %v, want once with boom", stops.Load(), stoppedWith.Load())
	}
	if restarted.Load() != 2 || stopped.Load() != 1 {
		t.Errorf("logged at error level: %d restarts and %d stops, want 2 and 1", restarted.Load(), stopped.Load())
	}
}
