package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

func TestByteBudgetWaitsAndWakes(t *testing.T) {
	b := newByteBudget(100, nil)
	done := make(chan struct{})
	if !b.acquire(60, done, nil) || !b.acquire(40, done, nil) {
		t.Fatal("acquire within the limit failed")
	}
	got := make(chan bool)
	flushed := make(chan struct{}, 1)
	go func() { got <- b.acquire(30, done, func() { flushed <- struct{}{} }) }()
	select {
	case <-flushed: // it flushes before it waits
	case <-time.After(5 * time.Second):
		t.Fatal("acquire over the limit did not call before()")
	}
	select {
	case <-got:
		t.Fatal("acquire over the limit did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(40)
	mustBeGranted(t, got, "acquire after a release returned false", "acquire not woken by a release")
	if used := b.inUse(); used != 90 {
		t.Fatalf("in use %d, want 90", used)
	}

	// A charge is taken without waiting, even over the limit; readers then
	// wait until the total is below it again.
	b.charge(50)
	if used := b.inUse(); used != 140 {
		t.Fatalf("in use after charge %d, want 140", used)
	}
	go func() { got <- b.acquire(1, done, nil) }()
	b.release(39) // 101: still over
	select {
	case <-got:
		t.Fatal("acquire went through while over the limit")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(2) // 99: room for 1
	mustBeGranted(t, got, "acquire below the limit failed", "acquire not woken once the total was below the limit")

	// done ends a wait, taking nothing.
	go func() { got <- b.acquire(50, done, nil) }()
	close(done)
	if ok := <-got; ok {
		t.Fatal("acquire after done returned true")
	}
	if used := b.inUse(); used != 100 {
		t.Fatalf("in use %d, want 100 (nothing taken by the cancelled acquire)", used)
	}
}

// TestByteBudgetServesWaitersInOrder: a waiter is never overtaken by a
// later one, even by one whose bytes would fit, so no connection starves
// while others are served.
func TestByteBudgetServesWaitersInOrder(t *testing.T) {
	b := newByteBudget(100, nil)
	done := make(chan struct{})
	if !b.acquire(90, done, nil) {
		t.Fatal("acquire within the limit failed")
	}
	order := make(chan string, 3)
	waitFor := func(name string, n int64, queued int) {
		go func() {
			if b.acquire(n, done, nil) {
				order <- name
			}
		}()
		waitQueued(t, b, queued)
	}
	waitFor("first", 50, 1)  // does not fit (90+50)
	waitFor("second", 10, 2) // would fit (90+10), but first came first
	select {
	case got := <-order:
		t.Fatalf("%s went through while the first waiter still waits", got)
	case <-time.After(50 * time.Millisecond):
	}
	b.release(5) // 85 held: room for second (95), not for first (135)
	select {
	case got := <-order:
		t.Fatalf("%s went through while the first waiter still waits", got)
	case <-time.After(50 * time.Millisecond):
	}
	b.release(35) // 50 held: room for first (100), not yet for second
	if got := <-order; got != "first" {
		t.Fatalf("%s served before the first waiter", got)
	}
	select {
	case got := <-order:
		t.Fatalf("%s went through over the limit", got)
	case <-time.After(50 * time.Millisecond):
	}
	b.release(50)
	if got := <-order; got != "second" {
		t.Fatalf("got %s, want second", got)
	}
	if used := b.inUse(); used != 60 {
		t.Fatalf("in use %d, want 60", used)
	}
}

// TestByteBudgetCancelledWaiterLetsOthersOn: a waiter at the head that
// gives up (its connection closed) takes nothing and no longer holds up
// those behind it.
func TestByteBudgetCancelledWaiterLetsOthersOn(t *testing.T) {
	b := newByteBudget(100, nil)
	if !b.acquire(60, nil, nil) {
		t.Fatal("acquire within the limit failed")
	}
	gone := make(chan struct{})
	first := make(chan bool)
	go func() { first <- b.acquire(80, gone, nil) }()
	waitQueued(t, b, 1)
	second := make(chan bool)
	go func() { second <- b.acquire(30, nil, nil) }()
	waitQueued(t, b, 2)
	close(gone)
	if <-first {
		t.Fatal("cancelled acquire returned true")
	}
	mustBeGranted(t, second, "acquire failed", "the waiter behind a cancelled one was not served")
	if used := b.inUse(); used != 90 {
		t.Fatalf("in use %d, want 90", used)
	}
}

// mustBeGranted waits up to 5 s for an acquire's result on got: it fails
// the test with refused if the acquire returned false, with stuck if none
// came.
func mustBeGranted(t *testing.T, got <-chan bool, refused, stuck string) {
	t.Helper()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal(refused)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(stuck)
	}
}

// waitQueued waits until n readers wait on b.
func waitQueued(t *testing.T, b *byteBudget, n int) {
	t.Helper()
	poll.Eventually(t, 5*time.Second, time.Millisecond, fmt.Sprintf("%d readers waiting", n), func() (bool, string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiters) == n, fmt.Sprintf("%d waiting", len(b.waiters))
	})
}

// TestByteBudgetOversized: a request larger than the limit goes through
// once nothing else is held, so it never waits forever.
func TestByteBudgetOversized(t *testing.T) {
	b := newByteBudget(10, nil)
	done := make(chan struct{})
	if !b.acquire(5, done, nil) {
		t.Fatal("acquire failed")
	}
	got := make(chan bool)
	go func() { got <- b.acquire(25, done, nil) }()
	select {
	case <-got:
		t.Fatal("oversized acquire went through while bytes were held")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(5)
	if !<-got || b.inUse() != 25 {
		t.Fatalf("oversized acquire: in use %d", b.inUse())
	}
}

// TestByteBudgetBoundsConcurrentHolders: many goroutines taking and
// releasing never hold more than the limit together, and all finish.
func TestByteBudgetBoundsConcurrentHolders(t *testing.T) {
	const limit, each, workers, rounds = 1000, 300, 8, 200
	b := newByteBudget(limit, nil)
	done := make(chan struct{})
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if !b.acquire(each, done, nil) {
					t.Error("acquire failed")
					return
				}
				now := held.Add(each)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				held.Add(-each)
				b.release(each)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		t.Fatal("workers did not finish: a lost wake-up")
	}
	if p := peak.Load(); p > limit {
		t.Errorf("peak held %d, over the limit %d", p, limit)
	}
	if used := b.inUse(); used != 0 {
		t.Errorf("in use %d after everything was released", used)
	}
}

func TestAppendWithinStaysWithinLimit(t *testing.T) {
	const limit = 100_000
	var line []byte
	chunk := make([]byte, 16<<10)
	for len(line)+len(chunk) <= limit {
		line = appendWithin(line, chunk, limit)
		if cap(line) > limit {
			t.Fatalf("capacity %d over the limit %d at length %d", cap(line), limit, len(line))
		}
	}
	line = appendWithin(line, chunk[:limit-len(line)], limit)
	if len(line) != limit || cap(line) != limit {
		t.Fatalf("full line: len %d cap %d, want %d", len(line), cap(line), limit)
	}
}
