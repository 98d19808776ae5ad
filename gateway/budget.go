package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// byteBudget bounds the client bytes a gateway holds at once across all
// its connections: SET messages from the moment their line is read until
// the leader's reply, and GET replies from the moment they reach the
// session until they are written. Readers take bytes before they read on
// (acquire waits while the budget is used up: backpressure, TCP flow
// control does the rest); GET replies are counted without waiting (their
// bytes are already in memory, and a GET's size is not known when it is
// read), so replies to GETs already sent can take the total over the
// limit, which then holds every reader, GETs included, until it drops
// below again.
//
// Waiting readers are served first come, first served: a release wakes
// the oldest waiter if its bytes fit, and no later one goes ahead of it.
// Waking every waiter to race for the bytes (as this did before) let some
// connections lose for over 10 s while others were served in under a
// second (64 connections of 4 MB SETs: p50 0.8 s, max 13.7 s).
//
// No one waits while holding a part of what it needs: a line that outgrows
// the reader's buffer reserves the longest line at once, so readers never
// wait on each other's half-read lines (which could deadlock).
type byteBudget struct {
	limit int64
	waits prometheus.Counter // nil without metrics
	gauge prometheus.Gauge   // nil without metrics

	mu      sync.Mutex
	used    int64
	waiters []*budgetWaiter // oldest first
}

// budgetWaiter is a reader waiting for n bytes; granted is closed once
// they are taken for it.
type budgetWaiter struct {
	n       int64
	granted chan struct{}
}

func newByteBudget(limit int64, m *Metrics) *byteBudget {
	b := &byteBudget{limit: limit}
	if m != nil {
		b.waits, b.gauge = m.InflightWaits, m.InflightBytes
	}
	return b
}

// acquire takes n bytes, waiting while they would take the total over the
// limit or while others wait (a request larger than the limit waits until
// nothing else is held). It returns false, having taken nothing, if done
// is closed first. before runs once, just before the wait (the reader
// sends what it has queued, so that those requests can complete and
// release bytes).
func (b *byteBudget) acquire(n int64, done <-chan struct{}, before func()) bool {
	b.mu.Lock()
	taken := b.tryTake(n)
	b.mu.Unlock()
	if taken {
		return true
	}
	if b.waits != nil {
		b.waits.Inc()
	}
	if before != nil {
		before()
	}
	b.mu.Lock()
	if b.tryTake(n) { // what it sent may have been answered already
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, granted: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.granted:
		return true
	case <-done:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.granted: // granted meanwhile: give the bytes back
		b.add(-n)
	default:
		for i, q := range b.waiters {
			if q == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grant() // it may have held up those behind it
	return false
}

// tryTake takes n bytes if no one waits and they fit; the caller holds mu.
func (b *byteBudget) tryTake(n int64) bool {
	if len(b.waiters) > 0 || !b.fits(n) {
		return false
	}
	b.add(n)
	return true
}

// fits reports whether n more bytes may be taken now; the caller holds mu.
func (b *byteBudget) fits(n int64) bool {
	return b.used == 0 || b.used+n <= b.limit
}

// grant takes bytes for the oldest waiters, in order, while they fit; the
// caller holds mu.
func (b *byteBudget) grant() {
	for len(b.waiters) > 0 && b.fits(b.waiters[0].n) {
		w := b.waiters[0]
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.add(w.n)
		close(w.granted)
	}
}

// charge takes n bytes without waiting: for bytes already in memory.
func (b *byteBudget) charge(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.add(n)
	b.mu.Unlock()
}

// release gives back n bytes taken with acquire or charge, and serves the
// waiters they make room for.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.add(-n)
	b.grant()
	b.mu.Unlock()
}

// inUse is the number of bytes held now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// add changes the total; the caller holds mu. (A total below zero would
// be a bug; the gauge would show it.)
func (b *byteBudget) add(n int64) {
	b.used += n
	if b.gauge != nil {
		b.gauge.Set(float64(b.used))
	}
}
