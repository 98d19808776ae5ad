package tree

import (
	"bytes"
	"context"
	"strings"
	"sync"
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

// syncBuffer is a log sink safe for the actors' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCrashBudgetRestartsThenStops(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	var logs syncBuffer
	var starts atomic.Int32
	var stops atomic.Int32
	var stoppedWith atomic.Value
	budget := &CrashBudget{
		Log: zerolog.New(&logs), Max: 2, Window: time.Minute,
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
			return strings.Count(logs.String(), "crashed; restarting")+strings.Count(logs.String(), "keeps crashing") == i, nil
		})
		if err != nil {
			t.Fatalf("crash %d: %v\n%s", i, err, logs.String())
		}
	}
	if got := starts.Load(); got != 3 {
		t.Errorf("the actor started %d times, want 3 (once, and after each of 2 restarts)", got)
	}
	if stops.Load() != 1 || stoppedWith.Load() != "boom" {
		t.Errorf("OnStop ran %d times with %v, want once with boom", stops.Load(), stoppedWith.Load())
	}
	if !strings.Contains(logs.String(), `"reason":"boom"`) || !strings.Contains(logs.String(), `"level":"error"`) {
		t.Errorf("crashes not logged at error level with their reason:\n%s", logs.String())
	}
}
