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
// No one waits while holding a part of what it needs: a line that outgrows
// the reader's buffer reserves the longest line at once, so readers never
// wait on each other's half-read lines (which could deadlock).
type byteBudget struct {
	limit int64
	waits prometheus.Counter // nil without metrics
	gauge prometheus.Gauge   // nil without metrics

	mu      sync.Mutex
	used    int64
	wake    chan struct{} // closed (and replaced) on release if waiting
	waiting bool          // someone holds wake
}

func newByteBudget(limit int64, m *Metrics) *byteBudget {
	b := &byteBudget{limit: limit, wake: make(chan struct{})}
	if m != nil {
		b.waits, b.gauge = m.InflightWaits, m.InflightBytes
	}
	return b
}

// acquire takes n bytes, waiting while they would take the total over the
// limit (a request larger than the limit waits until nothing else is
// held). It returns false, having taken nothing, if done is closed first.
// before runs once, just before the first wait (the reader sends what it
// has queued, so that those requests can complete and release bytes).
func (b *byteBudget) acquire(n int64, done <-chan struct{}, before func()) bool {
	waited := false
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.add(n)
			b.mu.Unlock()
			return true
		}
		wake := b.wake
		b.waiting = true
		b.mu.Unlock()
		if !waited {
			waited = true
			if b.waits != nil {
				b.waits.Inc()
			}
			if before != nil {
				before()
				continue // what it sent may have been answered already
			}
		}
		select {
		case <-wake:
		case <-done:
			return false
		}
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

// release gives back n bytes taken with acquire or charge.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.add(-n)
	if b.waiting {
		close(b.wake)
		b.wake, b.waiting = make(chan struct{}), false
	}
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
