// Package stallclock is time as an actor's timeouts should see it: the
// real clock, with the time this process did not run left out.
package stallclock

import "time"

// Clock follows the real clock, except that a gap between two readings
// longer than maxStep counts as maxStep. Such a gap means this process did
// not run (it was paused with SIGSTOP, its VM was frozen, its actor was
// starved): heartbeats and acknowledgements that arrived meanwhile are
// still queued unread, so the gap says nothing about the peers, and timing
// them out for it once declared every member down at once after the
// gateway was paused for 3 s (issue 8). Read it often (every tick, every
// message) so that normal gaps stay below maxStep. The zero value is not
// usable; use New.
type Clock struct {
	maxStep time.Duration
	last    time.Time // the last real reading
	now     time.Time // the clock's time at that reading
	stalled time.Duration
}

// New returns a clock that reads real now and counts any longer gap
// between readings as maxStep.
func New(maxStep time.Duration, real time.Time) *Clock {
	return &Clock{maxStep: maxStep, last: real, now: real}
}

// Advance takes a reading of the real clock and returns the clock's time.
// It never goes backwards.
func (c *Clock) Advance(real time.Time) time.Time {
	step := real.Sub(c.last)
	switch {
	case step < 0:
		step = 0
	case step > c.maxStep:
		c.stalled += step - c.maxStep
		step = c.maxStep
	}
	c.last = real
	c.now = c.now.Add(step)
	return c.now
}

// Skipped is the total real time left out so far.
func (c *Clock) Skipped() time.Duration { return c.stalled }
