package ticker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// countingSender counts sends and records any send that ends after the
// test marked the ticker stopped. A send takes sendTime, so a stop that
// returned in the middle of one is caught.
type countingSender struct {
	sent, late atomic.Int64
	stopped    atomic.Bool
	sendTime   time.Duration
}

func (s *countingSender) Send(*actor.PID, interface{}) {
	s.sent.Add(1)
	if s.sendTime > 0 {
		time.Sleep(s.sendTime)
	}
	if s.stopped.Load() {
		s.late.Add(1)
	}
}

func TestEverySendsUntilStopped(t *testing.T) {
	s := &countingSender{}
	stop := Every(s, 0, time.Millisecond, nil, "tick")
	err := poll.Until(context.Background(), 10*time.Second, time.Millisecond, "5 ticks at a 1ms interval", func() (bool, error) {
		return s.sent.Load() >= 5, fmt.Errorf("%d ticks", s.sent.Load())
	})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	s.stopped.Store(true)
	stop() // a second stop is harmless
	if late := s.late.Load(); late != 0 {
		t.Fatalf("%d ticks sent after stop returned", late)
	}
}

// TestStopWhileFiring stops tickers whose timer fires at the same moment,
// many times over: under -race this is what protoactor's timer failed,
// and a send after stop returned is a failure here too.
func TestStopWhileFiring(t *testing.T) {
	s := &countingSender{sendTime: 20 * time.Microsecond}
	for i := 0; i < 2000; i++ {
		stop := Every(s, 0, time.Microsecond, nil, "tick")
		if i%2 == 0 {
			time.Sleep(time.Duration(i%7) * time.Microsecond)
		}
		stop()
		s.stopped.Store(true)
		if late := s.late.Load(); late != 0 {
			t.Fatalf("round %d: %d ticks sent after stop returned", i, late)
		}
		s.stopped.Store(false)
	}
	if s.sent.Load() == 0 {
		t.Fatal("no tick sent in 2000 rounds")
	}
}

func TestEveryWaitsForFirst(t *testing.T) {
	s := &countingSender{}
	stop := Every(s, time.Hour, time.Millisecond, nil, "tick")
	stop()
	if n := s.sent.Load(); n != 0 {
		t.Fatalf("%d ticks sent before the first interval", n)
	}
}
