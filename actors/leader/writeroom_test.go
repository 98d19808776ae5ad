package leader

import "testing"

// The leader's room for SET bytes: within the limit, shared equally
// among the gateways with requests there, and never closed to a gateway
// that holds nothing.
func TestWriteRoomSharesTheLimitAmongGateways(t *testing.T) {
	r := newWriteRoom(100)
	const a, b = 1, 2
	step := func(origin uint64, n int64, want bool) {
		t.Helper()
		if got := r.admits(origin, n); got != want {
			t.Fatalf("admits(%d, %d) = %v with %v held (total %d), want %v", origin, n, got, r.held, r.total, want)
		}
		if want {
			r.take(origin, n)
		}
	}
	step(a, 60, true)  // a gateway holding nothing
	step(a, 30, true)  // alone, it may use the whole limit
	step(a, 20, false) // past the limit
	step(b, 50, true)  // holding nothing: one request, even past the limit
	step(b, 10, false) // past the limit
	r.release(a, 60)   // total 80
	step(b, 10, false) // within the limit, but past b's half
	step(a, 20, true)  // a's half exactly
	r.release(a, 50)
	if r.total != 50 || len(r.held) != 1 {
		t.Fatalf("after a's release: total %d, held %v; want 50 held by b alone", r.total, r.held)
	}
	step(b, 10, true) // alone again: the whole limit
	step(b, 40, true)
	step(b, 1, false)
	step(a, 0, true) // no message bytes (a GET or DEL): always
	if r.total != 100 {
		t.Fatalf("total %d, want 100", r.total)
	}
	unbounded := newWriteRoom(0)
	unbounded.take(a, 1<<40)
	if !unbounded.admits(a, 1<<40) {
		t.Fatal("a room without a limit refused")
	}
}
