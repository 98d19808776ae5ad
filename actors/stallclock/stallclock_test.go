package stallclock

import (
	"testing"
	"time"
)

func TestAPauseCountsAsOneStep(t *testing.T) {
	start := time.Unix(1000, 0)
	c := New(time.Second, start)
	steps := []struct {
		real time.Duration // since start
		want time.Duration // clock time since start
	}{
		{500 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, time.Second},
		{4 * time.Second, 2 * time.Second}, // a 3 s pause counts as 1 s
		{4500 * time.Millisecond, 2500 * time.Millisecond},
		{4 * time.Second, 2500 * time.Millisecond}, // the real clock went back: hold
		{4600 * time.Millisecond, 3100 * time.Millisecond},
	}
	for i, s := range steps {
		if got := c.Advance(start.Add(s.real)).Sub(start); got != s.want {
			t.Fatalf("step %d: real +%v: clock +%v, want +%v", i, s.real, got, s.want)
		}
	}
	if got := c.Skipped(); got != 2*time.Second {
		t.Fatalf("skipped %v, want 2s", got)
	}
}
