package leader

// forwardRoom bounds the message bytes the active leader holds for
// requests other gateways forwarded to it. Each gateway bounds the bytes
// of its own clients (--max-inflight-bytes), but the leader also holds
// what every other gateway forwards: without a bound of its own it would
// hold the whole group's sum, and with large messages from clients on
// every gateway its memory grew to several times that (every payload is
// copied for each member and for the wire).
//
// A request the room does not admit is answered "busy" (nothing is
// proposed) and its gateway sends it again once it has room. The bytes
// are shared fairly among the gateways forwarding at once: a gateway is
// admitted while the total stays within the limit and its own share
// within an equal part of it; a gateway holding nothing is always admitted
// one request, so none waits forever behind the others (the total can
// then exceed the limit by one message per forwarding gateway).
//
// forwardRoom is pure bookkeeping, part of the term's state.
type forwardRoom struct {
	limit int64 // 0: no bound
	total int64
	held  map[uint64]int64 // by origin gateway; no zero entries
}

func newForwardRoom(limit int64) forwardRoom {
	return forwardRoom{limit: limit, held: make(map[uint64]int64)}
}

// admits says whether a request of n bytes from origin may be taken now.
func (r *forwardRoom) admits(origin uint64, n int64) bool {
	own := r.held[origin]
	if r.limit <= 0 || n == 0 || own == 0 {
		return true
	}
	share := r.limit / int64(len(r.held))
	return r.total+n <= r.limit && own+n <= share
}

// take counts n bytes held for origin.
func (r *forwardRoom) take(origin uint64, n int64) {
	if n <= 0 {
		return
	}
	r.held[origin] += n
	r.total += n
}

// release counts n bytes of origin's no longer held.
func (r *forwardRoom) release(origin uint64, n int64) {
	if n <= 0 {
		return
	}
	left := r.held[origin] - n
	if left <= 0 {
		delete(r.held, origin)
	} else {
		r.held[origin] = left
	}
	r.total -= n
}
